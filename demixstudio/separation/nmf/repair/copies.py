"""The example's templates moved a semitone or more up and down, for notes the
example does not play, and the choice of how many a band-limited input's fill uses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from demixstudio.jobs.context import JobContext
from demixstudio.separation.nmf import engine, spectra, transposition
from demixstudio.separation.nmf.repair.fit import frames_with_sound, predict_hidden
from demixstudio.separation.nmf.repair.missing import erb_rate
from demixstudio.separation.nmf.tasks import run_at_once

if TYPE_CHECKING:
    from demixstudio.separation.nmf.repair.method import Repair


def shifted_templates(W: torch.Tensor, semitones: int) -> torch.Tensor:
    """``W`` float32 (bins, K) beside its copies moved 1 … ``semitones`` semitones up and
    down (:func:`spectra.transpose_magnitude`): (bins, K · (2 · semitones + 1)), every
    column of unit sum, on ``W``'s device. ``semitones`` 0 returns ``W``.

    An example seldom plays every note the input does. A template is one note's
    spectrum (or a blend of a few), and the present band of a note the example lacks
    is then explained by a mix of templates whose missing bands hold other notes'
    partials: the fill has its harmonics in the wrong places (in the log-spectral
    distance, worse than an empty band). Copies a semitone up and down give each
    template the neighbouring notes, a step towards shift-invariant dictionaries
    (Smaragdis, Raj & Shashanka 2008), which a pitched source's notes call for.

    Measured 2026-11-24 on ten recordings with a separate example excerpt (speech,
    singing, instruments, a band's stems; cut to 400–1600 or 300–3400 Hz with the
    band given and found, or under 4 kHz; 50 repairs per rate), the mean reduction of
    the log-spectral distance went from 33.7 to 39.2 % at 16 kHz (15 repairs better,
    19 worse, by 3 points at most) and from 30.9 to 35.9 % at 44.1 kHz (25 better, 11
    worse, by 4 points at most: the piano cut to 400–1600 Hz, 51 → 47 %). A saxophone
    phrase whose example plays other notes went from −45…−5 % to +16…+45 % (16 kHz)
    and from −28…−1 % to +17…+40 % (44.1 kHz). Copies up to 2 semitones (an earlier
    build, gaps included): 37.1 % at 16 kHz against 37.5 % with one, with larger
    losses. The fit costs three times as much with one copy each way (a 4 s repair:
    1.0 → 1.2 s with the check of :func:`.level.fill_gain`, which uses the copies too; 10
    minutes of 44.1 kHz stereo cut to 400–1600 Hz: 150 → 190 s, peak RSS 1350 MB).

    They are used for band limits only, and there only when the input's own band
    says they predict better (:func:`choose_copies`). In a gap the frames keep the
    partials on both sides of it, which pin the note, and over the same ten
    recordings' gaps (a 1.6–5 kHz × 0.6 s hole) the copies gained little and lost
    more: 7 of 10 within a point at either rate, a singer's 47 → 51 % (16 kHz) and
    51 → 52 % (44.1 kHz), but a speaker's 34 → 29 % and 33 → 28 % and the trumpet's
    −47 → −57 % and −123 → −147 %; ``bench_nmf.py``'s cello gap 31 → 28 %.
    """
    if semitones <= 0:
        return W
    W0 = W.cpu().numpy()
    parts = [W0]
    for s in range(1, int(semitones) + 1):
        parts += [spectra.transpose_magnitude(W0, float(s)),
                  spectra.transpose_magnitude(W0, -float(s))]
    out = np.maximum(np.concatenate(parts, axis=1), engine.EPS)
    out /= out.sum(axis=0, keepdims=True)
    return torch.as_tensor(out).to(W.device)


#: Frames of the input, at most, on which :func:`choose_copies` compares dictionaries.
CHOICE_FRAMES = 512
#: Updates of the activations in each of its predictions.
CHOICE_MAX_ITER = 50
#: Present frequencies, at least, for that comparison (fewer: the copies are used).
CHOICE_MIN_BINS = 8


def choose_copies(V: list[torch.Tensor], observed: list[torch.Tensor], W: torch.Tensor,
                  most: int, freqs: np.ndarray, p: Repair.Params, ctx: JobContext) -> int:
    """How many semitones of transposed copies (0 … ``most``) the fill of a
    band-limited input uses: the count whose templates best predict the input's own
    present band, each half of it from the other.

    V, observed : the input's magnitude blocks (bins, B) and their bool present bins
    W : the example's templates float32 (bins, K), as learned

    The present frequencies (observed in some frame) are split at their midpoint on
    the ERB-rate scale. In at most :data:`CHOICE_FRAMES` of the input's frames, each
    half is hidden, predicted from the other with :func:`shifted_templates` ``(W,
    n)`` as the fill is (:func:`.fit.predict_hidden`), and compared with what is there
    by the log-spectral distance (:func:`_hidden_distance`). The count with the
    lowest mean distance over the two halves is used; the fill's question,
    predicting frequencies the fit did not see, asked where the input has the answer.

    Why: the copies give a note the example does not play its partials (a saxophone
    phrase whose example plays other notes: see :func:`shifted_templates`), but with
    three times the templates, more of them fit a narrow band for the wrong reasons.
    A 3.8 s solo piano cut to 400–1600 Hz at 44.1 kHz, whose 1.9 s example plays
    other notes, got a fill 22 dB louder than the truth under 200 Hz with them (the
    repair −17 %, the log-spectral distance 8.4 → 9.9 dB), and +24 % without. This
    check reads 21.0 dB without the copies and 21.2 with them on that piano, and
    14.9 and 9.2 on the saxophone cut to 400–1600 Hz (which the copies take from
    +1 % to +39 %).

    Measured on ``bench_repair_set.py``'s ten recordings (the 50 band limits per
    rate), the mean reduction of the log-spectral distance went from 41.5 % (always
    the copies) to 42.5 % at 16 kHz and from 36.9 to 38.2 % at 44.1 kHz; choosing
    after the fact, the better of the two in every repair, gives 42.9 and 38.6 %. The
    copies were left out in 15 of 50 repairs at 16 kHz (the two pianos' and the
    trumpet's five each) and in 8 at 44.1 kHz (the solo piano's five, three of the
    trumpet's). The solo piano's repairs that did harm (−4 % at 16 kHz, −17 % at
    44.1 kHz) do none; the largest loss was 1.8 points (the trumpet cut to
    400–1600 Hz, band found, 16 kHz). A gap in the trumpet's quiet tail, taken
    for a band limit (:func:`.missing.band_like`), went from −76 to −42 % at 44.1 kHz and from
    −10 to −15 % at 16 kHz (since session 63 it is read as a gap, see
    :func:`.missing.band_like`). It costs four fits of activations on 512 frames (0.15–0.17
    s a repair on the set), since 2026-11-25 run two at once on two cores
    (:func:`run_at_once`; a minute of speech or cello cut to 400–1600 Hz:
    0.07–0.27 → 0.04–0.05 s).

    The copies are chosen when their distance is lower by any margin. Wanting them
    lower by one or two standard errors of the per-frame differences, by 0.2 dB or
    by 3 % of the distance changed a few choices on the set, each for the worse
    (the trumpet cut to 300–3400 Hz, band found: +14 → +12 %), and reading only
    the half the fill extrapolates to lost 0.5 points at 44.1 kHz
    (``benchmarks/NMF_NOTES.md``, session 56).
    """
    if most <= 0:
        return 0
    rows = observed[0].any(dim=1)
    for o in observed[1:]:
        rows |= o.any(dim=1)
    rows_np = rows.cpu().numpy()
    if int(rows_np.sum()) < CHOICE_MIN_BINS:
        return most
    erb = erb_rate(freqs)
    present = np.flatnonzero(rows_np)
    upper = rows_np & (erb >= 0.5 * (erb[present[0]] + erb[present[-1]]))
    lower = rows_np & ~upper
    if not upper.any() or not lower.any():
        return most
    sample = transposition.sample_frames(V, CHOICE_FRAMES)
    if not sample.any():
        return most
    q = replace(p, max_iter=CHOICE_MAX_ITER)

    def distance(n: int, hidden: np.ndarray, fitted: np.ndarray
                 ) -> Callable[[JobContext], float]:
        def task(c: JobContext) -> float:
            pred = predict_hidden(sample, shifted_templates(W, n),
                                  torch.as_tensor(fitted, device=W.device), q, c)
            return _hidden_distance(sample, pred, hidden)
        return task

    # Independent predictions, side by side (see run_at_once).
    halves = ((upper, lower), (lower, upper))
    d = run_at_once([distance(n, h, f) for n in range(most + 1) for h, f in halves],
                    ctx, W.device, "choosing the templates' copies")
    best, best_count = np.inf, most
    for n in range(most + 1):
        total = d[2 * n] + d[2 * n + 1]
        if total < best:
            best, best_count = total, n
    return best_count


def _hidden_distance(truth: np.ndarray, pred: np.ndarray, hidden: np.ndarray) -> float:
    """The log-spectral distance (dB, :func:`spectra.power_log_distance`: power floored
    80 dB under the truth's peak) of the ``hidden`` rows (bool (bins,)) of ``pred`` from
    ``truth`` (float (bins, frames) magnitudes), over the frames with sound
    (:func:`.fit.frames_with_sound`)."""
    sounding = frames_with_sound(truth)
    t = truth[hidden][:, sounding].astype(np.float64) ** 2
    e = pred[hidden][:, sounding].astype(np.float64) ** 2
    return spectra.power_log_distance(t, e, float(truth.max()) ** 2)
