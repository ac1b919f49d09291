"""ILRMA: determined blind source separation with low-rank source models.

Independent low-rank matrix analysis (Kitamura, Ono, Sawada, Kameoka &
Saruwatari 2016) unmixes a ``C``-channel convolutive mixture into ``C``
sources with one demixing matrix per frequency::

    y(f, t) = W(f) x(f, t),        W(f) ∈ C^{C×C}.

Each output ``y_n`` is modelled as a zero-mean complex Gaussian whose variance
is a low-rank (NMF) spectrogram ``r_n(f, t) = Σ_k T_n(f, k) V_n(k, t)``. The
negative log-likelihood

    Σ_{f,t,n} |y_n(f, t)|² / r_n(f, t) + log r_n(f, t) − 2 T Σ_f log |det W(f)|

is decreased by alternating:

* NMF updates of ``T_n`` and ``V_n`` on ``|y_n|²`` (Itakura–Saito). We use
  the multiplicative updates *without* the square root of the MM form
  (Févotte & Idier 2011 call them the heuristic updates; they decrease the
  cost in practice): on our speech mixtures they reach 40+ dB in 30
  iterations where the square-root form was still at 11–30 dB after 50, and
  sometimes stalled there.
* iterative projection (IP, Ono 2011) for each row of ``W``::

      U_n(f) = (1/T) Σ_t x xᴴ / r_n(f, t)
      w_n ← (W U_n)^{-1} e_n,    w_n ← w_n / sqrt(w_nᴴ U_n w_n)

  (the rows of ``W`` are ``w_nᴴ``),
* a rescaling of each output to unit mean power (the model's scale is free).

Because one NMF spectrogram is shared by all frequencies of a source, the
outputs of different frequencies stay aligned: no permutation solver is
needed, unlike frequency-domain ICA. The images of source ``n`` in the
mixture's channels are the projection back ``A(f)[:, n] y_n`` with
``A = W⁻¹``, so they sum to the mixture.

Speed: everything is vectorised over sources and frequencies in torch on the
chosen device, in float32 except the weighted covariances and the demixing
matrices (float64, see ``ilrma``); 2×2 systems are solved in closed form.
Before the NMF model, a few iterations use a rank-1 model (see ``WARMUP``).
Memory: the fit holds a handful of arrays of its STFT's size (the STFT, the
NMF model and its inverse, the covariance features in float64), so on a long
recording it runs on ``fit_seconds`` of it: that many seconds taken as
evenly spread stretches. The demixing matrices are time-invariant (the
sources and microphones are assumed not to move, as the whole method does),
so a few minutes estimate 2×2 or 3×3 matrices per frequency as well as an
hour would, provided every source sounds somewhere in the stretches (one
silent in all of them is not separated). They are then applied to the
whole recording a block of frames at a time, from an STFT recomputed from
the samples, into an overlap-add per source: only the images themselves are
full length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
import torch

from demixstudio.audio.io import energy as audio_energy
from demixstudio.audio.stft import OverlapAdd, StftConfig, spread_frames, stft_frames
from demixstudio.errors import ParameterError
from demixstudio.jobs import memory
from demixstudio.jobs.context import JobContext
from demixstudio.separation import _linear as lin
from demixstudio.separation.base import Hints, LayerProposal, Method, param, params_to_dict
from demixstudio.devices import pick_device
from demixstudio.separation.registry import register

#: Floor of the NMF factors; the outputs are normalised to unit mean power,
#: so absolute floors are meaningful.
EPS = 1e-10
#: Floor of the source model r_n(f, t), −60 dB below the mean output power.
#: Without it the weights 1/r of the covariances span more than float32 can
#: sum reliably, and the separation degrades after it has converged.
MODEL_FLOOR = 1e-6
#: Iterations run with a rank-1 source model r_n(f, t) = t_n(f) v_n(t) (an
#: IVA with a time-varying Gaussian model) before the full NMF model. One
#: activation shared by all frequencies ties the frequencies of a source
#: together strongly, which keeps ILRMA out of the local optima where a band
#: of one source is assigned to the other (measured on anechoic speech: 13.7
#: dB stuck without, 43 dB with).
WARMUP = 10
#: Stretches the fit's frames are taken from, on a recording longer than ``fit_seconds``.
FIT_STRETCHES = 8
#: Frames per block when the demixing matrices are applied.
APPLY_BLOCK = 512
#: Diagonal loading of the weighted covariances U_n(f), relative to their
#: mean eigenvalue. A frequency where the channels are (nearly) proportional,
#: or hold nothing, has a singular U_n and the IP step divided by its zero
#: determinant (NaN stems; e.g. a 16-bit dual-mono file whose channels differ
#: by one LSB here and there). 1e-12 of the power is 120 dB down, below any
#: separation ILRMA reaches, and float64 still solves a condition of 1e12 to
#: ~4 digits: the SDRs of tests/test_ilrma.py are unchanged to 0.1 dB.
DIAG_LOAD = 1e-12


def _solve_unit(a: torch.Tensor, n: int) -> torch.Tensor:
    """x with a x = e_n, for a batch of C×C matrices a (F, C, C) -> (F, C).

    2×2 in closed form: a LAPACK call per frequency costs more than the formula.
    """
    c = a.shape[-1]
    if c == 2:
        det = a[:, 0, 0] * a[:, 1, 1] - a[:, 0, 1] * a[:, 1, 0]
        # Column n of the adjugate over the determinant.
        col = (torch.stack([a[:, 1, 1], -a[:, 1, 0]], -1) if n == 0
               else torch.stack([-a[:, 0, 1], a[:, 0, 0]], -1))
        return col / det[:, None]
    e = torch.zeros((a.shape[0], c, 1), dtype=a.dtype, device=a.device)
    e[:, n] = 1
    return torch.linalg.solve(a, e)[..., 0]


def _mean_power(x: torch.Tensor) -> float:
    """Mean |x|² over the bins, channels and frames of x (F, C, T) complex (1 if silent)."""
    power = float(torch.linalg.vector_norm(x)) ** 2 / max(x.numel(), 1)
    return power if power > 0 else 1.0


def _outer_features(x: torch.Tensor) -> torch.Tensor:
    """The distinct real entries of x xᴴ per bin: x (F, C, T) complex -> (F, C², T) float64.

    Rows: |x_c|² for each c, then Re and Im of x_c x_d* for each c < d. With
    them the weighted covariances of every source come from one real matrix
    product, ``features @ (1/r)ᵀ``, instead of C complex products per iteration.
    """
    x = x.to(torch.complex128)
    c = x.shape[1]
    rows = [x[:, i].real ** 2 + x[:, i].imag ** 2 for i in range(c)]
    for i in range(c):
        for k in range(i + 1, c):
            cross = x[:, i] * x[:, k].conj()
            rows += [cross.real, cross.imag]
    return torch.stack(rows, 1).contiguous()


def _quadratic_coefficients(w: torch.Tensor) -> torch.Tensor:
    """Coefficients of |w_nᴴ x|² on the :func:`_outer_features` rows: (F, C, C) -> (F, C, C²).

    Row n of ``w`` (y_n = Σ_c w[n, c] x_c) gives |w[n, c]|² on |x_c|², and for
    c < d, with a = w[n, c] w[n, d]*: 2 Re a on Re(x_c x_d*) and −2 Im a on
    Im(x_c x_d*).
    """
    c = w.shape[-1]
    cols = [w[..., i].real ** 2 + w[..., i].imag ** 2 for i in range(c)]
    for i in range(c):
        for k in range(i + 1, c):
            a = w[..., i] * w[..., k].conj()
            cols += [2.0 * a.real, -2.0 * a.imag]
    return torch.stack(cols, -1)


def _covariances(stats: torch.Tensor, c: int) -> torch.Tensor:
    """Hermitian C×C matrices from :func:`_outer_features` sums: (F, C², N) -> (N, F, C, C)."""
    f, _, n = stats.shape
    u = torch.zeros((n, f, c, c), dtype=torch.complex128, device=stats.device)
    st = stats.permute(2, 0, 1)  # (N, F, C²)
    for i in range(c):
        u[:, :, i, i] = st[:, :, i]
    row = c
    for i in range(c):
        for k in range(i + 1, c):
            val = torch.complex(st[:, :, row], st[:, :, row + 1])
            u[:, :, i, k] = val
            u[:, :, k, i] = val.conj()
            row += 2
    return u


def _load_diagonal(u: torch.Tensor) -> None:
    """Add ``DIAG_LOAD`` × the mean eigenvalue to the diagonal of each of u
    (N, F, C, C), in place.

    A matrix that is all zeros (a frequency with no energy at all) gets
    ``DIAG_LOAD²`` × the mean over frequencies instead, so it is never singular.
    """
    c = u.shape[-1]
    diag = u.diagonal(dim1=-2, dim2=-1)  # (N, F, C), a view
    mean_eig = diag.real.sum(-1) / c  # (N, F)
    floor = DIAG_LOAD * mean_eig.mean(-1, keepdim=True)
    diag += (DIAG_LOAD * (mean_eig + floor))[..., None].to(u.dtype)


def _check_spatial_rank(feats: torch.Tensor, c: int) -> None:
    """Raise ``ParameterError`` unless the channels span C independent
    directions at some frequency; feats (F, C², T) from :func:`_outer_features`.

    ILRMA finds C sources in C channels: where the channels are identical,
    scaled copies or one is silent, every frequency's covariance is singular
    and there is nothing spatial to unmix. Frequencies that are singular
    beside full-rank ones (a mono band) are left to the diagonal loading.
    """
    cov = _covariances(feats.sum(-1, keepdim=True), c)[0]  # (F, C, C), float64 sums
    ranks = lin.spatial_rank(cov.cpu().numpy())
    if not np.any(ranks == c):
        raise ParameterError(
            f"the input's {c} channels span only {int(ranks.max())} independent direction(s) "
            "at every frequency (identical or scaled channels, or a silent one): there is "
            f"nothing spatial for ILRMA to separate into {c} sources")


def resolve_device(device: str) -> torch.device:
    """``"auto"``: CUDA when available, else the CPU (ILRMA needs float64, which MPS lacks)."""
    if device == "mps":
        raise ParameterError("device='mps' is not offered: ILRMA needs float64, which MPS lacks")
    return pick_device(device, mps=False)


def ilrma(X: np.ndarray, *, iterations: int = 50, components: int = 4, seed: int = 0,
          warmup: int = WARMUP,
          device: torch.device = torch.device("cpu"),
          ctx: JobContext, outputs: bool = True) -> Tuple[Optional[np.ndarray], np.ndarray]:
    """Run ILRMA on a multichannel STFT.

    Parameters
    ----------
    X : np.ndarray [shape=(C, F, T), complex]
        The mixture's STFT, C ≥ 2 channels.
    iterations : int, sweeps of NMF + IP updates
    components : int, NMF bases per source
    warmup : int, first iterations with a rank-1 source model (see :data:`WARMUP`)
    seed : int, seeds the random NMF start (W starts as the identity)
    device : torch.device
    ctx : progress once per iteration, and cancel
    outputs : whether to compute Y (None otherwise)

    Returns
    -------
    Y : np.ndarray [shape=(C, F, T), dtype=complex64], the separated outputs
        (arbitrary scale per frequency: use :func:`project_back` for images), or None
    W : np.ndarray [shape=(F, C, C), dtype=complex64], demixing matrices, y = W x

    Raises
    ------
    ParameterError
        if the channels are degenerate (see :func:`_check_spatial_rank`).
    """
    c, nb_bins, nb_frames = X.shape
    # The largest arrays: the covariance features (F, C², T) float64, the model and
    # its temporaries (C, F, T) and the activations with theirs (C, K, T), float32.
    # A tiny n_fft gives millions of frames; with many components that is tens of GB.
    memory.check_fits(nb_bins * c * c * nb_frames * 8 + 4 * c * (nb_bins + components)
                      * nb_frames * 4,
                      f"ILRMA on {nb_frames} frames × {nb_bins} bins with {components} "
                      "components", "use a larger n_fft, fewer components, or a shorter "
                      "fit_seconds")
    gen = torch.Generator().manual_seed(int(seed))
    x = torch.from_numpy(np.ascontiguousarray(X.transpose(1, 0, 2), dtype=np.complex64))
    x = x.to(device)  # (F, C, T)
    # Fit on the mixture scaled to unit mean power: the floors below (EPS,
    # MODEL_FLOOR) are absolute, and before the first normalisation they would
    # otherwise weigh differently on a quiet file than on a loud one (measured:
    # the same file 40 dB down gave other stems). W is scaled back at the end.
    level = _mean_power(x)
    feats = _outer_features(x).div_(level)  # (F, C², T), float64 (in place: the largest array)
    _check_spatial_rank(feats, c)
    # W in double precision: once the outputs are 40 dB apart, the weighted
    # covariances are nearly singular and float32 sums or solves make the
    # IP steps jump (measured: the cost blows up after ~30 iterations).
    w64 = torch.eye(c, dtype=torch.complex128, device=device).repeat(nb_bins, 1, 1)
    rank = 1 if warmup > 0 else components
    basis = (0.1 + 0.9 * torch.rand((c, nb_bins, rank), generator=gen)).to(device)
    act = (0.1 + 0.9 * torch.rand((c, rank, nb_frames), generator=gen)).to(device)

    def output_power() -> torch.Tensor:
        """|y_n(f, t)|² (C, F, T) as the quadratic forms w_nᴴ (x xᴴ) w_n.

        One real product with the covariance features instead of forming
        y = W x: the complex (F, C, C) @ (F, C, T) product was the largest
        single cost of an iteration.
        """
        coef = _quadratic_coefficients(w64)  # (F, C, C²)
        # float64: the quadratic form cancels |x|² down to |y_n|², which can
        # be 40 dB smaller (float32 here cost 6 dB of SDR on a 2×2 case).
        return torch.bmm(coef, feats).transpose(0, 1).to(torch.float32)

    p = output_power()
    # Start the NMF at the level of the data, so the first IP step is not
    # driven by an arbitrary model scale.
    r = basis @ act
    scale = p.mean(dim=(1, 2), keepdim=True) / r.mean(dim=(1, 2), keepdim=True)
    basis *= scale
    r = (basis @ act).clamp_min(MODEL_FLOOR)
    for it in range(iterations):
        ctx.progress(it, iterations, f"ILRMA iteration {it + 1}/{iterations}")
        if it == warmup and rank != components:
            # Split the rank-1 model into K perturbed copies of itself.
            basis = basis * (0.5 + torch.rand((c, nb_bins, components), generator=gen)
                             ).to(device) / components
            act = act * (0.5 + torch.rand((c, components, nb_frames), generator=gen)).to(device)
            rank = components
            r = (basis @ act).clamp_min_(MODEL_FLOOR)
        # NMF (IS divergence) of every source at once.
        inv = r.reciprocal()
        pr = inv.square().mul_(p)
        basis *= (pr @ act.transpose(1, 2)) / (inv @ act.transpose(1, 2))
        basis.clamp_min_(EPS)
        r = (basis @ act).clamp_min_(MODEL_FLOOR)
        inv = r.reciprocal()
        pr = inv.square().mul_(p)
        act *= (basis.transpose(1, 2) @ pr) / (basis.transpose(1, 2) @ inv)
        act.clamp_min_(EPS)
        r = (basis @ act).clamp_min_(MODEL_FLOOR)
        inv = r.reciprocal()
        # Iterative projection, one row of W per source. U_n depends only on
        # r_n, so all of them come from one product.
        u_all = _covariances(feats @ inv.permute(1, 2, 0).double() / nb_frames, c)
        _load_diagonal(u_all)
        for n in range(c):
            u = u_all[n]  # (F, C, C)
            wn = _solve_unit(w64 @ u, n)  # (F, C)
            norm = torch.einsum("fc,fcd,fd->f", wn.conj(), u, wn).real.clamp_min(EPS)
            w64[:, n, :] = (wn / norm.sqrt()[:, None]).conj()
        p = output_power()
        # The model's scale is free: unit mean output power keeps the floors meaningful.
        lam = p.mean(dim=(1, 2)).clamp_min(EPS)  # (C,)
        w64 /= lam.double().sqrt().to(w64.dtype)[None, :, None]
        scale = lam[:, None, None]
        p.div_(scale)
        r.div_(scale)
        basis.div_(scale)
    ctx.progress(iterations, iterations, "ILRMA")
    if not bool(torch.isfinite(w64).all()):
        # The loading should make this unreachable; if not, say so rather
        # than hand NaN stems on.
        raise ParameterError("ILRMA diverged (non-finite demixing matrices) on this input; "
                             "try fewer iterations, another seed or another method")
    w = (w64 / level ** 0.5).to(torch.complex64)  # for the mixture at its own level
    if not outputs:
        return None, w.cpu().numpy()
    y = w @ x
    return y.transpose(0, 1).cpu().numpy(), w.cpu().numpy()


def apply_demixing(mix: np.ndarray, cfg: StftConfig, W: np.ndarray, ctx: JobContext
                   ) -> List[np.ndarray]:
    """The images of every source: ``A(f)[:, n] (W(f) x(f, t))_n`` with ``A = W⁻¹``,
    a block of frames at a time into one overlap-add per source.

    mix float32 (C, samples); W complex (F, C, C). Returns C arrays float32
    (C, samples), which sum to ``mix``.
    """
    c, n = mix.shape
    a = np.linalg.inv(W.astype(np.complex128)).astype(np.complex64)  # (F, C, N)
    w = W.astype(np.complex64)
    total = cfg.frames(n)
    sinks = [OverlapAdd(c, n, cfg) for _ in range(c)]
    for t0 in range(0, total, APPLY_BLOCK):
        ctx.progress(t0, total, "source images")
        t1 = min(total, t0 + APPLY_BLOCK)
        x = stft_frames(mix, cfg, t0, t1).transpose(1, 0, 2)  # (F, C, b)
        y = w @ x  # (F, N, b)
        for k, sink in enumerate(sinks):
            img = a[:, :, k, None] * y[:, k, None, :]  # (F, C, b)
            sink.add_spectrum(t0, img.transpose(1, 0, 2))
    ctx.progress(total, total, "source images")
    return [s.result() for s in sinks]


def project_back(Y: np.ndarray, W: np.ndarray, source: int) -> np.ndarray:
    """Image of one source in the mixture's channels: A[:, :, n] y_n with A = W⁻¹.

    Parameters
    ----------
    Y : np.ndarray [shape=(N, F, T), complex], outputs of ``W x``
    W : np.ndarray [shape=(F, N, C), complex], N = C
    source : n

    Returns
    -------
    np.ndarray [shape=(C, F, T), dtype=complex64]; the images of all sources sum to x.
    """
    a = np.linalg.inv(W.astype(np.complex128))[:, :, source]  # (F, C)
    return (a.T[:, :, None] * Y[source][None]).astype(np.complex64)


@register
class Ilrma(Method):
    """ILRMA: determined separation of as many sources as channels, with NMF source models."""

    name = "ilrma"
    title = "ILRMA (independent low-rank matrix analysis)"
    summary = ("Unmixes a convolutive (room or spaced-microphone) recording into as many "
               "sources as it has channels, modelling each source's spectrogram as low-rank.")
    references = (
        "D. Kitamura, N. Ono, H. Sawada, H. Kameoka, H. Saruwatari, 'Determined blind source "
        "separation unifying independent vector analysis and nonnegative matrix "
        "factorization', IEEE/ACM Trans. Audio, Speech, Lang. Process. 24(9):1626–1641, 2016.",
        "N. Ono, 'Stable and fast update rules for independent vector analysis based on "
        "auxiliary function technique', Proc. IEEE WASPAA 2011, pp. 189–192.",
    )
    min_channels = 2

    @dataclass(frozen=True)
    class Params:
        iterations: int = param(
            50, label="Iterations", min=1, max=5000,
            help="Sweeps of NMF and demixing-matrix (IP) updates.")
        components: int = param(
            4, label="NMF bases per source", min=1, max=256,
            help="Rank of each source's spectrogram model: small for speech and simple "
                 "instruments, larger for rich music.")
        warmup: int = param(
            WARMUP, label="Rank-1 warm-up", min=0, max=5000,
            help="First iterations with a rank-1 source model (IVA-like), which keeps "
                 "the frequencies of each source together before the NMF model refines it.")
        n_fft: int = param(
            0, label="Window (samples)", min=0, max=65536,
            help="STFT window; 0 = the program's default (about 46 ms). Each frequency is "
                 "unmixed instantaneously, so the window must be long against the delays "
                 "and echoes between the microphones. A multiple of 4; the hop is a quarter.")
        device: str = param(
            "cpu", label="Device", advanced=True, choices=("auto", "cpu", "cuda"),
            help="Where to compute: auto = CUDA GPU, else the CPU. The work per frequency "
                 "is tiny matrices, so the CPU is usually fast enough.")
        seed: int = param(
            0, label="Seed", advanced=True, min=0,
            help="Seed of the random start of the NMF source models.")
        fit_seconds: float = param(
            120.0, label="Fit on (s)", min=0.0, max=1e6,
            help="On a longer recording the demixing matrices are estimated on this many "
                 "seconds of it (evenly spread stretches; they do not change with time), "
                 "then applied to all of it. Every source must sound somewhere in those "
                 "stretches. 0 = fit on the whole recording (memory grows with its length).")

    def separate(self, mix: np.ndarray, sr: int, params: "Ilrma.Params",
                 hints: Hints, ctx: JobContext) -> List[LayerProposal]:
        """Separate ``mix`` float32 (C, samples), C ≥ 2, into C source images.

        Returns one waveform proposal per source, float32 (C, samples), loudest
        first; the images sum to the mixture.
        """
        self.check_input(mix)
        lin.validate_mix(mix)
        # Refused by the rank check too, but "constant" says why.
        if lin.is_constant(mix):
            raise ParameterError(lin.CONSTANT_INPUT)
        cfg = StftConfig.for_rate(sr) if params.n_fft == 0 else None
        if cfg is None:
            if params.n_fft % 4 or params.n_fft < 16:
                raise ParameterError(
                    f"n_fft={params.n_fft} must be a multiple of 4 and at least 16 (or 0)")
            cfg = StftConfig(n_fft=params.n_fft, hop=params.n_fft // 4)
        device = resolve_device(params.device)
        with ctx.stage(0.0, 0.05, "STFT"):
            ctx.progress(0, 1, "STFT")
            X = spread_frames(mix, cfg, int(params.fit_seconds * sr) // cfg.hop,
                              FIT_STRETCHES)
        with ctx.stage(0.05, 0.9, "ILRMA"):
            _, W = ilrma(X, iterations=params.iterations, components=params.components,
                         warmup=params.warmup, seed=params.seed, device=device, ctx=ctx,
                         outputs=False)
        del X
        with ctx.stage(0.9, 1.0, "building the source images"):
            waves = apply_demixing(mix, cfg, W, ctx)
        energy = [audio_energy(wv) for wv in waves]
        order = np.argsort(energy)[::-1]
        pdict = params_to_dict(params)
        return [LayerProposal(name=f"source {i + 1}", method=self.name, params=pdict,
                              waveform=waves[k])
                for i, k in enumerate(order)]
