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
drift).

In both modes the bins below ``cutoff_hz`` go to the background (a melody
rarely lives there; Rafii & Pardo high-pass the foreground at 100 Hz), and
the two layers sum to the mixture. Memory: one magnitude spectrogram, which
becomes the mask in place; the similarity matrix is never held whole
(blocks of rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import numpy as np
import scipy.fft
from scipy.ndimage import maximum_filter1d

from demixstudio.audio.stft import StftConfig
from demixstudio.errors import ParameterError
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
                   repeats: int) -> np.ndarray:
    """Indices of the frames most similar to each frame of ``rows`` (REPET-SIM).

    Parameters
    ----------
    u : np.ndarray [shape=(bins, frames)], spectra scaled to unit norm
    rows : the frames to find repeats for

    Returns
    -------
    idx : np.ndarray [shape=(rows, k), dtype=int64], −1 where a row has fewer
        than ``k`` qualifying frames; each row holds the frame itself.
    """
    sim = u[:, rows].T @ u  # (rows, frames) cosine similarities
    # Local maxima at least ``distance`` frames from any higher value.
    peak = sim == maximum_filter1d(sim, size=2 * distance + 1, axis=1, mode="constant",
                                   cval=-np.inf)
    peak &= sim >= threshold
    score = np.where(peak, sim, -np.inf)
    k = min(repeats, sim.shape[1])
    idx = np.argpartition(-score, k - 1, axis=1)[:, :k]
    chosen = np.take_along_axis(score, idx, axis=1)
    # Best first, and no wider than the row with the most qualifying frames
    # (with repeats ≥ 1 s apart a short input has far fewer than ``repeats``).
    order = np.argsort(-chosen, axis=1, kind="stable")
    idx = np.take_along_axis(idx, order, axis=1)
    chosen = np.take_along_axis(chosen, order, axis=1)
    width = max(1, int((chosen > -np.inf).sum(axis=1).max()))
    idx, chosen = idx[:, :width], chosen[:, :width]
    valid = chosen > -np.inf
    # The frame itself always qualifies (similarity 1 is its window's maximum),
    # but ties could hide it behind an equal neighbour: put it in explicitly.
    own = np.arange(rows.start, rows.stop)
    has_own = (idx == own[:, None]) & valid
    missing = ~has_own.any(axis=1)
    if missing.any():
        # Replace the weakest valid choice (or an empty slot) by the frame itself.
        weakest = np.where(valid, chosen, -np.inf).argmin(axis=1)
        idx[missing, weakest[missing]] = own[missing]
        valid[missing, weakest[missing]] = True
    return np.where(valid, idx, -1)


def sim_model_into_mask(mag: np.ndarray, sr: int, cfg: StftConfig, ctx: JobContext, *,
                        threshold: float, distance_s: float, repeats: int) -> None:
    """Turn ``mag`` in place into the background mask of REPET-SIM.

    For frame ``j`` the model is the median of the magnitudes of its similar
    frames (``similar_frames`` on the channel-averaged spectrogram).
    """
    c, bins, nfr = mag.shape
    mean = mag.mean(axis=0)  # (bins, frames): one similarity for every channel
    norm = np.sqrt(np.einsum("ft,ft->t", mean, mean))
    u = mean / np.maximum(norm, TINY)
    del mean
    distance = max(1, int(round(distance_s * sr / cfg.hop)))
    # The model of every frame must be built before any frame of ``mag`` is
    # overwritten by its mask, since other frames' models read it.
    model = np.empty_like(mag)
    for r0 in range(0, nfr, SIM_BLOCK):
        r1 = min(nfr, r0 + SIM_BLOCK)
        idx = similar_frames(u, slice(r0, r1), threshold=threshold, distance=distance,
                             repeats=repeats)
        counts = (idx >= 0).sum(axis=1)  # (rows,)
        # Gather (channels, bins, rows, k); absent slots are NaN so they sort last.
        g = mag[:, :, np.maximum(idx, 0)]
        g[:, :, idx < 0] = np.nan
        g.sort(axis=3)
        lo = ((counts - 1) // 2)[None, None, :, None]
        hi = (counts // 2)[None, None, :, None]
        lo = np.broadcast_to(lo, g.shape[:3] + (1,))
        hi = np.broadcast_to(hi, g.shape[:3] + (1,))
        med = 0.5 * (np.take_along_axis(g, lo, axis=3) + np.take_along_axis(g, hi, axis=3))
        model[:, :, r0:r1] = med[..., 0]
        ctx.progress(r1, nfr, "similar frames")
        del g
    for ch in range(c):
        _ratio_into(mag[ch], model[ch])


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
                                    distance_s=params.sim_distance_s, repeats=params.sim_repeats)
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
