"""The checks of the fill's level before it is used: the repair's question asked
where the answer is known (folds of the example; for gaps, the input's own frames
that hold the missing frequencies), and the fill turned down where it comes out
too loud."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

from demixstudio.jobs.context import JobContext
from demixstudio.separation.nmf import spectra, transposition
from demixstudio.separation.nmf.repair.copies import shifted_templates
from demixstudio.separation.nmf.repair.fit import frames_with_sound, predict_hidden
from demixstudio.separation.nmf.repair.missing import erb_rate, erb_smooth
from demixstudio.separation.nmf.tasks import run_at_once

if TYPE_CHECKING:
    from demixstudio.separation.nmf.repair.method import Repair


GAIN_FOLDS = 4
#: Updates of each fold's dictionary in that check. The check reads a mean log
#: error smoothed over 3 ERBs, which these templates' last refinements do not move:
#: on bench_repair_set.py's 60 repairs, 50 updates instead of 200 changed the
#: distance's reduction by −0.8 … +0.5 points at 16 kHz and −1.6 … +1.0 at 44.1 kHz
#: (the mean by −0.06 and −0.04) and took the 60 repairs from 69 to 43 s at 16 kHz.
GAIN_MAX_ITER = 50
#: Share of the level error found by that check that is corrected.
GAIN_SHARE = 0.5
#: Frames of the example that check looks at, at most (evenly spread runs).
GAIN_FRAMES = 2048
#: Smoothing of the level error over frequency (standard deviation, ERBs).
GAIN_SMOOTH_ERB = 3.0
#: Largest correction (dB), either way.
GAIN_RANGE_DB = 30.0


def fill_gain(Ve: np.ndarray, missing: np.ndarray, freqs: np.ndarray, p: Repair.Params,
              ctx: JobContext, device: torch.device, copies: int = 0
              ) -> np.ndarray | None:
    """How much to scale the fill at each frequency: float32 (bins,), 1 where nothing
    is missing; None when there is nothing to check it on.

    Ve : float32 (bins, frames), the example's magnitude
    missing : bool (bins,), the frequencies the input lacks somewhere
    copies : the fill's transposed copies (:func:`.copies.shifted_templates`), used here too

    The repair's question asked of the example, where the answer is known: it is cut
    into :data:`GAIN_FOLDS` stretches, and each is predicted from the templates of
    the others, fitted on its present frequencies only, as the input is. The mean
    log ratio of the truth to the prediction at the missing frequencies (over the
    frames with sound, smoothed over :data:`GAIN_SMOOTH_ERB` ERBs) is the fill's
    level error. Where the prediction was too loud, the fill is turned down by
    :data:`GAIN_SHARE` of it; it is never turned up.

    Why: where the example holds other notes than the input (a saxophone phrase and
    another part of it), the templates that fit the present band carry the upper
    bands of other notes, and the fill came out up to 6 dB louder than the truth,
    worse than leaving the band empty. Why down only, and by half: templates learned
    on three quarters of the example fit the present band less closely than those
    of the whole (and the L1 term shrinks what they explain), so the check reads the
    fill as quieter than it is: for a 2.6 s sung example at 44.1 kHz it read +4.4 dB,
    and raising the fill by half of that took the repair of the voice cut to
    300–3400 Hz from 45 % to 32 %.

    Measured 2026-11-24, before the templates' transposed copies
    (:func:`.copies.shifted_templates`), on ten recordings with a separate example excerpt
    (speech, singing, instruments, a band's stems; cut to 400–1600 Hz or 300–3400 Hz
    with the band given and found, under 4 kHz, or a 1.6–5 kHz × 0.6 s gap; 60 repairs
    per rate), the mean reduction of the log-spectral distance went from 31.1 to 33.1 %
    at 16 kHz (32 repairs better, 10 worse, by 3 points at most) and from 27.0 to
    29.5 % at 44.1 kHz (29 better, 7 worse, by 3 points at most). The saxophone's
    five band limits went from −58…−18 % to −45…−5 % at 16 kHz and from −54…−17 %
    to −28…−1 % at 44.1 kHz: less harm, still harm (the copies then turned them into
    gains). With the copies, the check run with them too against the check run without
    them (16 kHz): a mean of 37.5 % either way (11 repairs better, 10 worse, by 3 points
    at most); it uses them, as the fill does. Whether the check still gains beside the
    copies was not measured over the set; on the saxophone cut to 400–1600 Hz it takes
    the distance from 5.30 to 5.03 dB. Correcting the whole error both ways (16 kHz,
    an earlier smoothing, no copies): a mean of 34.2 %, but up to 7 points lost (the
    band's singer cut under 4 kHz, 56 → 49 %); with two folds, up to 11.
    """
    if not missing.any() or missing.all():
        return None
    T = Ve.shape[1]
    if T > GAIN_FRAMES:
        Ve = transposition.sample_frames([Ve], GAIN_FRAMES)
        T = Ve.shape[1]
    edges = np.linspace(0, T, GAIN_FOLDS + 1).astype(int)
    if int(np.diff(edges).min()) < 2:
        return None
    present = torch.as_tensor(~missing, device=device)

    def fold(i: int) -> Callable[[JobContext], tuple[np.ndarray, int]]:
        def check(c: JobContext) -> tuple[np.ndarray, int]:
            part = np.ascontiguousarray(Ve[:, edges[i]:edges[i + 1]])
            rest = np.concatenate([Ve[:, :edges[i]], Ve[:, edges[i + 1]:]], axis=1)
            W = shifted_templates(
                spectra.learn_dictionary(rest, p.components, c, beta=p.beta,
                                         max_iter=GAIN_MAX_ITER, tol=p.tol,
                                         seed=p.seed + 17 * (i + 1), device=device,
                                         precision=p.precision,
                                         message="checking the fill's level"),
                copies)
            return _log_errors(part, predict_hidden(part, W, present, p, c))
        return check

    # The folds are independent, and a few seconds of example are one chunk of frames
    # to the engine, which runs it on one thread; with more, every sweep ends in a
    # barrier. Side by side on two cores this check took 0.30–0.42 → 0.21 s (a 5 s
    # example at 16 kHz) and 1.05–1.19 → 0.70–0.73 s (14 s at 44.1 kHz).
    errors = run_at_once([fold(i) for i in range(GAIN_FOLDS)], ctx, device,
                         "checking the fill's level")
    total = sum(e for e, _ in errors)
    count = sum(n for _, n in errors)
    if not count.any():
        return None
    # Down only: see the docstring.
    return _gain_from_error(total / np.maximum(count, 1), missing, freqs, GAIN_SHARE)


def _log_errors(truth: np.ndarray, pred: np.ndarray, present: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Σ over the frames with sound of log(truth) − log(prediction), float (bins,), and
    how many frames each sum holds, int (bins,); ``truth``, ``pred`` float (bins,
    frames) magnitudes; ``present`` bool (bins, frames): the bins to count (default
    all)."""
    keep = np.broadcast_to(frames_with_sound(truth)[None, :], truth.shape)
    if present is not None:
        keep = keep & present
    # As the log-spectral distance floors power at -80 dB; 1 where ``truth`` is all
    # zeros (a fold of digital silence), whose frames are not counted anyway.
    floor = float(truth.max()) * 1e-4 or 1.0
    err = np.where(keep, np.log(truth + floor) - np.log(pred + floor), 0.0).sum(axis=1)
    return err, keep.sum(axis=1)


def _gain_from_error(error: np.ndarray, missing: np.ndarray, freqs: np.ndarray,
                     share: float, weights: np.ndarray | None = None) -> np.ndarray:
    """The fill's scale float32 (bins,) from a mean log error (bins,) of its prediction:
    ``share`` of the error, smoothed over :data:`GAIN_SMOOTH_ERB` ERBs across the
    missing frequencies (``weights`` (bins,): how much each frequency's error counts,
    default all alike), downwards only and by at most :data:`GAIN_RANGE_DB`."""
    smooth = np.zeros(error.shape[0])
    w = np.ones(int(missing.sum())) if weights is None else weights[missing].astype(float)
    smooth[missing] = erb_smooth(error[missing], w, erb_rate(freqs[missing]),
                                 GAIN_SMOOTH_ERB)[0]
    limit = GAIN_RANGE_DB / 20.0 * np.log(10.0)
    smooth = np.clip(share * smooth, -limit, 0.0)
    return np.where(missing, np.exp(smooth), 1.0).astype(np.float32)


#: Frames of the input in which a missing frequency is present, at least, for
#: :func:`gap_fill_gain` to check the fill there.
GAP_CHECK_FRAMES = 16
#: Share of the level error found by that check that is corrected.
GAP_GAIN_SHARE = 1.0


def gap_fill_gain(V: list[torch.Tensor], observed: list[torch.Tensor], W: torch.Tensor,
                  missing: np.ndarray, freqs: np.ndarray, p: Repair.Params, ctx: JobContext
                  ) -> np.ndarray | None:
    """For an input with gaps (not a band limit): the fill's scale float32 (bins,),
    checked on the input itself; None when it has too few frames to check on, or
    when ``missing`` (:func:`.missing.missing_counts` > 0) is all False or all True.

    V, observed : the input's magnitude blocks (bins, B) and their bool present bins
    W : the templates float32 (bins, K) the fill will use

    The frequencies missing in the gaps are present in the input's other frames. In
    the frames with sound (at most :data:`transposition.SAMPLE_FRAMES` of them,
    evenly spread runs; only they are copied) the missing frequencies are hidden,
    predicted from the rest of each frame with ``W`` as the fill is, and compared with
    what is there, frequency by frequency in the frames where it is present (at least
    :data:`GAP_CHECK_FRAMES` of them; the others take their neighbours' error in the
    smoothing). Unlike the example's folds in :func:`fill_gain`, the templates were
    not learned on these frames, so the error is not overstated; it is corrected by
    :data:`GAP_GAIN_SHARE`, downwards only.

    Why: on a 1.6–5 kHz × 0.6 s gap in a trumpet's decaying tail (−54 dBFS) whose
    example is 35 dB louder and plays other notes, the check on the example's folds
    turned the fill down 1.9 dB, and it came out 9.4 dB louder than the truth in the
    gap, the repair worse than the gap left empty (the log-spectral distance 0.93 →
    1.36 dB at 16 kHz, 0.56 → 1.25 dB at 44.1 kHz); checked here, the fill is turned
    down 5.4 dB, comes out 3.6 dB louder than the truth, and the distance is 1.00 and
    0.75 dB: less harm, still some. The tail decays, and the gap's frames are quieter
    than most of those checked, but a check on the 16 frames nearest each side of the
    gap read the same error to 0.01 dB.

    Why frequency by frequency: the frames once checked were those that had every
    missing frequency. In a quiet recording the floor also finds nulls, pairs of
    bins under it in one frame here and there (at 44.1 kHz that trumpet's gap came
    with 970 such bins over 255 frequencies; 222 of its 231 frames lacked some bin),
    and then too few frames had them all: the check did not run, and the repair made
    the distance 41.5 % worse than the gap left empty; checked this way, 18.1 % worse. On the
    other nine recordings' gaps the change moved the reduction by −2.2 … +0.5 points
    (``benchmarks/NMF_NOTES.md``, session 63).

    Both checks run, and the fill takes the lower of their gains: this one alone
    missed an input whose bins are missing in most frames (a band limit the band
    search did not find), where the other frames hold attenuated remains, not the
    truth; :func:`.missing.band_like` now sends such an input down the band limit's path.
    Measured 2026-11-24 on the ten recordings of :func:`fill_gain` (60 repairs per
    rate), with :func:`.missing.band_like`: the gaps' mean reduction of the distance went from
    30.2 to 33.5 % at 16 kHz and from 22.1 to 30.1 % at 44.1 kHz (besides the trumpet,
    up to 5 points lost: a speaker's gap at 44.1 kHz, 33 → 28 %), and
    ``bench_nmf.py``'s cello gap from 31 to 34 %. This check alone, without the
    other: 33.3 % and 31.2 %; correcting half its error, 31.2 % at 16 kHz (the trumpet
    −34 %); both ways (raising a fill it reads as too quiet), the same as down only.
    """
    if not missing.any() or missing.all():
        # None missing where anything is observed (frames painted whole, a click,
        # which take their neighbours' activations), or every frequency missing
        # somewhere, leaving nothing to predict them from: nothing to check.
        return None
    miss = torch.as_tensor(missing, device=W.device)
    # The frames to check: indices first, so that only those frames are copied.
    index = np.nonzero(np.concatenate([o.any(dim=0).cpu().numpy() for o in observed]))[0]
    if index.size < GAP_CHECK_FRAMES:
        return None
    starts, run = transposition.run_starts(index.size)  # as sample_frames takes them
    index = index[(np.asarray(starts)[:, None] + np.arange(run)[None, :]).ravel()]
    edges = np.cumsum([0] + [b.shape[1] for b in V])
    pieces, present = [], []
    for i, (b, o) in enumerate(zip(V, observed)):
        local = index[(index >= edges[i]) & (index < edges[i + 1])] - edges[i]
        if local.size:
            at = torch.as_tensor(local, device=b.device)
            pieces.append(b[:, at].cpu().numpy())
            present.append(o[:, at].cpu().numpy())
    part = np.ascontiguousarray(np.concatenate(pieces, axis=1), dtype=np.float32)
    has = np.concatenate(present, axis=1)
    del pieces, present
    total, count = _log_errors(part, predict_hidden(part, W, ~miss, p, ctx), has)
    enough = missing & (count >= GAP_CHECK_FRAMES)
    if not enough.any():
        return None
    return _gain_from_error(np.where(enough, total / np.maximum(count, 1), 0.0), missing,
                            freqs, GAP_GAIN_SHARE, weights=enough)
