"""A band limit's skirt: the frequencies just outside the band where a filter turned
the source down but did not take it away. There the fill keeps the input's own
sound, turned back up to the fill's level, instead of the model's."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import takewhile

import numpy as np
import torch

from demixstudio.separation.nmf.repair.missing import erb_rate

#: A skirt bin lies at most this far (dB, on the mean log magnitude over the frames
#: with sound) under the fill ...
SKIRT_DB = 30.0
#: ... and its time course (log magnitude over those frames) correlates with the
#: fill's by at least this much: the input there is the source, not hiss.
SKIRT_CORR = 0.7
#: Frequencies looked at, at most this far (ERBs) outside the band's edge.
SKIRT_REACH_ERB = 4.0


@dataclass
class SkirtReading:
    """What :func:`skirt_gains` needs of the input, read before the fit so that the
    magnitude can be let go (an hour of 44.1 kHz audio: 1.27 GB, against tens of MB
    for these rows).

    below, above : the candidate frequencies (bin indices) each side of the band, in
    the order of the walk outward from its edge; rows : int (rows,), both, sorted;
    blocks : per block of the magnitude, (its first frame, int (n,) the indices within
    it of its frames with sound, float32 (rows, n) the input's magnitude there);
    tiny : the logs' floor, 120 dB under the input's loudest bin.
    """

    below: list[int]
    above: list[int]
    rows: np.ndarray
    blocks: list[tuple[int, np.ndarray, np.ndarray]]
    tiny: float


def skirt_reading(V: list[torch.Tensor], observed: list[torch.Tensor], freqs: np.ndarray
                  ) -> SkirtReading | None:
    """The input's side of :func:`skirt_gains`: its candidate frequencies, walking out
    from each end of the present band (those missing in every frame), and its
    magnitude there in the frames with sound (summed magnitude within 60 dB of the
    loudest frame's); None when there is no candidate or no such frame.

    V, observed : the input's channel-summed magnitude blocks float32 (bins, B) and
    their bool present bins; freqs : the bins' frequencies (Hz)
    """
    F = V[0].shape[0]
    always = np.ones(F, dtype=bool)
    ever = np.zeros(F, dtype=bool)
    for o in observed:
        cols = o.any(dim=0)
        if bool(cols.any()):
            seen = o[:, cols]
            always &= ~seen.any(dim=1).cpu().numpy()
            ever |= seen.any(dim=1).cpu().numpy()
    present = np.flatnonzero(ever)
    if present.size == 0:
        return None
    lo, hi = int(present[0]), int(present[-1])
    erb = erb_rate(freqs)
    # The candidates, each side in the order of the walk (outward from the band),
    # up to the first frequency that is present somewhere or out of reach.
    below = list(takewhile(lambda f: always[f] and erb[lo] - erb[f] <= SKIRT_REACH_ERB,
                           range(lo - 1, -1, -1)))
    above = list(takewhile(lambda f: always[f] and erb[f] - erb[hi] <= SKIRT_REACH_ERB,
                           range(hi + 1, F)))
    rows = np.array(sorted(below + above), dtype=np.int64)
    if rows.size == 0:
        return None
    frame_sums = [b.sum(dim=0) for b in V]  # (B,) each
    loudest = max(float(f.max()) for f in frame_sums)
    if loudest <= 0.0:
        return None
    peak = max(float(b.max()) for b in V)
    idx = torch.as_tensor(rows, device=V[0].device)
    blocks, t0, n = [], 0, 0
    for b, f in zip(V, frame_sums):
        sound = np.flatnonzero((f > loudest * 1e-3).cpu().numpy())
        if sound.size:
            blocks.append((t0, sound, b[idx].cpu().numpy()[:, sound]))
            n += sound.size
        t0 += b.shape[1]
    if n < 2:
        return None
    return SkirtReading(below, above, rows, blocks, peak * 1e-6)


def skirt_gains(reading: SkirtReading | None, W: np.ndarray, H: np.ndarray
                ) -> np.ndarray | None:
    """Per frequency, float32 (bins,): the gain that brings the input's own magnitude
    up to the fill's where a band limit's skirt holds the source, 0 elsewhere; None
    when no frequency qualifies.

    reading : the input's candidate frequencies and its magnitude there
    (:func:`skirt_reading`); W float32 (bins, K), H float32 (K, frames): the fill
    ``W H`` (with the level check's gain in W)

    Outside a band the fill is the model's guess from the present frequencies. Next
    to the band, though, a filter only turned the source down (a 10th-order
    Butterworth run forward and back falls 30 dB over a quarter of an octave): the
    input's time course there is the source's, times a constant. Walking out from
    each end of the present band (frequencies missing in every frame), a frequency
    is taken while its mean log magnitude over the frames with sound lies within
    :data:`SKIRT_DB` under the fill's and its log magnitude's time course correlates
    with the fill's by :data:`SKIRT_CORR` or more; its gain is the ratio of the two
    geometric means, so the fill's level is kept and the detail is the input's.
    Beyond the first frequency that fails, none is taken.

    Why the correlation: broadband hiss outside a phone line's band lies within
    30 dB of the fill over much of the spectrum, and turned up it is louder hiss. A
    prototype that took every frequency within 30 dB (its correlation read off the
    output) lost up to 21 points with white hiss 30 dB under the signal (the band's
    singer cut to 400–1600 Hz). Read against the fill, a speaker low-passed at 4 kHz
    (the LibriSpeech excerpt of ``bench_nmf.py``) correlated by 0.62–0.75 over
    4–4.5 kHz; 0.7 asks that half of the variance be shared.

    Measured 2026-11-25 on ``bench_repair_set.py`` (``keep_skirt`` on against off,
    the mean reduction of the log-spectral distance; see ``benchmarks/NMF_NOTES.md``,
    session 57): 41.2 → 41.9 % over the 60 repairs at 16 kHz, one repair 0.1 point
    worse (a singer cut to 400–1600 Hz), the trumpet under 4 kHz with the band found
    +4.7 → +16.0 % and cut to 300–3400 Hz +14.0 → +19.7 %, speech under 4 kHz +1.4 to
    +2.8 points. On the 30 repairs cut to 300–3400 Hz or under 4 kHz: 41.3 % off,
    42.5 % at 0.7, 43.2 % at 0.6 (none worse), 43.2 % at 0.5 (a singer −0.8 and a
    piano −1.0 point). With white hiss 30 dB under the signal, within 0.1 point of
    off at 0.5–0.7 (walking out stops at the first hiss-laden frequency).
    """
    if reading is None:
        return None
    rows = reading.rows
    mean_gap, corr = _log_stats(reading, W[rows], H)  # (rows,) mean log(fill / input)
    ok = (mean_gap <= SKIRT_DB / 20.0 * np.log(10.0)) & (corr >= SKIRT_CORR)
    take = np.zeros(W.shape[0], dtype=bool)
    at = {int(f): i for i, f in enumerate(rows)}
    for run in (reading.below, reading.above):  # each walked outward from the band's edge
        for f in run:
            if not ok[at[f]]:
                break
            take[f] = True
    if not take.any():
        return None
    gains = np.zeros(W.shape[0], dtype=np.float32)
    kept = np.flatnonzero(take)
    gains[kept] = np.exp(np.maximum(mean_gap[[at[int(f)] for f in kept]], 0.0))
    return gains


def _log_stats(reading: SkirtReading, Wr: np.ndarray, H: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """Over the frames with sound, at the frequencies ``reading.rows``, whose
    templates are ``Wr`` (rows, K): the mean of log(fill) − log(input) and the
    correlation of the two logs, both float64 (rows,). A block of the input at a time
    (only these rows of the fill are made)."""
    tiny = reading.tiny
    n = 0
    s = np.zeros((5, Wr.shape[0]))  # Σ a, Σ b, Σ a², Σ b², Σ ab
    for t0, sound, level in reading.blocks:
        a = np.log((Wr @ H[:, t0 + sound]).astype(np.float64) + tiny)
        x = np.log(level.astype(np.float64) + tiny)
        s += [a.sum(1), x.sum(1), (a * a).sum(1), (x * x).sum(1), (a * x).sum(1)]
        n += sound.size
    ma, mx = s[0] / n, s[1] / n
    va = np.maximum(s[2] / n - ma * ma, 0.0)
    vx = np.maximum(s[3] / n - mx * mx, 0.0)
    cov = s[4] / n - ma * mx
    corr = cov / np.sqrt(np.maximum(va * vx, 1e-300))
    return ma - mx, corr
