"""The input's activations fitted on its present bins with the example's templates
fixed, and the same fit used to predict bins hidden on purpose (the checks of
:mod:`.copies` and :mod:`.level`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from demixstudio.jobs.context import JobContext
from demixstudio.separation.nmf import common, engine, spectra

if TYPE_CHECKING:
    from demixstudio.separation.nmf.repair.method import Repair


def fit_observed(V: list[torch.Tensor], O: list[torch.Tensor], W: torch.Tensor,
                 H: list[torch.Tensor], lam: float, p: Repair.Params, ctx: JobContext,
                 message: str = "fitting the observed bins", release: bool = False
                 ) -> tuple[torch.Tensor, np.ndarray, int]:
    """The activations of the input with the templates fixed, fitted on its observed
    bins; returns the templates the fill uses, float32 (bins, K), the activations
    float32 (K, frames) and the iterations run.

    V, O : the input's magnitude blocks (bins, B) and their bool observed bins
    W : float32 (bins, K) templates; H : per block, float32 (K, B), the start
    release : empty the lists ``V`` and ``H`` as soon as the fit no longer reads
    them, so that the caller's magnitude and start go then: when only some
    frequencies or frames are fitted, before the fit, which reads copies of those
    (an hour of 44.1 kHz audio cut to 400–1600 Hz: 1.27 GB of magnitude and 0.24 GB
    of start not held through it); else after it

    Only the frequencies observed in some frame and the frames that have a missing
    bin (with one frame each side, the neighbours that frames with nothing observed
    take their activations from) are fitted: a band limit leaves most frequencies
    out of the fit, a gap most frames. With the templates fixed, the other rows
    weigh nothing in the fit and the other frames' activations fill nothing, so
    this is the fit of them all, at a fraction of its cost (a minute of speech cut
    to 400–1600 Hz at 16 kHz: 77 of 513 frequencies, 3.0 s → 0.5 s). The templates'
    columns are first scaled as the engine scales them (unit L2 norm with an L1
    penalty, unit sum without), then their observed rows to that norm again, the
    activations' start and the penalty with them, so that the engine's own scaling
    is a no-op and every update is the one the full fit would make (the
    multiplicative update is unchanged when a column of W is divided by s, its row
    of H multiplied by s and its penalty divided by s). Frames with nothing observed
    take their neighbours' activations (:func:`_fill_unobserved_frames`); frames not
    fitted keep zeros, which fill nothing.
    """
    K = W.shape[1]
    l2 = lam != 0
    rows = O[0].any(dim=1)
    for o in O[1:]:
        rows |= o.any(dim=1)
    need = np.concatenate([(~o).any(dim=0).cpu().numpy() for o in O])
    need[1:] |= need[:-1].copy()
    need[:-1] |= need[1:].copy()
    has_data = np.concatenate([o.any(dim=0).cpu().numpy() for o in O])
    total = need.size
    if bool(rows.all()) and need.all():
        res = engine.fit(V, W, H, ctx, beta=p.beta, fixed_w=range(K), sparsity=lam,
                         observed=O, max_iter=p.max_iter, tol=p.tol, precision=p.precision,
                         message=message)
        Hn = res.h_numpy()
        if release:
            V.clear()
            H.clear()
        _fill_unobserved_frames(Hn, has_data)
        return W, Hn, res.iterations

    full = engine.column_norms(W, l2)
    Wn = W / full
    s = engine.column_norms(Wn[rows], l2)
    Ws = Wn[rows] / s
    scale = (full * s).reshape(-1, 1)
    edges = np.cumsum([0] + [o.shape[1] for o in O])
    Vs, Os, Hs, fitted = [], [], [], []
    for i, (v, o, h) in enumerate(zip(V, O, H)):
        local = np.flatnonzero(need[edges[i]:edges[i + 1]])
        if local.size == 0:
            continue
        if local.size == v.shape[1]:  # every frame (a band limit): no second copy
            Vs.append(v[rows])
            Os.append(o[rows])
            # Released, the start's own block is scaled in place (an hour's start is
            # 0.24 GB at rank 192: a scaled copy would hold it twice).
            Hs.append(h.mul_(scale) if release else h * scale)
        else:
            idx = torch.as_tensor(local, device=v.device)
            Vs.append(v[rows][:, idx].contiguous())
            Os.append(o[rows][:, idx].contiguous())
            Hs.append(h[:, idx] * scale)
        fitted.append(local + edges[i])
        if release:
            H[i] = None  # each block of the start is its own allocation
    if release:
        # The blocks of V are views of one allocation: the last one held (the loop's
        # own name included) would keep all of it.
        v = h = None
        V.clear()
        H.clear()
    res = engine.fit(Vs, Ws, Hs, ctx, beta=p.beta, fixed_w=range(K), sparsity=lam / s,
                     observed=Os, max_iter=p.max_iter, tol=p.tol, precision=p.precision,
                     message=message)
    del Vs, Os
    at = np.concatenate(fitted)
    # One copy of the activations from here on (an hour's are 0.24 GB at rank 192):
    # the blocks are dropped once gathered, the rest is done in place.
    Hf = res.h_numpy()
    Hs.clear()  # (res.H is this list)
    Hf /= s.reshape(-1, 1).cpu().numpy()
    _fill_unobserved_frames(Hf, has_data[at], times=at)
    if at.size == total:  # every frame fitted (a band limit): already in order
        return Wn, Hf, res.iterations
    Hn = np.zeros((K, total), dtype=np.float32)
    Hn[:, at] = Hf
    return Wn, Hn, res.iterations


#: Griffin–Lim runs on pieces of a block (``block_frames``) divided by this, at most
#: this many at once on the CPU's threads (FFTs and numpy's array arithmetic release


def predict_hidden(part: np.ndarray, W: torch.Tensor, present: torch.Tensor,
                   p: Repair.Params, ctx: JobContext) -> np.ndarray:
    """``part`` float32 (bins, frames) as the fill predicts it: activations fitted on
    the ``present`` frequencies (bool (bins,)) only, with the templates ``W`` fixed, as
    the input's are; returns W H, float32 (bins, frames)."""
    Vt = torch.as_tensor(part).to(W.device)
    H = spectra.init_activations([Vt], W.shape[1], p.seed)
    lam = common.l1_weight(p.sparsity, p.beta, float(part.sum(0).mean()) / part.shape[0])
    O = [present.reshape(-1, 1).expand(-1, Vt.shape[1]).clone()]
    Wn, Hn, _ = fit_observed([Vt], O, W, H, lam, p, ctx, message="checking the fill's level")
    return Wn.cpu().numpy() @ Hn


def frames_with_sound(truth: np.ndarray) -> np.ndarray:
    """bool (frames,): the frames of ``truth`` (float (bins, frames) magnitudes) whose
    summed magnitude is within 60 dB of the loudest frame's."""
    energy = truth.sum(0)
    return energy > energy.max() * 1e-3


def _fill_unobserved_frames(H: np.ndarray, has_data: np.ndarray,
                            times: np.ndarray | None = None) -> None:
    """The activations of frames with no observed bin, interpolated in place from
    their neighbours'.

    H float32 (K, n); has_data bool (n,); times (n,): the frames' indices (default
    0 … n − 1)."""
    if has_data.all() or not has_data.any():
        return
    t = np.arange(H.shape[1]) if times is None else times
    known, unknown = t[has_data], t[~has_data]
    for k in range(H.shape[0]):
        H[k, ~has_data] = np.interp(unknown, known, H[k, has_data])
