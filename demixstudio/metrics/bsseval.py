"""BSS Eval version 4: SDR, SIR, SAR and ISR of source-image estimates.

This computes the same numbers as ``museval.metrics.bss_eval`` with
``framewise_filters=False`` and ``bsseval_sources_version=False`` (the
"v4" mode used by SiSEC 2018), but computes them much faster and with torch,
so it can run on a GPU.

Method (Vincent, Gribonval & Févotte 2006; Stöter, Liutkus & Ito 2018)
------------------------------------------------------------------------
Each estimate ``ŝ_e`` (a multichannel image) is split into

- ``s_true``  the reference image ``s_j`` itself,
- ``e_spat``  what a filtered copy of ``s_j`` adds (spatial/filtering distortion),
- ``e_interf`` what filtered copies of the other references add (interference),
- ``e_artif`` the rest (artefacts),

using least-squares projections onto the space spanned by all channels of the
references delayed by 0 .. ``filter_len - 1`` samples. In v4 the projection
filters are time-invariant: they are solved once, over the whole signal, and
then applied to each evaluation frame separately. The ratios are taken per
frame::

    SDR = 10 log10 ||s_true||² / ||e_spat + e_interf + e_artif||²
    ISR = 10 log10 ||s_true||² / ||e_spat||²
    SIR = 10 log10 ||s_true + e_spat||² / ||e_interf||²
    SAR = 10 log10 ||s_true + e_spat + e_interf||² / ||e_artif||²

Where this is faster than museval
---------------------------------
- The lagged correlations that fill the Gram matrix and the right-hand sides
  are taken block-wise with FFTs of a fixed size, each block transformed
  once, so memory does not grow with the length of the signal.
- One Cholesky factorisation of the Gram matrix serves every estimate
  (museval runs an LU solve again for each estimate).
- The projection of an estimate onto all references depends only on the
  estimate, so it is computed once per frame, not once per (reference,
  estimate) pair; each frame's references are transformed once and convolved
  with every filter in the frequency domain.

Singular systems
----------------
When the Gram matrix is singular to working precision (two identical
channels, as in a mono file saved as stereo), the filters are the
minimum-norm least-squares solution, as museval's fallback
(``np.linalg.lstsq``) gives; the projections, and so the figures, are then
still well defined.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft
import scipy.optimize
import torch
import torch.nn.functional as F

from demixstudio.errors import ParameterError
from demixstudio.metrics._common import as_float64_audio, resolve_device

__all__ = ["BssEvalResult", "bss_eval"]

# museval regularises every filter system with this absolute value on the
# diagonal; we add the same so nearly-singular systems are solved alike.
_EPS = float(np.finfo(np.float64).eps)


def _chunk_bytes(device: torch.device) -> int:
    """Target size in bytes of the largest temporary tensor of one chunk.

    Work on frames and on correlation blocks is chunked so memory does not
    grow with the length of the signal. On the CPU, small chunks are also
    faster: tensors under malloc's mmap threshold (32 MB) are recycled,
    while every larger one is page-faulted in anew, which costs more than the
    arithmetic. GPUs prefer fewer, larger kernels.
    """
    return 512 * 2**20 if device.type == "cuda" else 16 * 2**20


@dataclass(frozen=True, eq=False)
class BssEvalResult:
    """Per-source and per-frame BSS Eval v4 figures, in dB.

    Every array is indexed by *reference* source: row ``j`` scores estimate
    ``permutation[j]`` against reference ``j``.

    Attributes
    ----------
    sdr, sir, sar, isr : np.ndarray [shape=(nb_sources,)]
        Median over frames, ignoring NaN (silent) frames. NaN when every frame
        is silent. ``+inf`` is possible (e.g. SIR with a single source, which
        has no interference).
    frames_sdr, frames_sir, frames_sar, frames_isr : np.ndarray [shape=(nb_sources, nb_frames)]
        The per-frame values. A frame is NaN when any reference or any
        estimate is silent in it (museval's rule).
    permutation : np.ndarray [shape=(nb_sources,), dtype=int]
        Index of the estimate assigned to each reference.
    frame_starts : np.ndarray [shape=(nb_frames,), dtype=int]
        First sample of each frame.
    window, hop : int
        Frame length and frame step, in samples.
    sr : float
        Sample rate of the signals, in Hz.
    """

    sdr: np.ndarray
    sir: np.ndarray
    sar: np.ndarray
    isr: np.ndarray
    frames_sdr: np.ndarray
    frames_sir: np.ndarray
    frames_sar: np.ndarray
    frames_isr: np.ndarray
    permutation: np.ndarray
    frame_starts: np.ndarray
    window: int
    hop: int
    sr: float

    @property
    def nb_frames(self) -> int:
        """Number of evaluation frames."""
        return int(self.frame_starts.shape[0])


def bss_eval(
    references,
    estimates,
    sr: float,
    *,
    window_s: float = 1.0,
    hop_s: float = 1.0,
    filter_len: int = 512,
    compute_permutation: bool = True,
    device: str | torch.device | None = None,
) -> BssEvalResult:
    """Score estimated source images against references with BSS Eval v4.

    Matches ``museval.metrics.bss_eval(refs, ests, window, hop,
    compute_permutation, filter_len, framewise_filters=False,
    bsseval_sources_version=False)`` (with museval's axis order
    ``(nb_sources, nb_samples, nb_channels)``) to within numerical precision,
    except for the choice of permutation when some frames are silent (see
    ``compute_permutation``), and where museval's LU solve accepts a Gram
    matrix that is singular to working precision and returns an unreliable
    solution (here: the minimum-norm one, see the module notes).

    Parameters
    ----------
    references : np.ndarray [shape=(nb_sources, nb_channels, nb_samples)]
        True source images, real floating point (a float32 or float64 numpy
        array, or a torch tensor). Computation is in float64.
    estimates : np.ndarray [shape=(nb_sources, nb_channels, nb_estimated_samples)]
        Estimated source images, in any order. Estimates longer than the
        references are cropped to ``nb_samples``; shorter ones are padded with
        zeros at the end.
    sr : float
        Sample rate in Hz; used only to turn ``window_s`` and ``hop_s`` into
        samples.
    window_s : float
        Frame length in seconds, rounded to whole samples. ``math.inf`` gives a
        single frame over the whole signal (museval's ``window=np.inf``).
    hop_s : float
        Frame step in seconds, rounded to whole samples. Frames are
        ``[t * hop, t * hop + window)`` for every ``t`` whose frame fits inside
        the signal; a partial last frame is dropped, as in museval.
    filter_len : int
        Number of taps of the time-invariant distortion filters (the largest
        delay allowed between a reference and its image in the estimate).
    compute_permutation : bool
        If True, assign estimates to references so that the mean over sources
        and frames of SIR is largest (museval's criterion), solved as a linear
        assignment problem instead of trying every permutation. Silent (NaN)
        frames are left out of the mean; museval lets them turn every mean
        into NaN and then falls back to the identity. If False, estimate ``j``
        is scored against reference ``j``.
    device : str, torch.device or None
        Where to compute. ``None`` or ``"auto"``: CUDA if available, else CPU.

    Returns
    -------
    BssEvalResult
        Per-source medians, per-frame values and the permutation.

    Raises
    ------
    ParameterError
        If the arrays are not 3-D finite float arrays, if the numbers of
        sources or channels differ, if a reference or estimate is silent over
        the whole signal, if the signal is shorter than one frame or than
        ``filter_len``, or if a scalar argument is out of range.

    Notes
    -----
    Cost: one Cholesky factorisation of an ``n x n`` matrix with
    ``n = nb_sources * nb_channels * filter_len`` dominates (4096 for four
    stereo sources); the rest grows linearly with the length of the signal,
    and with ``nb_sources**2`` when ``compute_permutation`` is True.

    Memory: the Gram matrix has ``(nb_sources * nb_channels * filter_len)**2``
    float64 entries (134 MB for four stereo sources with 512 taps); per-frame
    work is chunked so it does not grow with the length of the signal.

    References
    ----------
    .. [1] E. Vincent, R. Gribonval and C. Févotte, "Performance measurement in
       blind audio source separation", IEEE TASLP 14(4), 2006.
    .. [2] F.-R. Stöter, A. Liutkus and N. Ito, "The 2018 Signal Separation
       Evaluation Campaign", LVA/ICA 2018.
    """
    refs = as_float64_audio(references, "references", (3,))
    ests = as_float64_audio(estimates, "estimates", (3,))
    nb_sources, nb_channels, nb_samples = refs.shape
    if ests.shape[0] != nb_sources:
        raise ParameterError(
            f"estimates has {ests.shape[0]} sources but references has {nb_sources}; "
            "pass exactly one estimate per reference"
        )
    if ests.shape[1] != nb_channels:
        raise ParameterError(
            f"estimates has {ests.shape[1]} channels but references has {nb_channels}; "
            "the channel counts must match"
        )
    sr = _check_positive(sr, "sr", allow_inf=False)
    window_s = _check_positive(window_s, "window_s", allow_inf=True)
    hop_s = _check_positive(hop_s, "hop_s", allow_inf=False)
    if isinstance(filter_len, bool) or not isinstance(filter_len, (int, np.integer)) or filter_len < 1:
        raise ParameterError(f"filter_len={filter_len!r} must be a positive integer")
    filter_len = int(filter_len)
    if not isinstance(compute_permutation, (bool, np.bool_)):
        raise ParameterError(f"compute_permutation={compute_permutation!r} must be True or False")
    dev = resolve_device(device)

    if math.isinf(window_s):
        window = hop = nb_samples
    else:
        window = int(round(window_s * sr))
        hop = int(round(hop_s * sr))
        if window < 1 or hop < 1:
            raise ParameterError(
                f"window_s={window_s} and hop_s={hop_s} at sr={sr} give {window} and {hop} "
                "samples; both must be at least one sample"
            )
    if nb_samples < window:
        raise ParameterError(
            f"references have {nb_samples} samples ({nb_samples / sr:.3f} s at {sr:g} Hz), "
            f"shorter than one frame of window_s={window_s} s ({window} samples); "
            "use a smaller window_s, or window_s=math.inf for one frame over the whole signal"
        )
    if nb_samples < filter_len:
        raise ParameterError(
            f"filter_len={filter_len} is longer than the signal ({nb_samples} samples); "
            "use a shorter filter"
        )

    # Estimates of another length are cropped or zero-padded at the end.
    if ests.shape[2] > nb_samples:
        ests = ests[:, :, :nb_samples]
    elif ests.shape[2] < nb_samples:
        ests = np.pad(ests, ((0, 0), (0, 0), (0, nb_samples - ests.shape[2])))

    # museval's definition of silence: the sum over channels is zero at every
    # sample. A source silent over the whole signal makes the filter systems
    # degenerate and every frame NaN, so it is refused up front, as museval does.
    for name, arr in (("references", refs), ("estimates", ests)):
        silent = np.flatnonzero(np.all(arr.sum(axis=1) == 0, axis=1))
        if silent.size:
            raise ParameterError(
                f"{name}[{int(silent[0])}] is silent (all zeros); every reference and "
                "every estimate must hold some signal"
            )

    with torch.no_grad():
        frames = _bss_eval_frames(
            torch.from_numpy(refs).to(dev),
            torch.from_numpy(ests).to(dev),
            window=window,
            hop=hop,
            filter_len=filter_len,
            all_pairs=bool(compute_permutation),
        )
    # frames: name -> (nb_sources, nb_candidates, nb_frames) on the CPU
    if compute_permutation:
        permutation = _best_permutation(frames["sir"])
        columns = permutation
    else:
        permutation = np.arange(nb_sources)
        columns = np.zeros(nb_sources, dtype=np.int64)
    rows = np.arange(nb_sources)
    picked = {name: val[rows, columns] for name, val in frames.items()}
    nb_frames = picked["sdr"].shape[1]

    return BssEvalResult(
        sdr=_nanmedian_rows(picked["sdr"]),
        sir=_nanmedian_rows(picked["sir"]),
        sar=_nanmedian_rows(picked["sar"]),
        isr=_nanmedian_rows(picked["isr"]),
        frames_sdr=picked["sdr"],
        frames_sir=picked["sir"],
        frames_sar=picked["sar"],
        frames_isr=picked["isr"],
        permutation=permutation.astype(np.int64),
        frame_starts=np.arange(nb_frames, dtype=np.int64) * hop,
        window=window,
        hop=hop,
        sr=sr,
    )


# ----------------------------------------------------------------------------
# Core computation (torch, float64, any device)
# ----------------------------------------------------------------------------


def _bss_eval_frames(
    refs: torch.Tensor,
    ests: torch.Tensor,
    *,
    window: int,
    hop: int,
    filter_len: int,
    all_pairs: bool,
) -> dict[str, np.ndarray]:
    """Per-frame SDR/ISR/SIR/SAR of every (reference, candidate estimate) pair.

    Parameters
    ----------
    refs, ests : torch.Tensor [shape=(nb_sources, nb_channels, nb_samples), float64]
    window, hop, filter_len : int
        In samples; ``nb_samples >= window``.
    all_pairs : bool
        True: score every estimate against every reference (for the
        permutation search). False: only estimate ``j`` against reference ``j``.

    Returns
    -------
    dict of str to np.ndarray [shape=(nb_sources, nb_candidates, nb_frames)]
        Keys ``sdr``, ``isr``, ``sir``, ``sar``. ``nb_candidates`` is
        ``nb_sources`` (column = estimate index) if ``all_pairs``, else 1.
    """
    nb_sources, nb_channels, nb_samples = refs.shape
    nb_refs = nb_sources * nb_channels  # one "reference signal" per channel
    L = filter_len
    dev = refs.device

    # --- Time-invariant filters, solved once over the whole signal ----------
    # corr[k, q, tau] = sum_t ref_k[t] * y_q[t + tau], y = references then estimates
    corr = _lagged_xcorr(
        refs.reshape(nb_refs, nb_samples),
        torch.cat([refs, ests]).reshape(2 * nb_refs, nb_samples),
        L,
    )
    gram = _gram_from_xcorr(corr[:, :nb_refs])  # (nb_refs*L, nb_refs*L)
    # rhs[(k, tau), (e, c)] = <ref_k delayed by tau, channel c of estimate e>
    rhs = corr[:, nb_refs:].permute(0, 2, 1).reshape(nb_refs * L, nb_refs)
    # museval adds eps to the diagonal of every system it solves (the full one
    # and the per-source blocks below), so add it once, before taking blocks.
    gram.diagonal().add_(_EPS)

    # Projection onto all references, for every estimate at once.
    # filt_all[e, c, k, tau]: tap tau from reference signal k to channel c of estimate e.
    filt_all = _solve_spd(gram, rhs).reshape(nb_refs, L, nb_sources, nb_channels)
    filt_all = filt_all.permute(2, 3, 0, 1)

    # Projection onto reference j alone: the diagonal blocks of the system.
    src = torch.arange(nb_sources, device=dev)
    block = nb_channels * L
    gram_jj = gram.reshape(nb_sources, block, nb_sources, block)[src, :, src, :]
    rhs_j = rhs.reshape(nb_sources, block, nb_sources, nb_channels)
    if all_pairs:  # candidate i of reference j is estimate i
        nb_cand = nb_sources
        rhs_j = rhs_j.reshape(nb_sources, block, nb_refs)
    else:  # the only candidate of reference j is estimate j
        nb_cand = 1
        rhs_j = rhs_j[src, :, src, :]  # (nb_sources, block, nb_channels)
    del gram, rhs, corr
    # filt_j[j, i, c, d, tau]: tap tau from channel d of reference j to channel
    # c of candidate estimate i.
    filt_j = _solve_spd(gram_jj, rhs_j).reshape(nb_sources, nb_channels, L, nb_cand, nb_channels)
    filt_j = filt_j.permute(0, 3, 4, 1, 2)
    del gram_jj, rhs_j

    # --- Frames ---------------------------------------------------------------
    # museval convolves each frame of the references, cut out and zero-padded,
    # with the filters, and measures energies over window + L - 1 samples (the
    # full convolution, tail included). One FFT size serves every frame.
    n_fft = scipy.fft.next_fast_len(window + L - 1, real=True)
    spec_all = torch.fft.rfft(filt_all, n=n_fft)  # (S, C, nb_refs, K)
    spec_j = torch.fft.rfft(filt_j, n=n_fft)  # (S, nb_cand, C, C, K)
    del filt_all, filt_j

    ref_frames = refs.unfold(-1, window, hop)  # (S, C, T, W), a view
    est_frames = ests.unfold(-1, window, hop)
    nb_frames = ref_frames.shape[2]
    # A frame is undefined when any reference or any estimate is silent in it.
    silent = (ref_frames.sum(1) == 0).all(-1).any(0) | (est_frames.sum(1) == 0).all(-1).any(0)

    # Size in bytes of the largest temporary of one frame (the pairwise
    # projections, complex, in the frequency domain).
    per_frame = 8 * (n_fft + 2) * nb_channels * nb_sources * nb_cand
    chunk = max(1, _chunk_bytes(dev) // per_frame)
    out = {name: [] for name in ("sdr", "isr", "sir", "sar")}
    for t0 in range(0, nb_frames, chunk):
        t1 = min(nb_frames, t0 + chunk)
        s = ref_frames[:, :, t0:t1].permute(2, 0, 1, 3)  # (Tc, S, C, W)
        e = est_frames[:, :, t0:t1].permute(2, 0, 1, 3)
        ratios = _frame_ratios(s, e, spec_all, spec_j, all_pairs, n_fft, L)
        for name, val in ratios.items():
            out[name].append(val)

    result = {}
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=dev)
    for name, vals in out.items():
        val = torch.cat(vals)  # (T, S, nb_cand)
        val = torch.where(silent[:, None, None], nan, val)
        result[name] = val.permute(1, 2, 0).cpu().numpy()
    return result


def _frame_ratios(
    s: torch.Tensor,
    e: torch.Tensor,
    spec_all: torch.Tensor,
    spec_j: torch.Tensor,
    all_pairs: bool,
    n_fft: int,
    filter_len: int,
) -> dict[str, torch.Tensor]:
    """The four ratios for a chunk of frames.

    Parameters
    ----------
    s, e : torch.Tensor [shape=(nb_frames, nb_sources, nb_channels, window)]
        Frames of the references and of the estimates.
    spec_all : torch.Tensor [shape=(nb_sources, nb_channels, nb_sources * nb_channels, n_fft // 2 + 1)]
        Spectra of the filters projecting each estimate onto all references.
    spec_j : torch.Tensor [shape=(nb_sources, nb_cand, nb_channels, nb_channels, n_fft // 2 + 1)]
        Spectra of the filters projecting candidate ``i`` onto reference ``j``.
    all_pairs : bool
        True: candidate ``i`` of reference ``j`` is estimate ``i``
        (``nb_cand == nb_sources``). False: the only candidate is estimate ``j``.
    n_fft, filter_len : int

    Returns
    -------
    dict of str to torch.Tensor [shape=(nb_frames, nb_sources, nb_cand)]
        ``sdr``, ``isr``, ``sir``, ``sar`` in dB.
    """
    nb_frames, nb_sources, nb_channels, window = s.shape
    full = window + filter_len - 1  # length of the full convolution
    spec_s = torch.fft.rfft(s, n=n_fft)  # (T, S, C, K)

    # Projection of every estimate onto all references: (T, S_est, C, full).
    proj_all = torch.einsum("tmk,ecmk->teck", spec_s.reshape(nb_frames, -1, spec_s.shape[-1]), spec_all)
    proj_all = torch.fft.irfft(proj_all, n=n_fft)[..., :full]
    # Projection of each candidate onto its reference alone: (T, S, nb_cand, C, full).
    proj_j = torch.einsum("tjdk,jicdk->tjick", spec_s, spec_j)
    proj_j = torch.fft.irfft(proj_j, n=n_fft)[..., :full]
    del spec_s

    def energy(x: torch.Tensor) -> torch.Tensor:
        # one fused pass; much faster than x.square().sum() on the CPU
        return torch.linalg.vector_norm(x, dim=(-2, -1)).square()

    def per_estimate(x: torch.Tensor) -> torch.Tensor:
        # (T, S_est, ...) -> broadcastable against (T, S_ref, nb_cand, ...)
        return x.unsqueeze(1) if all_pairs else x.unsqueeze(2)

    s_ref = s.unsqueeze(2)  # (T, S, 1, C, W)
    energy_s = energy(s).unsqueeze(2)
    # e_spat + e_interf + e_artif = estimate - s_true
    sdr = _db(energy_s, energy(per_estimate(e) - s_ref))
    # e_spat = proj_j - s_true; past the frame s_true is zero
    isr = _db(energy_s, energy(proj_j[..., :window] - s_ref) + energy(proj_j[..., window:]))
    # s_true + e_spat = proj_j ; e_interf = proj_all - proj_j
    sir = _db(energy(proj_j), energy(per_estimate(proj_all) - proj_j))
    del proj_j
    # s_true + e_spat + e_interf = proj_all ; e_artif = estimate - proj_all
    sar_num = energy(proj_all)
    sar_den = energy(e - proj_all[..., :window]) + energy(proj_all[..., window:])
    sar = per_estimate(_db(sar_num, sar_den)).expand_as(sdr)
    return {"sdr": sdr, "isr": isr, "sir": sir, "sar": sar}


def _lagged_xcorr(x: torch.Tensor, y: torch.Tensor, nb_lags: int) -> torch.Tensor:
    """Cross-correlations at non-negative lags, block-wise with FFTs.

    Parameters
    ----------
    x : torch.Tensor [shape=(P, nb_samples)]
    y : torch.Tensor [shape=(Q, nb_samples)]
    nb_lags : int

    Returns
    -------
    torch.Tensor [shape=(P, Q, nb_lags)]
        ``out[p, q, tau] = sum_t x[p, t] * y[q, t + tau]``, with both signals
        zero beyond their ends (linear, not circular, correlation).

    Notes
    -----
    The signal is cut into blocks of ``B`` samples; block ``b`` of ``x`` is
    correlated with ``y[bB : bB + B + nb_lags - 1]``. With an FFT of at least
    ``B + nb_lags - 1`` points no lag wraps around, and since the inverse FFT
    is linear the cross-spectra of all blocks are summed before a single
    inverse transform per pair.
    """
    nb_p, nb_samples = x.shape
    nb_q = y.shape[0]
    # Short blocks keep every temporary small (see _chunk_bytes) at the cost
    # of a little overlap; 16384 points measured fastest on the CPU.
    n_fft = max(1 << 14, 1 << (4 * nb_lags - 1).bit_length())
    block = n_fft - nb_lags + 1
    nb_blocks = -(-nb_samples // block)
    xb = F.pad(x, (0, nb_blocks * block - nb_samples)).reshape(nb_p, nb_blocks, block)
    yb = F.pad(y, (0, nb_blocks * block + nb_lags - 1 - nb_samples))
    yb = yb.unfold(-1, block + nb_lags - 1, block)  # (Q, nb_blocks, block + nb_lags - 1)

    nb_bins = n_fft // 2 + 1
    cross = torch.zeros((nb_p, nb_q, nb_bins), dtype=torch.complex128, device=x.device)
    for b in range(nb_blocks):
        spec_x = torch.fft.rfft(xb[:, b], n=n_fft).conj_physical_()
        spec_y = torch.fft.rfft(yb[:, b], n=n_fft)
        for p in range(nb_p):
            # In place, one row at a time: an einsum over all (p, q) pairs
            # runs as many tiny batched matmuls, and a single broadcast
            # addcmul_ over (p, q) takes a slow path; both are several times slower.
            cross[p].addcmul_(spec_x[p], spec_y)
    # One inverse transform per row keeps the (Q, n_fft) temporary small.
    return torch.stack([torch.fft.irfft(row, n=n_fft)[:, :nb_lags] for row in cross])


def _gram_from_xcorr(corr: torch.Tensor) -> torch.Tensor:
    """Gram matrix of all references delayed by 0 .. L-1 samples.

    Parameters
    ----------
    corr : torch.Tensor [shape=(M, M, L)]
        ``corr[k1, k2, tau] = sum_t r_k1[t] * r_k2[t + tau]``.

    Returns
    -------
    torch.Tensor [shape=(M * L, M * L)]
        ``G[(k1, a), (k2, b)] = sum_t r_k1[t - a] * r_k2[t - b]``, which is the
        correlation of ``r_k1`` and ``r_k2`` at lag ``a - b``; negative lags
        come from the swapped pair.
    """
    nb_refs, _, L = corr.shape
    # lags[k1, k2, i] is the correlation at lag i - (L - 1)
    lags = torch.cat([corr.transpose(0, 1).flip(-1)[..., :-1], corr], dim=-1)
    taps = torch.arange(L, device=corr.device)
    refs = torch.arange(nb_refs, device=corr.device)
    shift = taps[:, None] - taps[None, :] + (L - 1)  # (L, L): a - b, shifted
    # One gather straight into the (k1, a, k2, b) layout.
    gram = lags[refs[:, None, None, None], refs[None, None, :, None], shift[None, :, None, :]]
    return gram.reshape(nb_refs * L, nb_refs * L)


def _solve_spd(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Solve ``a x = b`` for symmetric positive semi-definite Gram matrices.

    Cholesky where it succeeds (it is twice as fast as LU, and agrees with
    museval's LU to rounding). Where it fails, the matrix is singular to
    working precision (two identical channels, say a mono file saved as
    stereo): any solution then gives the same projection in exact arithmetic,
    but only the minimum-norm one keeps the filters small enough for the FFT
    convolutions to stay accurate; that is also what museval ends with when
    its LU reports a singular matrix (``np.linalg.lstsq``). (A ridge
    ``a + δI`` is not enough: it amplifies the rounding noise of ``b`` along
    the null directions by 1/δ, and on panned and delayed images it cost two
    sources 20 dB of SDR.)

    Parameters
    ----------
    a : torch.Tensor [shape=(n, n) or (batch, n, n)]
    b : torch.Tensor [shape=(n, k) or (batch, n, k)]

    Returns
    -------
    torch.Tensor [shape=like ``b``]
    """
    if a.ndim == 2:
        return _solve_spd(a.unsqueeze(0), b.unsqueeze(0)).squeeze(0)
    chol, info = torch.linalg.cholesky_ex(a)
    # Two triangular solves: faster than torch.cholesky_solve on the CPU.
    x = torch.linalg.solve_triangular(chol, b, upper=False)
    x = torch.linalg.solve_triangular(chol.mH, x, upper=True)
    failed = info != 0
    if bool(failed.any()):
        x[failed] = _min_norm_solve(a[failed], b[failed])
    return x


def _min_norm_solve(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Minimum-norm least-squares solution, singular values below ``n * eps`` cut.

    Parameters
    ----------
    a : torch.Tensor [shape=(batch, n, n)], symmetric
    b : torch.Tensor [shape=(batch, n, k)]

    Returns
    -------
    torch.Tensor [shape=(batch, n, k)]
    """
    # Truncated eigendecomposition: for a symmetric PSD matrix the singular
    # values are the eigenvalues, so this is the SVD-based least squares of
    # numpy/LAPACK (gelsd, cut-off n·eps·σ_max) at about 60 % of its cost.
    w, v = torch.linalg.eigh(a)
    cut = a.shape[-1] * torch.finfo(a.dtype).eps * w.abs().amax(-1, keepdim=True)
    inv = torch.where(w > cut, 1.0 / w, torch.zeros_like(w))
    return v @ (inv[..., None] * (v.mT @ b))


def _db(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``10 log10(num / den)``, and ``+inf`` where ``den`` is zero (as museval)."""
    inf = torch.tensor(float("inf"), dtype=num.dtype, device=num.device)
    return torch.where(den == 0, inf, 10.0 * torch.log10(num / den))


# ----------------------------------------------------------------------------
# Small numpy helpers
# ----------------------------------------------------------------------------


def _best_permutation(frames_sir: np.ndarray) -> np.ndarray:
    """Estimate index for each reference, maximising the mean SIR.

    Parameters
    ----------
    frames_sir : np.ndarray [shape=(nb_sources, nb_sources, nb_frames)]
        SIR of estimate ``i`` against reference ``j`` at frame ``t``.

    Returns
    -------
    np.ndarray [shape=(nb_sources,), dtype=int]

    Notes
    -----
    The mean over sources and frames of a permutation's SIR is the sum over
    sources of each pair's mean over frames, so the best permutation is the
    solution of a linear assignment problem on the matrix of pair means.
    """
    valid = ~np.isnan(frames_sir)
    count = valid.sum(-1)
    with np.errstate(invalid="ignore"):
        total = np.where(valid, frames_sir, 0.0).sum(-1)
        score = np.where(count > 0, total / np.maximum(count, 1), -np.inf)
    # linear_sum_assignment needs finite costs; +-inf SIR (no interference at
    # all, or no projection) must still rank first or last.
    score = np.nan_to_num(score, nan=-1e300, posinf=1e300, neginf=-1e300)
    score = np.clip(score, -1e300, 1e300)
    _, cols = scipy.optimize.linear_sum_assignment(score, maximize=True)
    return cols


def _nanmedian_rows(x: np.ndarray) -> np.ndarray:
    """Median of each row ignoring NaN; NaN for rows that are all NaN.

    Written out because ``np.nanmedian`` warns on all-NaN rows.
    """
    out = np.full(x.shape[0], np.nan)
    for i, row in enumerate(x):
        row = row[~np.isnan(row)]
        if row.size:
            out[i] = np.median(row)
    return out


def _check_positive(value, name: str, *, allow_inf: bool) -> float:
    """Return ``value`` as a float, or raise if it is not a positive number."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ParameterError(f"{name}={value!r} must be a positive number")
    value = float(value)
    if not value > 0 or math.isnan(value) or (math.isinf(value) and not allow_inf):
        allowed = "a positive number (or math.inf)" if allow_inf else "a positive finite number"
        raise ParameterError(f"{name}={value!r} must be {allowed}")
    return value
