"""PROJET: spatial audio separation using projections (FitzGerald, Liutkus & Badeau 2016).

Model
-----
A stereo mixture ``x(f, t) ∈ C²`` is a sum of ``J`` objects. Object ``j`` has
a non-negative power spectral density ``P(f, t, j)`` (the scale of an
α-stable, here by default Cauchy (α = 1), variable) and is spread over a
*location set* of ``L`` stereo directions with non-negative gains ``Q(l, j)``.
A direction is a unit vector::

    θ_l(f) = (cos φ_l,  sin φ_l · exp(−i ω_f τ_l))        (pan φ_l, delay τ_l)

with ``ω_f = 2π f / n_fft`` (rad/sample); in ``pan`` mode every τ is 0.

Instead of modelling the 2×2 covariances, PROJET looks at the mixture along
``M`` *projections* ``n_m(f)`` (unit row vectors): ``c_m = n_m · x``. Because
α-stable scales add under linear mixing, each projection is again α-stable
with scale::

    σ(f, t, m) = Σ_j P(f, t, j) Σ_l K(f, m, l) Q(l, j),    K = |n_m · θ_l|^α.

The projections used here are *null steerers*: ``n_m`` is orthogonal to the
direction (ψ_m, τ_m), so a projection silences the objects sitting there and
keeps the others — the same idea as ADRess, but with the cancellation pattern
of every projection modelled jointly for every location. ``P`` and ``Q`` are
fitted to ``V = |c|^α`` with multiplicative updates: the Cauchy
likelihood (the ICASSP paper; numerator ``1/σ``, denominator ``3σ/(σ² + V²)``)
or the KL divergence (the TASLP paper's β = 1).

Separation: each projection ``c_m`` is split among the objects with the
α-Wiener gains ``K Q(m, j) P(f, t, j) / σ(f, t, m)``, and the stereo image
of object ``j`` is recovered from its projections with the pseudo-inverse of
the projection matrix ``N(f)`` (M × 2). The images sum to the mixture
(``N⁺ N = I``).

Memory and speed
----------------
All work is in torch on the chosen device (CUDA, MPS, else the CPU), in
float32. Frames are processed in blocks: ``P`` (F, T, J) is held whole, but
the STFT is recomputed from the audio, and the projections ``V`` (F, T, M)
and every ``(F, T, M)`` temporary exist one block at a time (``V`` is cached
across iterations only while it fits :data:`V_CACHE_BYTES`). The images are
built one object at a time, so the output never needs ``J`` full-size
spectrograms.

Long recordings: the location gains ``Q`` are the only parameters shared by
all frames, and given ``Q`` each frame's PSDs are fitted from that frame
alone (σ(f, t, ·) depends only on P(f, t, ·)). So on a recording longer than
``fit_seconds`` the model is fitted on evenly spread stretches of it, and then,
block by block over the whole file, each block's PSDs are fitted with ``Q``
held (:func:`refit_psd`, from a flat start, so a frame's result does not
depend on how the frames are blocked) and turned into images at once:
``P`` never exists at full length.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from demixstudio.audio.stft import AudioStft, OverlapAdd, StftConfig, spread_frames, stft_block
from demixstudio.errors import ParameterError
from demixstudio.jobs import memory
from demixstudio.jobs.context import JobContext
from demixstudio.separation import _linear as lin
from demixstudio.separation.base import Hints, LayerProposal, Method, param, params_to_dict
from demixstudio.devices import DEVICE_CHOICES, pick_device
from demixstudio.separation.registry import register

#: At most this many frames per block; fewer when the bins × projections are
#: many, so that one (F, b, M) temporary stays near :data:`BLOCK_BYTES`.
FRAMES_PER_BLOCK = 256
BLOCK_BYTES = 16 << 20
#: The projections |n_m · x|^α are kept between iterations while they take at
#: most this many bytes; beyond, they are recomputed per block (a 2 × M
#: product per bin, cheaper than re-reading them from host memory).
V_CACHE_BYTES = 512 << 20
EPS = 1e-12


def resolve_device(device: str) -> torch.device:
    """``"auto"``: CUDA, else Apple MPS, else the CPU; otherwise that torch device."""
    return pick_device(device)


# --------------------------------------------------------------------------
# Location and projection sets
# --------------------------------------------------------------------------


def grid(lo: float, hi: float, n: int) -> np.ndarray:
    """``n`` evenly spaced values from lo to hi; the midpoint when ``n`` is 1."""
    return np.array([(lo + hi) / 2.0]) if n == 1 else np.linspace(lo, hi, n)


def locations(pans: np.ndarray, delays: np.ndarray, n_fft: int, nb_bins: int) -> np.ndarray:
    """Stereo direction vectors θ(f, l) of every (pan, delay) pair.

    Parameters
    ----------
    pans : np.ndarray [shape=(Lp,)], radians, 0 = left, π/2 = right
    delays : np.ndarray [shape=(Ld,)], samples the right channel lags the left
    n_fft, nb_bins : the STFT's window and number of bins

    Returns
    -------
    np.ndarray [shape=(F', Lp·Ld, 2), dtype=complex128], F' = 1 when every
    delay is 0 (the same vectors at every frequency), else ``nb_bins``.
    Index l = ip·Ld + id.
    """
    omega = 2 * np.pi * np.arange(nb_bins) / n_fft
    if not np.any(delays):
        omega = omega[:1]
    phase = np.exp(-1j * omega[:, None] * delays[None, :])  # (F', Ld)
    left = np.broadcast_to(np.cos(pans)[None, :, None], (omega.size, pans.size, delays.size))
    right = np.sin(pans)[None, :, None] * phase[:, None, :]
    theta = np.stack([left, right], axis=-1)  # (F', Lp, Ld, 2)
    return theta.reshape(omega.size, -1, 2)


def null_projections(pans: np.ndarray, delays: np.ndarray, n_fft: int,
                     nb_bins: int) -> np.ndarray:
    """Unit row vectors n(f, m) orthogonal to the directions (pan, delay).

    ``n · θ = 0`` for θ = (cos ψ, sin ψ e^{−iωτ}) when
    n = (sin ψ e^{−iωτ}, −cos ψ): projecting on it cancels whatever sits at
    (ψ, τ). The projection nulling hard right (ψ = π/2) is the left channel
    and the one nulling hard left is the right channel.

    Returns
    -------
    np.ndarray [shape=(F', Mp·Md, 2), dtype=complex128], F' as in :func:`locations`
    """
    theta = locations(pans, delays, n_fft, nb_bins)
    # (a, b) ⟂ (−b, a) in the bilinear sense used here: n·θ = −b·a + a·b = 0.
    return np.stack([theta[..., 1], -theta[..., 0]], axis=-1)


# --------------------------------------------------------------------------
# Initialisation
# --------------------------------------------------------------------------


def pan_histogram(X: "np.ndarray | AudioStft", nb_bins_hist: int,
                  frames_per_block: int = 1024) -> np.ndarray:
    """Power-weighted histogram of the level-ratio pan angle atan2(|X_R|, |X_L|).

    X : complex (2, F, T), an array or an AudioStft read block by block
    -> np.ndarray [shape=(nb_bins_hist,)] over [0, π/2], bin centres at
    ``grid(0, π/2, nb_bins_hist)``.
    """
    hist = np.zeros(nb_bins_hist)
    step = (np.pi / 2) / max(nb_bins_hist - 1, 1)
    for t0 in range(0, X.shape[2], frames_per_block):
        xb = np.abs(stft_block(X, t0, t0 + frames_per_block))
        xl, xr = xb[0], xb[1]
        ang = np.arctan2(xr, xl)
        w = (xl * xl + xr * xr).astype(np.float64)
        idx = np.clip(np.rint(ang / step).astype(int), 0, nb_bins_hist - 1)
        hist += np.bincount(idx.ravel(), weights=w.ravel(), minlength=nb_bins_hist)
    return hist


def pick_peaks(hist: np.ndarray, count: int, min_distance: int) -> List[int]:
    """Indices of up to ``count`` local maxima of ``hist``, largest first,
    at least ``min_distance`` bins apart."""
    h = np.asarray(hist, dtype=np.float64)
    padded = np.concatenate([[-np.inf], h, [-np.inf]])
    is_max = (padded[1:-1] >= padded[:-2]) & (padded[1:-1] >= padded[2:]) & (h > 0)
    cand = np.flatnonzero(is_max)
    cand = cand[np.argsort(-h[cand], kind="stable")]
    peaks: List[int] = []
    for c in cand:
        if all(abs(int(c) - p) >= min_distance for p in peaks):
            peaks.append(int(c))
        if len(peaks) == count:
            break
    return peaks


def initial_pans(X: np.ndarray, nb_sources: int, resolution_deg: float = 1.0) -> np.ndarray:
    """Pan angles (radians, (≤ J,)) of the strongest peaks of the level-ratio histogram.

    The histogram is smoothed with a Gaussian of 2° so that one source spread
    by the STFT's leakage does not make several peaks.
    """
    n = int(round(90.0 / resolution_deg)) + 1
    hist = pan_histogram(X, n)
    sd = 2.0 / resolution_deg
    k = np.arange(-int(4 * sd), int(4 * sd) + 1)
    kernel = np.exp(-0.5 * (k / sd) ** 2)
    smooth = np.convolve(np.pad(hist, k.size // 2, mode="reflect"), kernel, mode="valid")
    peaks = pick_peaks(smooth, nb_sources, min_distance=max(1, int(round(3.0 / resolution_deg))))
    return np.sort(grid(0.0, np.pi / 2, n)[peaks])


# --------------------------------------------------------------------------
# The algorithm
# --------------------------------------------------------------------------


@dataclass
class ProjetModel:
    """A fitted PROJET model.

    psd : torch.Tensor [shape=(F, T, J)], object PSDs P
    gains : torch.Tensor [shape=(L, J)], location gains Q (columns sum to 1)
    kernel : torch.Tensor [shape=(F', M, L)], K = |n_m · θ_l|^α
    proj : torch.Tensor [shape=(F', M, 2), complex64], projection rows n_m
    pans, delays : the location set's grids (radians, samples)
    """

    psd: torch.Tensor
    gains: torch.Tensor
    kernel: torch.Tensor
    proj: torch.Tensor
    pans: np.ndarray
    delays: np.ndarray

    def directions(self) -> List[Tuple[float, float]]:
        """Per object, the (pan °, delay samples) of its largest location gain."""
        q = self.gains.cpu().numpy()
        out = []
        for j in range(q.shape[1]):
            ip, idl = divmod(int(np.argmax(q[:, j])), self.delays.size)
            out.append((float(np.degrees(self.pans[ip])), float(self.delays[idl])))
        return out


def _projections(x: torch.Tensor, proj: torch.Tensor) -> torch.Tensor:
    """c(f, t, m) = n_m(f) · x(f, t): x (2, F, b) complex, proj (F', M, 2) -> (F, b, M)."""
    c = x[0, :, :, None] * proj[:, None, :, 0]
    c += x[1, :, :, None] * proj[:, None, :, 1]
    return c


def _magnitude(c: torch.Tensor, alpha: float) -> torch.Tensor:
    v = c.abs()
    return v if alpha == 1.0 else v.pow(alpha)


# The three contractions of the updates, as plain matrix products: one GEMM
# over all (f, t) when K does not depend on frequency, a batched one otherwise.

def _model(p: torch.Tensor, kq: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """σ(f, t, m) = Σ_j P(f, t, j) KQ(f, m, j): p (F, b, J), kq (F', M, J) -> (F, b, M)."""
    if kq.shape[0] == 1:
        f, b, j = p.shape
        o = None if out is None else out.view(f * b, -1)
        return torch.mm(p.reshape(f * b, j), kq[0].T, out=o).view(f, b, -1)
    return torch.bmm(p, kq.transpose(1, 2), out=out)


def _back(w: torch.Tensor, kq: torch.Tensor) -> torch.Tensor:
    """Σ_m w(f, t, m) KQ(f, m, j): w (F, b, M) -> (F, b, J)."""
    if kq.shape[0] == 1:
        f, b, m = w.shape
        return (w.reshape(f * b, m) @ kq[0]).reshape(f, b, -1)
    return torch.bmm(w, kq)


def _stats(w: torch.Tensor, p: torch.Tensor, shared: bool) -> torch.Tensor:
    """Σ_t w(f, t, m) P(f, t, j): -> (F, M, J), or (1, M, J) summed over f if ``shared``."""
    if shared:
        f, b, m = w.shape
        return (w.reshape(f * b, m).T @ p.reshape(f * b, -1))[None]
    return torch.bmm(w.transpose(1, 2), p)


def _ratio_terms(sigma: torch.Tensor, v: torch.Tensor, v2: torch.Tensor, cost: str,
                 work: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Numerator and denominator weights of the multiplicative updates, (F, b, M) each.

    Cauchy: −∂/∂σ of log σ − (3/2) log(σ² + V²) splits into 1/σ (positive part)
    and 3σ/(σ² + V²) (negative part). KL(V | σ): V/σ² and 1/σ.
    These are the largest temporaries, so they are written into ``sigma``
    and the preallocated ``work`` (same shape): fresh tensors of this size
    come from mmap and pay a page fault per 4 KiB on every call.
    """
    if cost == "cauchy":
        torch.mul(sigma, sigma, out=work)
        work += v2
        torch.div(sigma, work, out=work)
        work *= 3.0
        return sigma.reciprocal_(), work
    den = sigma.reciprocal_()
    torch.mul(v, den, out=work)
    work *= den
    return work, den


def _psd_step(p: torch.Tensor, kq: torch.Tensor, v: torch.Tensor, v2: torch.Tensor, cost: str,
              sig: torch.Tensor, tmp: torch.Tensor) -> torch.Tensor:
    """One multiplicative update of the PSDs p (F, b, J) with KQ held; ``sig`` and
    ``tmp`` are (F, b, M) work buffers."""
    _model(p, kq, out=sig).add_(EPS)
    num, den = _ratio_terms(sig, v, v2, cost, tmp)
    return p * _back(num, kq) / (_back(den, kq) + EPS)


def _gain_stats(kernel: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
    """Σ_f Σ_m K(f, m, l) S(f, m, j) as one GEMM: kernel (F', M, L), stats (F', M, J) -> (L, J).

    (Written as Sᵀ K so that the long axis is contiguous in both operands;
    torch.einsum picks a layout several times slower here.)
    """
    nb_l = kernel.shape[-1]
    return (stats.reshape(-1, stats.shape[-1]).T @ kernel.reshape(-1, nb_l)).T


def block_frames(nb_bins: int, nb_proj: int, target_bytes: int = BLOCK_BYTES) -> int:
    """Frames per block so that one (F, b, M) float32 temporary takes about ``target_bytes``."""
    return int(min(FRAMES_PER_BLOCK, max(8, target_bytes // (4 * nb_bins * nb_proj))))


def kernel_matrix(proj: np.ndarray, theta: np.ndarray, alpha: float,
                  bins_per_chunk: int = 64) -> np.ndarray:
    """K(f, m, l) = |n_m(f) · θ_l(f)|^α, float32 (F', M, L).

    Built a few frequencies at a time so that the complex products never
    exist at full size.
    """
    nb, m, _ = proj.shape
    # The kernel holds every frequency × projection × direction: with many delays
    # (pan+delay mode) it reaches tens of GB. Refused before NumPy hands it out lazily
    # and the system kills the process while it is filled.
    memory.check_fits(nb * m * theta.shape[1] * 4,
                      f"PROJET's kernel ({nb} frequencies × {m} projections × "
                      f"{theta.shape[1]} directions)",
                      "use fewer directions or projections (or fewer delays of each), "
                      "or a smaller n_fft")
    out = np.empty((nb, m, theta.shape[1]), dtype=np.float32)
    for f0 in range(0, nb, bins_per_chunk):
        f1 = min(nb, f0 + bins_per_chunk)
        k = np.abs(np.einsum("fmc,flc->fml", proj[f0:f1], theta[f0:f1]))
        out[f0:f1] = k if alpha == 1.0 else k ** alpha
    return out


def fit(X: "np.ndarray | AudioStft", *, nb_sources: int, pans: np.ndarray, delays: np.ndarray,
        proj_pans: np.ndarray, proj_delays: np.ndarray, n_fft: int, iterations: int,
        alpha: float = 1.0, cost: str = "cauchy", init_pans: Optional[np.ndarray] = None,
        seed: int = 0, device: torch.device = torch.device("cpu"),
        frames_per_block: Optional[int] = None, ctx: JobContext) -> ProjetModel:
    """Fit PROJET's PSDs and location gains to a stereo STFT.

    Parameters
    ----------
    X : complex64 (2, F, T): an array, or an AudioStft whose blocks are recomputed
        from the audio when needed (the projections of short inputs are cached)
    nb_sources : J
    pans, delays : location set grids (radians in [0, π/2]; samples)
    proj_pans, proj_delays : projection set grids (null directions)
    n_fft : the STFT window length (for the delays' phase)
    iterations : multiplicative-update sweeps (each updates P, then Q)
    alpha : the α of the α-stable model (exponent on |·|)
    cost : "cauchy" (Cauchy likelihood) or "kl" (KL divergence on |·|^α)
    init_pans : np.ndarray [shape=(≤ J,)] or None
        Pan angles (radians) at which to start objects; the others start spread
        evenly. Gains start as a Gaussian of 5° around each, on every delay.
    seed : seeds the random part of the start
    frames_per_block : frames per block (None: :func:`block_frames`)
    ctx : progress (one report per block per iteration) and cancel

    Returns
    -------
    ProjetModel
    """
    _, nb_bins, nb_frames = X.shape
    j = nb_sources
    gen = torch.Generator().manual_seed(int(seed))
    theta = locations(pans, delays, n_fft, nb_bins)
    proj_np = null_projections(proj_pans, proj_delays, n_fft, nb_bins)
    if theta.shape[0] != proj_np.shape[0]:  # one set frequency dependent, the other not
        theta = np.broadcast_to(theta, (nb_bins,) + theta.shape[1:])
        proj_np = np.broadcast_to(proj_np, (nb_bins,) + proj_np.shape[1:])
    kernel = torch.from_numpy(kernel_matrix(proj_np, theta, alpha)).to(device)
    proj = torch.from_numpy(proj_np.astype(np.complex64)).to(device)
    shared = kernel.shape[0] == 1

    # Location gains: a bump around each starting pan, the same on every delay.
    start = np.sort(np.asarray(init_pans if init_pans is not None else [], dtype=float))[:j]
    if start.size < j:
        # Objects the histogram did not place start spread over the field.
        spread = grid(np.pi / 16, np.pi / 2 - np.pi / 16, j - start.size + 2)[1:-1]
        start = np.sort(np.concatenate([start, spread]))
    width = np.radians(5.0)
    bump = np.exp(-0.5 * ((pans[:, None] - start[None, :]) / width) ** 2)  # (Lp, J)
    q0 = np.repeat(bump, delays.size, axis=0) + 1e-3  # (Lp·Ld, J), l = ip·Ld + id
    q0 *= 1.0 + 0.1 * torch.rand(q0.shape, generator=gen, dtype=torch.float64).numpy()
    q0 /= q0.sum(0, keepdims=True)
    gains = torch.from_numpy(q0.astype(np.float32)).to(device)

    nb_proj = proj.shape[1]
    if frames_per_block is None:
        frames_per_block = block_frames(nb_bins, nb_proj)
    blocks = [(t0, min(t0 + frames_per_block, nb_frames))
              for t0 in range(0, nb_frames, frames_per_block)]
    cache_v = 2 * nb_bins * nb_frames * nb_proj * 4 <= V_CACHE_BYTES
    v_blocks: Dict[int, Tuple[torch.Tensor, torch.Tensor]] = {}

    def v_block(t0: int, t1: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """V and V² of frames t0..t1, (F, b, M) each."""
        if t0 in v_blocks:
            return v_blocks[t0]
        v = _magnitude(_projections(_frames(X, t0, t1, device), proj), alpha) + EPS
        vv = (v, v * v)
        if cache_v:
            v_blocks[t0] = vv
        return vv

    # Two (F, b, M) work buffers per block length, reused every iteration.
    work: Dict[int, Tuple[torch.Tensor, torch.Tensor]] = {}

    def buffers(b: int) -> Tuple[torch.Tensor, torch.Tensor]:
        if b not in work:
            work[b] = (torch.empty((nb_bins, b, nb_proj), device=device),
                       torch.empty((nb_bins, b, nb_proj), device=device))
        return work[b]

    # PSDs: the mean projected level shared evenly, times a random factor
    # in [0.5, 1.5) that breaks the symmetry between objects.
    # (Drawn whole, so the start does not depend on the block size.)
    psd = (0.5 + torch.rand((nb_bins, nb_frames, j), generator=gen)).to(device)
    kq = kernel @ gains  # (F', M, J)
    for t0, t1 in blocks:
        v, _ = v_block(t0, t1)
        psd[:, t0:t1] *= v.mean(-1, keepdim=True) / (j * kq.mean())

    total = iterations * len(blocks)
    for it in range(iterations):
        kq = kernel @ gains  # (F', M, J)
        q_num = torch.zeros((kernel.shape[0], nb_proj, j), device=device)
        q_den = torch.zeros_like(q_num)
        for bi, (t0, t1) in enumerate(blocks):
            ctx.progress(it * len(blocks) + bi, total,
                         f"PROJET iteration {it + 1}/{iterations}")
            v, v2 = v_block(t0, t1)
            sig, tmp = buffers(t1 - t0)
            p = psd[:, t0:t1]
            # P update with the current Q.
            p = _psd_step(p, kq, v, v2, cost, sig, tmp)
            psd[:, t0:t1] = p
            # Q statistics with the new P.
            _model(p, kq, out=sig).add_(EPS)
            num, den = _ratio_terms(sig, v, v2, cost, tmp)
            q_num += _stats(num, p, shared)
            q_den += _stats(den, p, shared)
        gains = gains * (_gain_stats(kernel, q_num) / (_gain_stats(kernel, q_den) + EPS))
        # Scale ambiguity between P and Q: keep each column of Q summing to 1.
        scale = gains.sum(0).clamp_min(EPS)
        gains = gains / scale
        psd *= scale
    ctx.progress(total, total, "PROJET")
    v_blocks.clear()  # free the cached projections and buffers now, not at return
    work.clear()
    return ProjetModel(psd=psd, gains=gains, kernel=kernel, proj=proj, pans=pans, delays=delays)


def refit_psd(X: "np.ndarray | AudioStft", model: ProjetModel, t0: int, t1: int, *,
              iterations: int, alpha: float = 1.0, cost: str = "cauchy") -> torch.Tensor:
    """The PSDs of frames [t0, t1) fitted with the model's location gains held:
    float32 (F, t1 − t0, J).

    The start is flat (each frame's mean projected level shared evenly), so
    with Q fixed every frame's result is independent of the others and of
    the block boundaries.
    """
    kq = model.kernel @ model.gains  # (F', M, J)
    j = kq.shape[-1]
    dev = model.gains.device
    v = _magnitude(_projections(_frames(X, t0, t1, dev), model.proj), alpha) + EPS
    v2 = v * v
    p = (v.mean(-1, keepdim=True) / (j * kq.mean())).expand(-1, -1, j).contiguous()
    sig, tmp = torch.empty_like(v), torch.empty_like(v)
    for _ in range(iterations):
        p = _psd_step(p, kq, v, v2, cost, sig, tmp)
    return p


def _frames(X: "np.ndarray | AudioStft", t0: int, t1: int, device: torch.device) -> torch.Tensor:
    """Frames [t0, t1) of the mixture STFT as a complex64 tensor (2, F, b) on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(stft_block(X, t0, t1), dtype=np.complex64)
                            ).to(device)


def image_operators(model: ProjetModel) -> Tuple[torch.Tensor, torch.Tensor]:
    """(kq, pinv): the projections' model gains (F', M, J) and the pseudo-inverse of
    the projection matrix per frequency (F', 2, M), for :func:`image_block`."""
    kq = model.kernel @ model.gains
    # N⁺ N = I, so the images sum to the mixture.
    pinv = torch.linalg.pinv(model.proj.to(torch.complex64).cpu()).to(model.gains.device)
    return kq, pinv


def image_block(X: "np.ndarray | AudioStft", model: ProjetModel, sources: List[int], t0: int,
                t1: int, operators: Tuple[torch.Tensor, torch.Tensor],
                psd_of: Optional[Callable[[int, int], torch.Tensor]] = None) -> np.ndarray:
    """STFTs of the stereo images of ``sources`` over frames [t0, t1): complex64
    (len(sources), 2, F, t1 − t0).

    Each projection is split with the α-Wiener gains and the image is
    recovered through the pseudo-inverse of the projection matrix. The PSDs
    are the model's, or ``psd_of(t0, t1)`` (F, b, J) when given (a long file's
    blocks, see :func:`refit_psd`).
    """
    kq, pinv = operators
    dev = model.gains.device
    c = _projections(_frames(X, t0, t1, dev), model.proj)
    p = model.psd[:, t0:t1] if psd_of is None else psd_of(t0, t1)
    sigma = _model(p, kq) + EPS
    out = np.empty((len(sources), 2, X.shape[1], t1 - t0), dtype=np.complex64)
    for k, source in enumerate(sources):
        gain = p[..., source:source + 1] * kq[:, None, :, source] / sigma  # (F, b, M)
        out[k] = torch.einsum("fcm,fbm->cfb", pinv, c * gain).cpu().numpy()
    return out


def image_blocks(X: "np.ndarray | AudioStft", model: ProjetModel, sources: List[int], *,
                 frames_per_block: Optional[int] = None,
                 psd_of: Optional[Callable[[int, int], torch.Tensor]] = None):
    """Yields ``(t0, t1, Y)`` over the frames: Y = :func:`image_block` of that range."""
    nb_frames = X.shape[2]
    if frames_per_block is None:
        frames_per_block = block_frames(X.shape[1], model.proj.shape[1])
    ops = image_operators(model)
    for t0 in range(0, nb_frames, frames_per_block):
        t1 = min(t0 + frames_per_block, nb_frames)
        yield t0, t1, image_block(X, model, sources, t0, t1, ops, psd_of)


def image_stft(X: "np.ndarray | AudioStft", model: ProjetModel, source: int, *,
               frames_per_block: Optional[int] = None,
               out: Optional[np.ndarray] = None) -> np.ndarray:
    """STFT of the stereo image of one object: complex64 (2, F, T) (see :func:`image_blocks`)."""
    if out is None:
        out = np.empty((2,) + tuple(X.shape[1:]), dtype=np.complex64)
    for t0, t1, y in image_blocks(X, model, [source], frames_per_block=frames_per_block):
        out[:, :, t0:t1] = y[0]
    return out


# --------------------------------------------------------------------------
# The method
# --------------------------------------------------------------------------


def default_n_fft(sr: int) -> int:
    """About 93 ms: 4096 at 44.1/48 kHz, 2048 at 22 kHz, 1024 at 11–16 kHz.

    Twice the program's default window: the paper's choice (4096 at 44.1 kHz);
    longer windows make music sparser, which is what separation by direction
    relies on.
    """
    return min(2 * StftConfig.for_rate(sr).n_fft, 16384)


@register
class Projet(Method):
    """PROJET: separation of stereo objects by their direction, through projections."""

    name = "projet"
    title = "PROJET (spatial projections)"
    summary = ("Separates sources of a stereo mixture by where they sit (pan, optionally "
               "inter-channel delay), fitting α-stable spectra to many projections of the mixture.")
    references = (
        "D. FitzGerald, A. Liutkus, R. Badeau, 'PROJET — Spatial audio separation using "
        "projections', Proc. IEEE ICASSP 2016, pp. 36–40.",
        "D. FitzGerald, A. Liutkus, R. Badeau, 'Projection-based demixing of spatial audio', "
        "IEEE/ACM Trans. Audio, Speech, Lang. Process. 24(9):1560–1572, 2016.",
    )
    min_channels = 2
    max_channels = 2

    @dataclass(frozen=True)
    class Params:
        sources: int = param(
            3, label="Sources", min=1, max=32,
            help="How many objects to separate.")
        mode: str = param(
            "pan", label="Location model", choices=("pan", "pan+delay"),
            help="pan: objects differ by level between the channels (studio panning); "
                 "pan+delay: also by a small inter-channel delay (spaced microphones).")
        iterations: int = param(
            50, label="Iterations", min=1, max=5000,
            help="Multiplicative-update sweeps (each updates the spectra, then the "
                 "location gains).")
        pan_directions: int = param(
            46, label="Location pans", min=2, max=721,
            help="Pan directions in the location set, evenly from hard left to hard "
                 "right (46 = every 2°).")
        projections: int = param(
            16, label="Projections", min=2, max=361,
            help="Null-steering projections, evenly from hard left to hard right; "
                 "each silences what sits in its direction.")
        max_delay: float = param(
            3.0, label="Max delay (samples)", min=0.0, max=64.0,
            help="pan+delay: delays in the location set span ± this many samples.")
        delay_directions: int = param(
            7, label="Location delays", min=1, max=129,
            help="pan+delay: delays in the location set, evenly over ± max delay.")
        projection_delays: int = param(
            7, label="Projection delays", min=1, max=65,
            help="pan+delay: delays of the null-steering projections, evenly over "
                 "± max delay.")
        alpha: float = param(
            1.0, label="α", min=0.2, max=2.0,
            help="Characteristic exponent of the α-stable model: the spectra are "
                 "|·|^α (1 = Cauchy, the paper's choice).")
        cost: str = param(
            "cauchy", label="Cost", choices=("cauchy", "kl"),
            help="cauchy: the Cauchy likelihood of the ICASSP paper; kl: KL divergence "
                 "on |·|^α (the journal paper's β = 1).")
        init: str = param(
            "histogram", label="Start", choices=("histogram", "random"),
            help="histogram: objects start at the peaks of the level-ratio histogram; "
                 "random: spread evenly with random spectra.")
        n_fft: int = param(
            0, label="Window (samples)", min=0, max=65536,
            help="STFT window; 0 = about 93 ms (4096 at 44.1 kHz, as in the paper). "
                 "Must be even; the hop is a quarter of it.")
        fit_seconds: float = param(
            120.0, label="Fit on (s)", min=0.0, max=1e6,
            help="On a longer recording the location gains are fitted on this many seconds "
                 "of it (evenly spread stretches, in which every source must sound), then "
                 "every block's spectra are fitted with them held; 0 = fit on the whole "
                 "recording (the spectra of every frame are then held in memory at once).")
        postfilter: bool = param(
            False, label="Wiener post-filter",
            help="Refine the images with one pass of the multichannel Wiener filter.")
        device: str = param(
            "auto", label="Device", advanced=True, choices=DEVICE_CHOICES,
            help="Where to compute: auto = CUDA GPU, else Apple GPU, else the CPU.")
        seed: int = param(
            0, label="Seed", advanced=True, min=0,
            help="Seed of the random part of the start.")

    def separate(self, mix: np.ndarray, sr: int, params: "Projet.Params",
                 hints: Hints, ctx: JobContext) -> List[LayerProposal]:
        """Separate a stereo ``mix`` float32 (2, samples) into ``sources`` stereo images.

        Returns one waveform proposal per object, float32 (2, samples), ordered
        from left to right; the images sum to the mixture (without the
        post-filter exactly, up to float rounding).
        """
        self.check_input(mix)
        lin.validate_mix(mix)
        n_fft = params.n_fft or default_n_fft(sr)
        if n_fft % 4 or n_fft < 16:
            raise ParameterError(f"n_fft={n_fft} must be a multiple of 4 and at least 16")
        cfg = StftConfig(n_fft=n_fft, hop=n_fft // 4)
        device = resolve_device(params.device)
        delay_mode = params.mode == "pan+delay"
        pans = grid(0.0, np.pi / 2, params.pan_directions)
        proj_pans = grid(0.0, np.pi / 2, params.projections)
        if delay_mode:
            delays = grid(-params.max_delay, params.max_delay, params.delay_directions)
            proj_delays = grid(-params.max_delay, params.max_delay, params.projection_delays)
        else:
            delays = proj_delays = np.zeros(1)

        # The STFT is never held whole: blocks are recomputed from the audio when needed.
        X = AudioStft(mix, cfg)
        init_pans = initial_pans(X, params.sources) if params.init == "histogram" else None

        # A long recording: fit on stretches of it, then refit each block's PSDs.
        fit_frames = int(params.fit_seconds * sr) // cfg.hop
        stretched = 0 < fit_frames < X.shape[2]
        X_fit = spread_frames(mix, cfg, fit_frames) if stretched else X
        with ctx.stage(0.05, 0.6 if stretched else 0.9, "PROJET"):
            model = fit(X_fit, nb_sources=params.sources, pans=pans, delays=delays,
                        proj_pans=proj_pans, proj_delays=proj_delays, n_fft=n_fft,
                        iterations=params.iterations, alpha=params.alpha, cost=params.cost,
                        init_pans=init_pans, seed=params.seed, device=device, ctx=ctx)
        # Each block's PSDs refitted with the model's location gains held.
        psd_of = functools.partial(refit_psd, X, model, iterations=params.iterations,
                                   alpha=params.alpha, cost=params.cost) if stretched else None
        dirs = model.directions()
        order = sorted(range(params.sources), key=lambda k: dirs[k])

        if stretched:
            # The stretches' PSDs are not needed any more.
            model.psd = model.psd.new_empty((model.psd.shape[0], 0, model.psd.shape[2]))
        n = mix.shape[1]
        with ctx.stage(0.6 if stretched else 0.9, 1.0, "building the source images"):
            if params.postfilter:
                from demixstudio.separation.mwf import wiener_waveforms

                ops = image_operators(model)

                def initial(t0: int, t1: int) -> np.ndarray:
                    return image_block(X, model, order, t0, t1, ops, psd_of)

                waves = wiener_waveforms(X, initial, params.sources, length=n, cfg=cfg,
                                         iterations=1, device=device, ctx=ctx)
            else:
                olas = [OverlapAdd(2, n, cfg, frames=X.shape[2]) for _ in order]
                for t0, _t1, y in image_blocks(X, model, order, psd_of=psd_of):
                    ctx.progress(t0, X.shape[2], "source images")
                    for ola, image in zip(olas, y):
                        ola.add_spectrum(t0, image)
                waves = [ola.result() for ola in olas]
        pdict = params_to_dict(params)
        q = model.gains.cpu().numpy()
        return [LayerProposal(
            name=f"object {k + 1} ({dirs[jj][0]:.0f}°"
                 + (f", {dirs[jj][1]:+.1f} smp)" if delay_mode else ")"),
            method=self.name, params=pdict, waveform=waves[k],
            extra={"pan_deg": dirs[jj][0], "delay_samples": dirs[jj][1],
                   "location_gains": q[:, jj].reshape(pans.size, delays.size).tolist(),
                   "location_pans_deg": np.degrees(pans).tolist(),
                   "location_delays": delays.tolist()})
            for k, jj in enumerate(order)]
