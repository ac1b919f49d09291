"""REPET: a repeating background and a non-repeating foreground.

Much music is a repeating accompaniment with a varying melody on top.
REPET (Rafii & Pardo 2013) finds the repeating period and models the
background as what every period has in common:

1. the *beat spectrum* ``b(l)``: the autocorrelation over frames of each
   frequency bin of the power spectrogram, averaged over bins (and channels)
   — peaks at the lags where the sound repeats;
2. the repeating period ``p``: for every candidate period ``j``, the mean
   over its integer multiples ``i`` of how much ``b`` peaks at ``i`` above
   its neighbourhood ``[i − ⌊3j/4⌋, i + ⌊3j/4⌋]`` (a multiple counts only if
   the highest value of that neighbourhood lies within ``δ`` frames of it);
   the best-scoring period wins;
3. the repeating segment model: the magnitude spectrogram is cut into
   segments of ``p`` frames and the element-wise *median* over segments
   is the model (the foreground, present in few segments at any one place,
   is voted out);
4. the repeating spectrogram ``W = min(model, V)`` (the background cannot
   be louder than the mixture) and the soft mask ``M = W / V``.

REPET-SIM (Rafii & Pardo 2012), ``mode=sim``, drops the assumption of one
period: for each frame it finds the most similar frames (cosine similarity
of spectra; local maxima at least ``sim_distance_s`` apart, similarity at
least ``sim_threshold``, at most ``sim_repeats`` of them, the frame itself
included) and takes the median over them as that frame's background — which
suits backgrounds that repeat irregularly (verses, choruses, loops that
drift). Compared with every other frame, the time would grow with the square
of the length, so ``sim_window_s`` bounds the search to that long before and
after each frame, as the online REPET-SIM does with its buffer of past frames
(Rafii & Pardo, ICASSP 2013), and the time grows in proportion to the length.
The default window, 300 s each way, holds the whole of a song of up to five
minutes, where it changes nothing; measured on 44.1 kHz stereo on two cores
(a real song tiled): 10 minutes 105 s without a window, 93 s with the
default; 30 minutes with the default 327 s; an hour 43 min without a window,
11.5 min with the default.

In both modes the bins below ``cutoff_hz`` go to the background (a melody
rarely lives there; Rafii & Pardo high-pass the foreground at 100 Hz), and
the two layers sum to the mixture. Memory: one magnitude spectrogram, which
becomes the mask in place (REPET-SIM also keeps one frame-major copy to read
the repeats from); the similarity matrix is never held whole (blocks of rows).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np
import scipy.fft
from scipy.ndimage import maximum_filter1d

from demixstudio.audio.stft import StftConfig
from demixstudio.errors import ParameterError
from demixstudio.jobs import memory
from demixstudio.jobs.context import JobContext
from demixstudio.separation.base import Hints, LayerProposal, Method, param, params_to_dict
from demixstudio.separation.hpss import magnitude_frames
from demixstudio.separation.registry import register

#: Frames per block when computing the magnitude spectrogram.
MAG_BLOCK = 1024
#: Bins per block for the beat spectrum and the segment median.
BIN_BLOCK = 64
#: Rows of the similarity matrix per block (REPET-SIM).
SIM_BLOCK = 64
#: Threads sharing REPET-SIM's medians.
MEDIAN_THREADS = min(4, os.cpu_count() or 1)
#: Local-maximum tolerance δ (frames) when scoring periods.
PEAK_TOLERANCE = 2
TINY = 1e-10


# --------------------------------------------------------------------------
# The pieces
# --------------------------------------------------------------------------


def magnitude(x: np.ndarray, cfg: StftConfig, ctx: JobContext) -> np.ndarray:
    """``|stft(x)|`` built block by block: float32 (channels, bins, frames)."""
    nfr = cfg.frames(x.shape[1])
    out = np.empty((x.shape[0], cfg.bins, nfr), dtype=np.float32)
    for t0 in range(0, nfr, MAG_BLOCK):
        t1 = min(nfr, t0 + MAG_BLOCK)
        out[:, :, t0:t1] = magnitude_frames(x, cfg, t0, t1)
        ctx.progress(t1, nfr, "spectrogram")
    return out


def beat_spectrum(mag: np.ndarray) -> np.ndarray:
    """Beat spectrum: mean over bins and channels of the unbiased autocorrelation of power.

    Parameters
    ----------
    mag : np.ndarray [shape=(channels, bins, frames)], magnitudes

    Returns
    -------
    b : np.ndarray [shape=(frames,), dtype=float64], ``b[0] = 1``
    """
    c, bins, nfr = mag.shape
    nfft = scipy.fft.next_fast_len(2 * nfr)
    acc = np.zeros(nfr, dtype=np.float64)
    for ch in range(c):
        for f0 in range(0, bins, BIN_BLOCK):
            power = mag[ch, f0:f0 + BIN_BLOCK].astype(np.float64) ** 2
            spec = scipy.fft.rfft(power, n=nfft, axis=1)
            acf = scipy.fft.irfft(spec.real ** 2 + spec.imag ** 2, n=nfft, axis=1)[:, :nfr]
            acc += acf.sum(axis=0)
    acc /= np.arange(nfr, 0, -1)  # unbiased: lag l has nfr − l products
    return acc / acc[0] if acc[0] > 0 else acc


def repeating_period(b: np.ndarray, lo: int, hi: int) -> int:
    """The repeating period (frames) in ``[lo, hi]`` that best explains the beat spectrum.

    Each candidate ``j`` scores the mean, over its multiples ``i`` within the
    usable lags (``len(b)``), of ``max(b[i ± δ]) − mean(b[i ± ⌊3j/4⌋])`` when
    that maximum is also the maximum of the wider neighbourhood (a real peak
    near ``i``), and 0 otherwise.
    """
    n = len(b)
    best, best_score = lo, -np.inf
    for j in range(lo, hi + 1):
        wide = (3 * j) // 4
        total, count = 0.0, 0
        for i in range(j, n, j):
            a, z = max(0, i - wide), min(n, i + wide + 1)
            near = b[max(0, i - PEAK_TOLERANCE):min(n, i + PEAK_TOLERANCE + 1)].max()
            count += 1
            if near >= b[a:z].max():
                total += near - b[a:z].mean()
        score = total / count if count else -np.inf
        if score > best_score:
            best, best_score = j, score
    return best


def period_model_into_mask(mag: np.ndarray, period: int, ctx: JobContext) -> None:
    """Turn ``mag`` in place into the background mask ``min(model, V) / V`` of REPET.

    The model is the median, over segments of ``period`` frames, of each
    (channel, bin, position in the period); a last partial segment takes
    part where it has frames.
    """
    c, bins, nfr = mag.shape
    full, tail = divmod(nfr, period)
    for ch in range(c):
        for f0 in range(0, bins, BIN_BLOCK):
            v = mag[ch, f0:f0 + BIN_BLOCK]  # a view: written in place below
            nb = v.shape[0]
            model = np.empty((nb, period), dtype=np.float32)
            segs = v[:, :full * period].reshape(nb, full, period)
            if tail:
                last = v[:, full * period:]
                # Positions covered by the partial segment have one more vote.
                stacked = np.concatenate([segs[:, :, :tail], last[:, None, :]], axis=1)
                model[:, :tail] = np.median(stacked, axis=1)
                model[:, tail:] = np.median(segs[:, :, tail:], axis=1) if full else 0.0
            else:
                model[:] = np.median(segs, axis=1)
            tiled = np.tile(model, (1, full + (1 if tail else 0)))[:, :nfr]
            _ratio_into(v, tiled)
        ctx.progress(ch + 1, c, "repeating model")


def _ratio_into(v: np.ndarray, model: np.ndarray) -> None:
    """``v ← min(model, v) / v`` (1 where v is silent), in place."""
    silent = v < TINY
    np.minimum(model, v, out=model)
    np.divide(model, v, out=v, where=~silent)
    v[silent] = 1.0


def similar_frames(u: np.ndarray, rows: slice, *, threshold: float, distance: int,
                   repeats: int, window: int = 0) -> np.ndarray:
    """Indices of the frames most similar to each frame of ``rows`` (REPET-SIM).

    Parameters
    ----------
    u : np.ndarray [shape=(bins, frames)], spectra scaled to unit norm
    rows : the frames to find repeats for
    window : look only this many frames before and after each frame (0: all)

    Returns
    -------
    idx : np.ndarray [shape=(rows, k), dtype=int64], −1 where a row has fewer
        than ``k`` qualifying frames; each row holds the frame itself. Within a
        row the most similar come first (the earlier frame on a tie).
    """
    nfr = u.shape[1]
    own = np.arange(rows.start, rows.stop)
    c0, c1 = (0, nfr) if not window else (max(0, rows.start - window),
                                          min(nfr, rows.stop + window))
    sim = u[:, rows].T @ u[:, c0:c1]  # (rows, columns) cosine similarities
    if window:
        lag = np.arange(c0, c1)[None, :] - own[:, None]
        sim[np.abs(lag) > window] = -np.inf
    # Local maxima at least ``distance`` frames from any higher value.
    peak = sim == maximum_filter1d(sim, size=2 * distance + 1, axis=1, mode="constant",
                                   cval=-np.inf)
    peak &= sim >= threshold
    # The peaks are few (at most one per ``distance`` frames), so the best ``repeats``
    # of each row are chosen among them rather than by partitioning whole rows.
    r, col = np.nonzero(peak)
    order = np.lexsort((col, -sim[r, col], r))  # by row, most similar first, then earlier
    r, col = r[order], col[order]
    rank = np.arange(r.size) - np.searchsorted(r, r)  # position within its row
    keep = rank < repeats
    r, col, rank = r[keep], col[keep], rank[keep]
    n = own.size
    counts = np.bincount(r, minlength=n)
    # No wider than the row with the most qualifying frames (with repeats ≥ 1 s
    # apart a short input has far fewer than ``repeats``).
    width = max(1, int(counts.max(initial=0)))
    idx = np.full((n, width), -1, dtype=np.int64)
    idx[r, rank] = col + c0
    # The frame itself always qualifies (similarity 1 is its window's maximum),
    # but ties could hide it behind an equal neighbour: put it in explicitly, in
    # place of the weakest choice (or in the first empty slot).
    missing = ~(idx == own[:, None]).any(axis=1)
    if missing.any():
        slot = np.minimum(counts, width - 1)
        idx[missing, slot[missing]] = own[missing]
    return idx


def _frame_medians(frames: np.ndarray, idx: np.ndarray, pool: ThreadPoolExecutor
                   ) -> np.ndarray:
    """The median of ``frames`` (frames, channels, bins) over the frames ``idx[i]``
    (rows, k; −1 for an empty slot) for each row: float32 (rows, channels, bins),
    the mean of the two middle values when a row has an even count.

    Rows are taken in groups of equal count and the groups' sorts shared among
    threads (NumPy's sort releases the GIL). Gathering whole frames from the
    frame-major copy and sorting contiguous runs of k values is about 10× faster
    than gathering along the frames of a (channels, bins, frames) array and
    sorting with NaN in the empty slots, which took most of REPET-SIM's time.
    """
    idx = -np.sort(-idx, axis=1)  # the frames first, the empty slots (−1) last
    counts = (idx >= 0).sum(axis=1)  # (rows,)
    out = np.empty((idx.shape[0],) + frames.shape[1:], dtype=np.float32)

    def medians(rows: np.ndarray, count: int) -> None:
        g = np.moveaxis(frames[idx[rows, :count]], 1, 3).copy()  # (rows, c, bins, count)
        g.sort(axis=3)
        out[rows] = 0.5 * (g[..., (count - 1) // 2] + g[..., count // 2])

    jobs = []
    for count in np.unique(counts):
        rows = np.flatnonzero(counts == count)
        for part in np.array_split(rows, min(len(rows), MEDIAN_THREADS)):
            jobs.append(pool.submit(medians, part, int(count)))
    for job in jobs:
        job.result()
    return out


def sim_model_into_mask(mag: np.ndarray, sr: int, cfg: StftConfig, ctx: JobContext, *,
                        threshold: float, distance_s: float, repeats: int,
                        window_s: float = 0.0) -> None:
    """Turn ``mag`` in place into the background mask of REPET-SIM.

    For frame ``j`` the model is the median of the magnitudes of its similar
    frames (``similar_frames`` on the channel-averaged spectrogram, within
    ``window_s`` seconds of ``j``; 0: anywhere).
    """
    c, bins, nfr = mag.shape
    mean = mag.mean(axis=0)  # (bins, frames): one similarity for every channel
    norm = np.sqrt(np.einsum("ft,ft->t", mean, mean))
    u = mean / np.maximum(norm, TINY)
    del mean
    distance = max(1, int(round(distance_s * sr / cfg.hop)))
    window = int(round(window_s * sr / cfg.hop))
    if window and window <= distance:
        raise ParameterError(f"sim_window_s={window_s:g} leaves no room for a repeat "
                             f"sim_distance_s={distance_s:g} away: make it longer")
    # The models read the magnitudes from a frame-major copy (frames, c, bins),
    # so ``mag`` can become the mask block by block: one copy, as the separate
    # model array it replaces.
    frames = np.ascontiguousarray(np.moveaxis(mag, 2, 0))
    with ThreadPoolExecutor(max_workers=MEDIAN_THREADS) as pool:
        for r0 in range(0, nfr, SIM_BLOCK):
            r1 = min(nfr, r0 + SIM_BLOCK)
            idx = similar_frames(u, slice(r0, r1), threshold=threshold, distance=distance,
                                 repeats=repeats, window=window)
            model = np.moveaxis(_frame_medians(frames, idx, pool), 0, 2)  # (c, bins, rows)
            _ratio_into(mag[:, :, r0:r1], model)
            ctx.progress(r1, nfr, "similar frames")


# --------------------------------------------------------------------------
# The method
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class RepetParams:
    mode: str = param("period", label="Mode", choices=("period", "sim"),
                      help="period: one repeating period (REPET); sim: repeats found by "
                           "similarity, for backgrounds that repeat irregularly (REPET-SIM)")
    min_period_s: float = param(0.8, label="Shortest period (s)", min=0.05, max=60.0,
                                help="period mode: the shortest repeating period considered")
    max_period_s: float = param(8.0, label="Longest period (s)", min=0.1, max=120.0,
                                help="period mode: the longest period considered (at most a "
                                     "third of the input, so that it repeats three times)")
    cutoff_hz: float = param(100.0, label="Bass cutoff (Hz)", min=0.0, max=2000.0,
                             help="bins below this go to the background")
    sim_threshold: float = param(0.0, label="Minimum similarity", min=0.0, max=1.0,
                                 help="sim mode: frames less similar than this are not repeats")
    sim_distance_s: float = param(1.0, label="Distance between repeats (s)", min=0.0, max=60.0,
                                  help="sim mode: the shortest time between two repeats")
    sim_repeats: int = param(100, label="Repeats per frame", min=2, max=1000,
                             help="sim mode: at most this many similar frames per median")
    # 300 s each way: all of a song of up to five minutes, where nothing changes (the
    # time it saves on longer recordings: the module docstring).
    sim_window_s: float = param(300.0, label="Search window (s)", min=0.0, max=86400.0,
                                help="sim mode: look for repeats at most this long before and "
                                     "after each frame (0: anywhere in the input). Without a "
                                     "window the time grows with the square of the length "
                                     "(an hour of stereo: 43 min); with one it grows in "
                                     "proportion (an hour: 11.5 min with 300 s)")


@register
class Repet(Method):
    name = "repet"
    title = "Repeating background (REPET / REPET-SIM)"
    summary = ("splits a repeating background (an accompaniment, a loop, steady noise) from a "
               "varying foreground (a voice, a solo) by median over its repetitions")
    references = (
        "Z. Rafii, B. Pardo, REpeating Pattern Extraction Technique (REPET): a simple method "
        "for music/voice separation, IEEE TASLP 21(1), 2013",
        "Z. Rafii, B. Pardo, Music/voice separation using the similarity matrix, ISMIR 2012",
        "Z. Rafii, B. Pardo, Online REPET-SIM for real-time speech enhancement, ICASSP 2013",
    )
    Params = RepetParams

    def separate(self, mix: np.ndarray, sr: int, params: RepetParams, hints: Hints,
                 ctx: JobContext) -> List[LayerProposal]:
        """Masks for ``background`` (repeating) and ``foreground``; mix float32 (channels, samples)."""
        self.check_input(mix)
        cfg = StftConfig.for_rate(sr)
        nfr = cfg.frames(mix.shape[1])
        frame_s = cfg.hop / sr
        values = params_to_dict(params)
        extra = {}
        # Two layers of per-channel masks and their audio; REPET-SIM also holds one
        # frame-major copy of the spectrogram while it finds the repeats.
        mask = mix.shape[0] * cfg.bins * nfr * 4
        memory.check_fits(2 * (mask + int(mix.size) * 4) + (mask if params.mode == "sim" else 0),
                          f"the background and foreground ({mix.shape[0]} channels × "
                          f"{cfg.bins} bins × {nfr} frames masks, and their audio)",
                          memory.SHORTER)
        with ctx.stage(0.0, 0.3, "spectrogram"):
            mag = magnitude(mix, cfg, ctx)
        if params.mode == "period":
            lo, hi = self._period_range(params, nfr, frame_s)
            with ctx.stage(0.3, 0.5, "beat spectrum"):
                b = beat_spectrum(mag)
                ctx.progress(1, 1)
            period = repeating_period(b[:nfr], lo, hi)
            extra = {"period_s": period * frame_s, "beat_spectrum": b.astype(np.float32),
                     "frame_s": frame_s}
            with ctx.stage(0.5, 1.0, "repeating model"):
                period_model_into_mask(mag, period, ctx)
        else:
            with ctx.stage(0.3, 1.0, "similar frames"):
                sim_model_into_mask(mag, sr, cfg, ctx, threshold=params.sim_threshold,
                                    distance_s=params.sim_distance_s, repeats=params.sim_repeats,
                                    window_s=params.sim_window_s)
        background = mag  # now the mask
        low = int(np.searchsorted(cfg.bin_freqs(sr), params.cutoff_hz, side="left"))
        background[:, :low] = 1.0
        foreground = 1.0 - background
        return [LayerProposal("background", self.name, values, mask=background, extra=extra),
                LayerProposal("foreground", self.name, values, mask=foreground)]

    @staticmethod
    def _period_range(params: RepetParams, nfr: int, frame_s: float) -> Tuple[int, int]:
        """The candidate periods in frames: the user's range, at most a third of the input."""
        if params.min_period_s >= params.max_period_s:
            raise ParameterError(f"min_period_s={params.min_period_s} must be below "
                                 f"max_period_s={params.max_period_s}")
        lo = max(1, int(round(params.min_period_s / frame_s)))
        hi = min(int(round(params.max_period_s / frame_s)), nfr // 3)
        if hi < lo:
            raise ParameterError(
                f"the input ({nfr * frame_s:.1f} s) is too short to repeat a period of at least "
                f"{params.min_period_s} s three times; lower min_period_s or use mode=sim")
        return lo, hi
