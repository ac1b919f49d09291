"""Templates with temporal context: spectra of a few consecutive frames, stacked.

A plain template is one frame's spectrum, so a dictionary says nothing of how a
source's spectrum moves from one frame to the next: the onset of a consonant,
a vibrato, the decay of a drum. Stacking each frame with its ``c`` neighbours
on either side makes every column of the data a "supervector" of ``2c + 1``
frames, (bins · (2c + 1)) long, and every template a short spectro-temporal
patch, as in Smaragdis' convolutive speech bases (2007) and the stacked
exemplars of Gemmeke, Virtanen & Hurmalainen (2011). A mixture frame is then
explained together with its neighbours, by patches whose motion each source's
examples taught.

The model of frame t is predicted by each of the ``2c + 1`` stacked columns
that hold it; the layers use the mean of those predictions, so each frame's
masks still come from one model per source and sum to one.

At the input's edges the first and last frames are repeated, so every frame has
a full column. With the templates fixed, every column is an independent
problem: a long input is fitted block by block, each block with the ``2c``
frames beyond its ends that its columns and predictions need, and only one
block is ever stacked (``2c + 1`` times its size).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from demixstudio.audio.stft import StftConfig
from demixstudio.errors import ParameterError
from demixstudio.jobs import memory
from demixstudio.jobs.context import JobContext
from demixstudio.separation.base import AudioHint
from demixstudio.separation.nmf import common, engine, spectra


def stack_frames(V, context: int):
    """``V`` (bins, T) with each frame stacked over its ``context`` neighbours on both
    sides (edge frames repeated): (bins · (2·context + 1), T), the same type (numpy
    or torch) and dtype. Rows ``[o·bins, (o + 1)·bins)`` of column t hold frame
    ``t + o − context``. ``context`` 0 returns ``V`` itself."""
    if context == 0:
        return V
    T = V.shape[1]
    idx = np.clip(np.arange(-context, T + context), 0, T - 1)
    if isinstance(V, torch.Tensor):
        P = V[:, torch.as_tensor(idx, device=V.device)]
        return torch.cat([P[:, o:o + T] for o in range(2 * context + 1)], dim=0)
    P = V[:, idx]
    return np.concatenate([P[:, o:o + T] for o in range(2 * context + 1)], axis=0)


def frame_means(W: torch.Tensor, H: torch.Tensor, bins: int, context: int, first: int,
                count: int) -> torch.Tensor:
    """The mean prediction of ``count`` consecutive frames by a stacked model ``W @ H``.

    ``W`` (bins · (2·context + 1), k) and ``H`` (k, U) model U consecutive stacked
    columns, and frame j of the run is the frame of column ``first + j``; at row
    block o, column ``first + j − (o − context)`` predicts it. Predictions by columns
    outside ``H`` (beyond the input's ends) are left out. The product is made one
    row block at a time, each for the frames it predicts: whole, it is 2·context + 1
    times the result, and on a long input's block of frames it was most of the
    masks' scratch. Returns (bins, count): the mean of the predictions of each frame.
    """
    out = torch.zeros((bins, count), dtype=H.dtype, device=H.device)
    n = torch.zeros(count, dtype=H.dtype, device=H.device)
    U = H.shape[1]
    for o in range(2 * context + 1):
        # Frame j is held at offset o by column first + j − (o − context).
        lo = max(0, (o - context) - first)
        hi = min(count, U - first + (o - context))
        if hi <= lo:
            continue
        c0 = first + lo - (o - context)
        out[:, lo:hi] += W[o * bins:(o + 1) * bins] @ H[:, c0:c0 + hi - lo]
        n[lo:hi] += 1
    return out.div_(n.clamp_min(1))


def example_magnitude(hints: Sequence[AudioHint], sr: int, cfg: StftConfig, what: str,
                      context: int) -> np.ndarray:
    """The stacked magnitudes of example recordings: float32 (bins · (2·context + 1),
    frames). Each recording is stacked on its own, so no column spans two of them;
    recordings shorter than one window are left out, unless all are (then they are
    joined, as :func:`spectra.example_magnitude` joins them). Errors as that
    function's."""
    signals = [a for a in spectra.example_signals(hints, sr, what) if a.shape[1] >= cfg.n_fft]
    if not signals:
        return stack_frames(spectra.example_magnitude(hints, sr, cfg, what), context)
    V = np.concatenate([stack_frames(spectra.magnitude(a, cfg), context) for a in signals],
                       axis=1)
    if float(V.max()) <= 0:
        raise ParameterError(f"{what}: every sample is zero")
    return V


def _frames(blocks: Sequence[torch.Tensor], starts: Sequence[int], total: int, lo: int,
            hi: int) -> torch.Tensor:
    """Frames ``lo .. hi − 1`` of the spectrogram held in ``blocks`` (frame ``t0`` of
    block i is ``starts[i]``), frames outside ``[0, total)`` repeating the edge one:
    (bins, hi − lo)."""
    a, b = max(lo, 0), min(hi, total)
    pieces = []
    for Vb, s in zip(blocks, starts):
        e = s + Vb.shape[1]
        if e > a and s < b:
            pieces.append(Vb[:, max(a, s) - s:min(b, e) - s])
    inner = torch.cat(pieces, dim=1) if len(pieces) > 1 else pieces[0]
    if lo < 0:
        inner = torch.cat([inner[:, :1].expand(-1, -lo), inner], dim=1)
    if hi > total:
        inner = torch.cat([inner, inner[:, -1:].expand(-1, hi - total)], dim=1)
    return inner


def fit_and_mask(m: common.Mixture, W: torch.Tensor, sizes: Sequence[int], context: int,
                 ctx: JobContext, *, beta: float = 1.0, sparsity: float = 0.0,
                 max_iter: int = 200, tol: float = 1e-4, power: float = 1.0,
                 precision: str = "float32", seed: int = 0,
                 mask_templates: torch.Tensor | None = None
                 ) -> tuple[np.ndarray, engine.FitResult]:
    """Fit activations with stacked templates ``W`` held fixed, block by block, then the
    groups' masks.

    ``m``: the mixture, on the program's grid; ``W`` float32 (bins · (2·context + 1),
    K), ``sizes`` its groups' column counts. Each block's stacked columns (with the
    ``context`` columns beyond each end that its frames' predictions use, built from
    ``2·context`` frames of the neighbouring blocks) are fitted on their own and
    dropped; only their activations are kept. The spectrogram is then released
    (``m.V`` is empty afterwards) before the masks are made, so the fit never holds
    the masks and the spectrogram at once. ``mask_templates``, if given, replace ``W``
    in the masks (discriminative reconstruction templates). Returns (masks float32
    (groups, 1, bins, frames), a FitResult whose iterations are the most any block
    took, converged if every block did, H the blocks' activations (K, B + its columns
    beyond the ends)).
    """
    blocks, frames = m.V, m.frames
    F = blocks[0].shape[0]
    groups = common.slices(sizes)
    starts = np.cumsum([0] + [b.shape[1] for b in blocks[:-1]]).tolist()
    res = engine.FitResult(W, [], [], 0, True)
    spans = []
    n = len(blocks)
    for i, (Vb, t0) in enumerate(zip(blocks, starts)):
        B = Vb.shape[1]
        with ctx.stage(0.95 * i / n, 0.95 * (i + 1) / n, "fitting"):
            # Columns t0 − c .. t0 + B + c − 1 (those the block's frames are predicted
            # from; those outside the input are left out), from frames t0 − 2c ..
            # t0 + B + 2c − 1.
            u0, u1 = max(t0 - context, 0), min(t0 + B + context, frames)
            S = stack_frames(_frames(blocks, starts, frames, u0 - context, u1 + context),
                             context)[:, context:context + u1 - u0].contiguous()
            H = spectra.init_activations([S], W.shape[1], seed + i)
            r = engine.fit([S], W, H, ctx, beta=beta, fixed_w=range(W.shape[1]),
                           sparsity=sparsity, max_iter=max_iter, tol=tol, groups=groups,
                           precision=precision, message="fitting")
            del S
        res.iterations = max(res.iterations, r.iterations)
        res.converged = res.converged and r.converged
        res.H.append(H[0])
        spans.append((t0, B, t0 - u0))
    # The blocks are views of one allocation: a block still referenced here would keep
    # the whole spectrogram alive through the masks.
    del Vb, blocks
    common.release_spectrogram(m)
    with ctx.stage(0.95, 1.0, "masks"):
        ctx.progress(0, 1, "masks")
        memory.check_layers_fit(len(groups), F, frames)
        out = np.empty((len(groups), 1, F, frames), dtype=np.float32)
        R = W if mask_templates is None else mask_templates
        for Hb, (t0, B, first) in zip(res.H, spans):
            spectra.write_shares(
                out, [frame_means(R[:, sl], Hb[sl], F, context, first, B) for sl in groups],
                t0, power)
    return out, res
