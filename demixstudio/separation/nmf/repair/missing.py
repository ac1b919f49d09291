"""Which bins of the input are missing: the band it occupies (given, or found
against the example's spectrum), gaps under the floor, lone nulls left alone; and
the checks that refuse a found band or an example that cannot serve."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from demixstudio.errors import ParameterError
from demixstudio.separation.nmf import spectra


def floor_of(V: list[torch.Tensor], floor_db: float) -> float:
    """The level ``floor_db`` under the loudest bin of the magnitude blocks ``V``
    (float32 (bins, B) each): bins at or under it are missing (gaps, a steep cut's
    empty bins)."""
    return max(float(b.max()) for b in V) * 10.0 ** (-floor_db / 20.0)


def inner_level(V: list[torch.Tensor], cfg, floor: float = 0.0) -> np.ndarray:
    """The input's long-term magnitude float64 (bins,): each frequency's mean over its
    bins above ``floor`` (0 where none is), leaving out the frames whose window
    reaches past either end of the input.

    V : the magnitude blocks float32 (bins, B), in order
    floor : the repair's floor (``floor_db`` under the input's loudest bin)

    Those frames see the STFT's zero padding, and an input that starts or ends on
    sound (an excerpt, a selection) steps from it: a broadband click. In a short
    input the two frames that hold it carry the mean over a cut band. A sung phrase
    of 3 s low-passed at 4 kHz (16 kHz) read 15–34 dB under its example above 4 kHz,
    around ``band_db``, so the cut was not found, while above 5 kHz its other frames
    lay 70–110 dB under the truth. Inputs too short to leave any frame keep them all.

    Why over the bins above the floor: the bins under it are found missing by the
    floor anyway (a gap, a steep cut's empty bins), and their zeros in the mean made
    a gap look like a band limit. A vibraphone's decaying C6 with a 1.6–5 kHz × 0.6 s
    gap (its example the mallet's strike, whose top lies 30–40 dB over the decay's):
    the gap's zeros took the top's reading under ``band_db``, the band was found to
    end near 2.2 kHz, and its whole top was replaced (74 % of the bins filled; the
    log-spectral distance 0.14 → 1.35 dB at 16 kHz, 0.08 → 1.93 dB at 44.1 kHz); read
    over the bins above the floor, the gap alone is filled (14 % of the bins; 0.77
    and 0.38 dB). The same reading moves a low-pass's found edge where its empty bins
    are under the floor in some frames only: speech low-passed at 8 kHz (44.1 kHz),
    band found, −1.6 → +22.4 % (``benchmarks/NMF_NOTES.md``, session 64).
    """
    head = cfg.n_fft // (2 * cfg.hop)  # frames centred less than n_fft/2 from the start
    tail = head + 1  # the last frame is centred at or past the last sample
    total = sum(b.shape[1] for b in V)
    if total <= head + tail:
        head = tail = 0
    level = np.zeros(V[0].shape[0], dtype=np.float64)
    count = np.zeros(V[0].shape[0], dtype=np.float64)
    t0 = 0
    for b in V:
        a, e = max(head - t0, 0), min(b.shape[1], total - tail - t0)
        if e > a:
            part = b[:, a:e]
            above = part > floor
            level += torch.where(above, part, 0.0).sum(dim=1).cpu().numpy().astype(np.float64)
            count += above.sum(dim=1).cpu().numpy().astype(np.float64)
        t0 += b.shape[1]
    return level / np.maximum(count, 1.0)


def lone_bins(below: list[torch.Tensor], i: int) -> torch.Tensor:
    """bool (bins, B): the bins of block ``i`` of ``below`` (bool (bins, B_j) blocks,
    True where a bin is under the floor) none of whose four neighbours in time and
    frequency is (the previous and next blocks give the neighbours across its edges).

    A gap is a region: a dropout, an erased patch, a notch. A lone bin under the floor
    is a null where components cancel (found at −120 dB now and then near the top of
    a 44.1 kHz recording); filling it changes nothing that can be heard, and
    synthesising the stretch around it again cost most of the time of repairing a
    long file with one gap (10 minutes of stereo: 409 such stretches).
    """
    q = below[i]
    near = torch.zeros_like(q)
    near[1:] |= q[:-1]
    near[:-1] |= q[1:]
    near[:, 1:] |= q[:, :-1]
    near[:, :-1] |= q[:, 1:]
    if i > 0:
        near[:, 0] |= below[i - 1][:, -1]
    if i + 1 < len(below):
        near[:, -1] |= below[i + 1][:, 0]
    return q & ~near


LOST_SHARE = 0.05


def check_found_band(V: list[torch.Tensor], in_band: np.ndarray, freqs: np.ndarray) -> None:
    """Refuse a found band outside which the input has sound of its own.

    V : the input's magnitude blocks float32 (bins, B); in_band : bool (bins,), as
    :func:`found_band` gives it; freqs : the bins' frequencies (Hz).

    The repair fills the missing bins *instead of* what the input has there. Outside
    a real band limit that is the filter's remains, a small share of the input's
    energy; when the example is another kind of sound, its spectrum can put the
    input's own sound outside the band it implies, and the repaired layer would lose
    it. Measured 2026-11-24 on eleven recordings (speech, singing, instruments, a
    band's stems, rain) with an example from another excerpt of the same recording,
    cut to 400–1600 Hz, 300–3400 Hz or under 4 kHz or with a gap (44 repairs at 16 and
    at 44.1 kHz): the bins outside the found band held at most 0.7 % (16 kHz) and
    0.5 % (44.1 kHz) of the input's energy, both a bass guitar cut to 300–3400 Hz
    (what the filter leaves under 300 Hz). With an example of another recording (16
    kHz, 22 pairs, 88 repairs) four put 8–98 % of the input outside the band: speech
    with a singer's example, 8 and 24 % (the repaired layer 12 dB louder than the
    original); drums under 4 kHz with a bass guitar's, 98 %; rain with a gap and a
    speaker's, 20 %. The next held 3 %. With a pure tone as the example, 99 % of a
    speaker's band-limited speech lay outside, and its repaired layer came out 46 dB
    under the input. :data:`LOST_SHARE` lies between the two groups.
    """
    # Per block on the device in float32 (MPS has no float64), across blocks in float64.
    power = sum((b * b).sum(dim=1).cpu().numpy().astype(np.float64) for b in V)
    total = float(power.sum())
    lost = float(power[~in_band].sum())
    if total > 0.0 and lost > LOST_SHARE * total:
        where = freqs[in_band]
        raise ParameterError(
            f"the example does not match this input: the band its spectrum implies "
            f"({where[0]:.0f}–{where[-1]:.0f} Hz) leaves out {100.0 * lost / total:.0f} % "
            f"of the input's energy, which the repair would replace. Use an example of "
            f"the same kind of sound, or give the input's band (band_lo_hz, band_hi_hz)")


#: An example that has none of this share of the input's missing bins (frequency ×
#: frame) is refused: what it could fill is a few scattered bins, not what is missing.
UNCOVERED_SHARE = 0.95
#: ... and one that has none of this share gets a note. Under it the uncovered bins
#: are a sliver at the top of the band (a bass guitar's example ends at 7.9 kHz at
#: 16 kHz: 2.8 % of what its cut under 4 kHz misses), which the original lacks too.
UNCOVERED_NOTE_SHARE = 0.25


def check_example_covers(Ve: np.ndarray, counts: np.ndarray, freqs: np.ndarray
                         ) -> str | None:
    """Refuse an example that has nearly none of the frequencies the input is missing
    (:data:`UNCOVERED_SHARE`); return a note when it lacks a good part of them
    (:data:`UNCOVERED_NOTE_SHARE`), else None.

    Ve : the example's magnitude float32 (bins, frames); counts : int (bins,), in how
    many frames each frequency is missing (:func:`missing_counts`); freqs : the bins'
    frequencies (Hz).

    The fill above :func:`spectra.spectrum_top` is empty. Without this check, speech cut under
    4 kHz "repaired" from a phone's 8 kHz recording of the same speaker came back as
    it was (log-spectral distance 7.8 → 7.8 dB with the band found, → 8.3 dB with it
    given), and no one said why. Of its missing bins, 99 % or more lay above the
    example's top (3.9 kHz), the rest scattered single bins under the gap threshold.
    """
    top = spectra.spectrum_top(Ve, freqs)
    beyond = (counts > 0) & (freqs > top)
    if not beyond.any():
        return None
    where = f"{freqs[beyond][0]:.0f}–{freqs[beyond][-1]:.0f} Hz"
    share = float(counts[beyond].sum()) / float(counts.sum())
    if share >= UNCOVERED_SHARE:
        raise ParameterError(
            f"the example has nothing above {top:.0f} Hz (it was recorded at a lower rate, "
            f"or cut there), and that is where the input's missing frequencies lie "
            f"({where}, {100.0 * share:.1f} % of what is missing): there is nothing to fill "
            f"them from. Use an example that has them")
    if share < UNCOVERED_NOTE_SHARE:
        return None
    return (f"the example has nothing above {top:.0f} Hz (recorded at a lower rate, or "
            f"cut there), so {where} stays empty ({100.0 * share:.1f} % of what is missing)")


#: Share of the frames with sound that lack one frequency above which missing bins
#: are treated as a band limit (see :func:`band_like`).
BAND_LIKE_SHARE = 0.5


def band_like(observed: list[torch.Tensor]) -> bool:
    """Whether some frequency is missing in most frames with sound (more than
    :data:`BAND_LIKE_SHARE`): a band limit the band search did not find (a steep
    low-pass leaves the top of the spectrum under the floor in nearly every frame),
    not a gap, whose frequencies the other frames hold. Such an input gets what a band
    limit gets: the templates' transposed copies, and no check of the fill on the
    input's own frames, which hold the band's attenuated remains, not the truth.

    Measured 2026-11-24 on the ten recordings of :func:`.level.fill_gain` cut under 4 kHz,
    band left to find: a saxophone, whose cut the search misses, went from −45 to
    +16 % at 16 kHz and from −11 to +17 % at 44.1 kHz (worse than the damaged input
    before); the ten's mean from 25.3 to 31.4 % and from 28.3 to 31.2 %.

    Why one frequency, not any: the rule first counted the frames that lacked any
    frequency. A quiet recording's nulls (pairs of bins under the floor here and
    there; :func:`lone_bins` leaves only single ones alone) put one in most frames,
    and a trumpet's gap in its quiet tail went down the band limit's path, without
    the check on its own frames: −15.1 % at 16 kHz; counted per frequency, +12.7 %.
    Nothing else of ``bench_repair_set.py`` moved at 16 kHz; at 44.1 kHz two gaps by
    ±2 points, and the 80 low- and high-passes not at all
    (``benchmarks/NMF_NOTES.md``, session 63).
    """
    has = [o.any(dim=0) for o in observed]  # the frames with sound
    sound = sum(int(h.sum()) for h in has)
    # Per frequency, the frames with sound that lack it.
    lacking = sum((~o & h[None, :]).sum(dim=1) for o, h in zip(observed, has))
    return sound > 0 and int(lacking.max()) > BAND_LIKE_SHARE * sound


SMOOTH_ERB = 0.5
#: Frequencies where the example's smoothed spectrum is this far (dB) under its
#: loudest say nothing about the band. Speech and singing above 16 kHz lie 61–72 dB
#: under it: at 60 an MP3's 16 kHz cut was not found in them (see
#: :func:`without_skirt` for what 70 measured); at 80 a repair of
#: ``bench_repair_set.py`` was refused (its band found at 0–1701 Hz).
EVIDENCE_DB = 70.0
#: A found band's skirt (:func:`without_skirt`): the frequencies next to a cut whose
#: reading, smoothed over :data:`EDGE_ERB` ERBs, lies this far (dB) under the band's,
#: up to :data:`EDGE_REACH_ERB` ERBs inward from the run's end.
EDGE_DB = 6.0
EDGE_ERB = 0.1
EDGE_REACH_ERB = 2.0


def erb_rate(freqs: np.ndarray) -> np.ndarray:
    """Frequencies (Hz) on the ERB-rate scale (Glasberg & Moore 1990), in ERBs."""
    return 21.4 * np.log10(1.0 + 0.00437 * np.asarray(freqs, dtype=np.float64))


def erb_smooth(values: np.ndarray, weights: np.ndarray, erb: np.ndarray, width: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """A weighted Gaussian mean over frequency, on the ERB-rate axis.

    values, weights : (n,), weights ≥ 0; erb : (n,) the points' ERB rates, increasing
    width : the Gaussian's standard deviation (ERBs; points beyond four are left out)
    Returns ((n,) the weighted means, (n,) the mean weight under each Gaussian).
    """
    lo = np.searchsorted(erb, erb - 4.0 * width)
    hi = np.searchsorted(erb, erb + 4.0 * width, side="right")
    mean = np.empty(erb.size)
    local = np.empty(erb.size)
    for i in range(erb.size):
        k = np.exp(-0.5 * ((erb[lo[i]:hi[i]] - erb[i]) / width) ** 2)
        w = k * weights[lo[i]:hi[i]]
        total = float(w.sum())
        mean[i] = float((w * values[lo[i]:hi[i]]).sum()) / max(total, 1e-300)
        local[i] = total / float(k.sum())
    return mean, local


def _readings(level: np.ndarray, expected: np.ndarray, freqs: np.ndarray):
    """The band search's readings (see :func:`found_band`): the input's level over the
    example's (dB) per bin, the bins' ERB rates, the reading smoothed over
    :data:`SMOOTH_ERB`, where it is evidence, and the band's reference reading."""
    tiny = float(expected.max()) * 1e-9
    r = 20.0 * np.log10(np.maximum(level, tiny) / np.maximum(expected, tiny))
    e = erb_rate(freqs)
    rs, local = erb_smooth(r, expected, e, SMOOTH_ERB)
    evidence = local > local.max() * 10.0 ** (-EVIDENCE_DB / 20.0)
    # A high percentile, not the maximum, so that one odd frequency where the example
    # happens to be weak does not set the reference.
    ref = float(np.percentile(rs[evidence], 95))
    return r, e, rs, evidence, ref


def found_band(level: np.ndarray, expected: np.ndarray, freqs: np.ndarray,
               band_db: float) -> np.ndarray:
    """The band an input occupies, from its long-term magnitude against an example's.

    level, expected : (bins,) long-term mean magnitudes of the input and of the example
    freqs : the bins' frequencies (Hz)
    band_db : how far (dB) under the example's prediction a frequency is cut
    Returns bool (bins,): True from the band's lowest frequency to its highest.

    The input's level over the example's, in dB, is smoothed over half an ERB
    (weighted by the example's level, so a frequency where the example has next to
    nothing takes its neighbours' reading), and read only where the example's
    smoothed spectrum is within :data:`EVIDENCE_DB` of its loudest: elsewhere
    neither a cut nor its absence shows. A frequency reads "in the band" within
    ``band_db`` of the 95th percentile of the readings and "cut" below it. A band
    limit is one run of frequencies, so the band is the run that holds the most
    "in" and the fewest "cut" frequencies (the maximum-sum run, each frequency
    counted by its width in ERBs, so that the many bins of the top octaves do not
    outvote the few of the low ones), widened to an end of the spectrum when
    nothing beyond it reads "cut".

    The rule it replaces (from the first to the last frequency within ``band_db``,
    bin by bin) was set off by single bins at the ends of the spectrum where both
    recordings have almost nothing: a speaker's recording cut to 400–1600 Hz was
    found to span 31–1812 Hz, the same cut to 4 kHz 0–8000 Hz, and at 44.1 kHz the
    cut at 1600 Hz was missed in eight of twelve recordings (this rule misses it in
    one). On those twelve (speech, singing, instruments, a band's stems, rain; 16
    and 44.1 kHz; cut to 400–1600 Hz, 300–3400 Hz, under 2, 4 or 6 kHz or over
    1 kHz) both rules leave every full-band recording whole. Measured 2026-11-24 on
    the ten of them with a separate example excerpt, cut to 400–1600 Hz, 300–3400 Hz
    or under 4 kHz with the band left to be found (30 repairs per rate), the repair's
    log-spectral distance fell by a median of 35 % with either rule at 16 kHz (mean
    27 → 30 %; 11 repairs better, 11 worse, the largest loss 6 points: the cello cut
    at 300 Hz, whose example has little under it) and by 26 → 35 % at 44.1 kHz (mean
    22 → 28 %; 16 better, 2 worse), where the steep cuts' empty bins are mostly found
    missing by ``floor_db`` anyway. A recording whose missing bands hold noise (a
    phone line) is not caught by ``floor_db`` and depends on this rule alone.
    """
    F = level.size
    r, e, rs, evidence, ref = _readings(level, expected, freqs)
    ok = evidence & (rs > ref - band_db)
    bad = evidence & ~ok
    score = (ok.astype(np.float64) - bad) * np.gradient(e)
    # Kadane's maximum-sum run.
    best, cur, start, lo, hi = -np.inf, 0.0, 0, 0, F - 1
    for i, v in enumerate(score):
        if cur <= 0.0:
            cur, start = v, i
        else:
            cur += v
        if cur > best:
            best, lo, hi = cur, start, i
    if not bad[:lo].any():
        lo = 0
    if not bad[hi + 1:].any():
        hi = F - 1
    out = np.zeros(F, dtype=bool)
    out[lo:hi + 1] = True
    return out


def without_skirt(in_band: np.ndarray, level: np.ndarray, expected: np.ndarray,
                  freqs: np.ndarray) -> np.ndarray:
    """A found band (bool (bins,), from :func:`found_band`) less its filter's skirt.

    level, expected, freqs : as for :func:`found_band`

    The run :func:`found_band` gives ends where the reading falls ``band_db`` under
    the band's, deep in the filter's skirt; the bins between hold the source turned
    down by up to that much, and were kept as they were, where a given band fills
    them (speech low-passed at 8 kHz, 10th order, zero phase, 44.1 kHz: found to
    8872 Hz). At each end that meets a cut, the frequencies next to it whose reading
    (smoothed over :data:`EDGE_ERB` ERBs: a filter's skirt is steep) lies more than
    :data:`EDGE_DB` under the band's are taken out too, no further than
    :data:`EDGE_REACH_ERB` ERBs inward (136 Hz from 400 Hz, 1.8 kHz from 8 kHz),
    so that a quiet stretch of the band next to the cut is not read as skirt.
    :func:`check_found_band` reads the run, not this: the skirt's share of the
    input's energy is what a band limit leaves, not the input's own sound outside.

    Measured 2026-11-25 (``bench_repair_set.py``, with :data:`EVIDENCE_DB` 70 instead
    of 60), the mean reduction of the log-spectral distance over the repairs with the
    band found: 40.2 → 40.9 % at 16 kHz and 36.2 → 37.2 % at 44.1 kHz (30 each);
    low-passed at 8 and 16 kHz at 44.1 kHz, on the 12 repairs whose original has
    something above the cut, 27.7 → 33.2 % (the band given: 35.5 %). A speaker's and
    a singer's 16 kHz cut: 13.9 → 24.4 % and 8.6 → 21.8 % (given: 24.4 and 21.4 %).
    The largest losses, at 16 kHz: a speaker cut to 300–3400 Hz, 46.7 → 34.7 % (given:
    41.3 %), a trumpet under 4 kHz, 17.8 → 4.7 %, and a piano, 4.8 → −4.3 %. For the
    speaker the fill above the skirt comes out 4–7 dB too loud; the skirt's
    attenuated bins, kept, had pulled the fit's activations down. The skirt alone
    (:data:`EVIDENCE_DB` 60): 40.9 / 36.2 / 31.2 %; 70 alone (session 54): 40.7 /
    36.2 % and the low-passes unchanged. A reach of 1 ERB: 41.2 / 37.0 / 33.5 %, but
    a piano cut to 400–1600 Hz at 44.1 kHz went from +25 to −16 %: one more bin of
    the skirt kept (388 Hz) tipped :func:`.copies.choose_copies` to the transposed
    copies, and the layer came out 7 dB louder. With the check reading the band less
    its skirt, a piano's 400–1600 Hz was refused at 16 kHz (8 % of its energy
    outside: its lowest notes lie in the skirt).
    """
    idx = np.flatnonzero(in_band)
    F = in_band.size
    lo, hi = int(idx[0]), int(idx[-1])
    if lo == 0 and hi == F - 1:
        return in_band
    r, e, _, evidence, ref = _readings(level, expected, freqs)
    rn, _ = erb_smooth(r, expected, e, EDGE_ERB)
    skirt = evidence & (rn < ref - EDGE_DB)
    if hi < F - 1:
        stop = e[hi] - EDGE_REACH_ERB
        while hi > lo and skirt[hi] and e[hi] > stop:
            hi -= 1
    if lo > 0:
        stop = e[lo] + EDGE_REACH_ERB
        while lo < hi and skirt[lo] and e[lo] < stop:
            lo += 1
    out = np.zeros(F, dtype=bool)
    out[lo:hi + 1] = True
    return out


@dataclass(frozen=True)
class LongTerm:
    """The input's and the example's long-term magnitudes, float64 (bins,) each: from
    the program's frames (``level``: :func:`inner_level`; ``expected``: the example's
    mean frame) and from :func:`.welch.long_term_magnitude` (``deep_level``,
    ``deep_expected``), which shows a cut next to a loud band as deep as it is."""

    level: np.ndarray
    expected: np.ndarray
    deep_level: np.ndarray
    deep_expected: np.ndarray


def found_run(s: LongTerm, freqs: np.ndarray, band_db: float) -> np.ndarray:
    """The band an input occupies (:func:`found_band`): bool (bins,), its low end read
    on the Welch spectrum, its high end on the program's frames.

    The Hann window's leakage limits how deep a cut can read only within a few bins
    of the band, and at the low end that is all of the cut: a high-pass at 150 Hz
    leaves 7 bins under it at 44.1 kHz (read 26–30 dB under the example, within
    ``band_db``: not found), at 400 Hz 19. Above a low-pass the cut spans hundreds
    of bins, most far from the band; there the Welch spectrum's depth reads real
    differences between an example and the input as cuts: a vibraphone's decay
    against its example's mallet strike, full-band, was found to end at 2.4 kHz
    at 16 and 44.1 kHz and its top replaced (the repair changed it by 0.8 and
    1.9 dB of log-spectral distance; with the program's frames it is left whole).

    Measured 2026-11-25 (``bench_repair_set.py``, the band found; the mean reduction
    of the log-spectral distance over all the set's repairs): high-passes at 150 and
    400 Hz 44.1 → 45.6 % at 44.1 kHz (harm 5 → 2 of 40; a singer's stem at 150 Hz 0
    → +35.3 %, given +31.7 %) and 45.2 → 45.4 % at 16 kHz; the ten recordings' set
    37.6 → 37.8 % at 44.1 kHz (a trumpet cut to 400–1600 Hz +18.9 → +27.4 %, a
    singer +41.3 → +45.4 %) and 41.9 → 41.9 % at 16 kHz (the trumpet +29.2 → +35.2,
    its 300–3400 Hz +19.7 → +17.2, a saxophone's +37.2 → +35.2 %); low-passes at 8
    and 16 kHz unchanged. The 36 recordings of ``../shared/audio``, split in halves,
    full-band: the same bands as before (two found cut at 16 kHz, one at 44.1 kHz,
    as before). Both ends on the Welch spectrum: the same gains, but the vibraphone
    above and a speaker's 4 kHz low-pass +34.8 → +16.5 % (16 kHz).
    """
    return _joined(found_band(s.level, s.expected, freqs, band_db),
                   found_band(s.deep_level, s.deep_expected, freqs, band_db))


def run_without_skirt(run: np.ndarray, s: LongTerm, freqs: np.ndarray) -> np.ndarray:
    """:func:`without_skirt` of a :func:`found_run`, each end on the readings that
    found it: bool (bins,)."""
    return _joined(without_skirt(run, s.level, s.expected, freqs),
                   without_skirt(run, s.deep_level, s.deep_expected, freqs))


def _joined(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    """bool (bins,): from the first bin of run ``low`` to the last of run ``high``
    (both bool (bins,)); ``high`` itself where the two do not meet."""
    hi_bins, lo_bins = np.flatnonzero(high), np.flatnonzero(low)
    lo, hi = int(lo_bins[0]), int(hi_bins[-1])
    if lo > hi:
        return high
    out = np.zeros(high.size, dtype=bool)
    out[lo:hi + 1] = True
    return out


def missing_counts(observed: list[torch.Tensor]) -> np.ndarray:
    """int64 (bins,): in how many of the frames that have anything observed each
    frequency is missing."""
    count = np.zeros(observed[0].shape[0], dtype=np.int64)
    for o in observed:
        cols = o.any(dim=0)
        if bool(cols.any()):
            count += (~o[:, cols]).sum(dim=1).cpu().numpy()
    return count
