"""Frequency axes of the spectrogram: linear, logarithmic and mel (numpy only).

The view draws frequency on a display coordinate ``u``: Hz for the linear
axis, log2(Hz) for the logarithmic one and HTK mel for the mel one. Images
are resampled from STFT bins onto ``rows`` display rows evenly spaced in
``u``. Where a row spans several bins (the top of a log or mel axis) the row
takes their maximum, so narrow lines (a harmonic, a thin brush stroke) never
fall between sampled bins; where a row is finer than a bin it interpolates
linearly between the two nearest bins.
"""

from __future__ import annotations

from functools import cached_property
from typing import List, Optional

import numpy as np

from demixstudio.errors import ParameterError

SCALES = ("linear", "log", "mel")
LOG_MIN_HZ = 20.0
WARPED_ROWS = 768  # display rows of the log and mel axes


def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


class FreqScale:
    """One frequency axis for a grid of ``bins`` STFT bins at sample rate ``sr``.

    Attributes
    ----------
    name : "linear", "log" or "mel"
    u_min, u_max : display range (the image spans it)
    rows : number of display rows
    """

    def __init__(self, name: str, bins: int, sr: int) -> None:
        if name not in SCALES:
            raise ParameterError(f"frequency scale {name!r} is not one of {', '.join(SCALES)}")
        self.name = name
        self.bins = int(bins)
        self.sr = int(sr)
        self.df = (sr / 2.0) / (self.bins - 1)  # Hz per bin
        self.nyquist = sr / 2.0
        if name == "linear":
            self.rows = self.bins
            self.u_min, self.u_max = -0.5 * self.df, (self.bins - 0.5) * self.df
        else:
            self.rows = WARPED_ROWS
            self.f_lo = min(max(LOG_MIN_HZ, self.df), self.nyquist / 4)
            self.u_min = float(self.to_u(self.f_lo if name == "log" else 0.0))
            self.u_max = float(self.to_u(self.nyquist))

    # -- coordinates ----------------------------------------------------------------
    def to_u(self, f):
        """Display coordinate of frequency ``f`` (Hz); arrays welcome."""
        f = np.asarray(f, dtype=np.float64)
        if self.name == "linear":
            return f
        if self.name == "log":
            return np.log2(np.maximum(f, self.f_lo * 0.5))
        return hz_to_mel(np.maximum(f, 0.0))

    def to_hz(self, u):
        """Frequency (Hz) of display coordinate ``u``."""
        u = np.asarray(u, dtype=np.float64)
        if self.name == "linear":
            return u
        if self.name == "log":
            return 2.0 ** u
        return mel_to_hz(u)

    @cached_property
    def bin_u(self) -> np.ndarray:
        """Display coordinate of each bin centre, float64 (bins,)."""
        return self.to_u(np.arange(self.bins) * self.df)

    def row_u(self) -> np.ndarray:
        """Display coordinate of each row centre, float64 (rows,)."""
        du = (self.u_max - self.u_min) / self.rows
        return self.u_min + (np.arange(self.rows) + 0.5) * du

    def bin_range(self, f0: float, f1: float) -> tuple:
        """Bins whose centres lie in [f0, f1] Hz as a half-open (b0, b1); the nearest bin
        when the band is narrower than a bin."""
        lo, hi = sorted((float(f0), float(f1)))
        b0 = int(np.ceil(lo / self.df - 1e-9))
        b1 = int(np.floor(hi / self.df + 1e-9)) + 1
        if b1 <= b0:
            b0 = int(np.clip(round(0.5 * (lo + hi) / self.df), 0, self.bins - 1))
            b1 = b0 + 1
        return max(0, b0), min(self.bins, b1)

    # -- resampling -------------------------------------------------------------------
    @cached_property
    def _plan(self):
        if self.name == "linear":
            return None
        du = (self.u_max - self.u_min) / self.rows
        edges_hz = self.to_hz(self.u_min + np.arange(self.rows + 1) * du)
        # The first bin whose centre is at or above each row edge.
        first = np.clip(np.ceil(edges_hz / self.df - 1e-9).astype(np.int64), 0, self.bins)
        wide = first[1:] > first[:-1]  # the row holds at least one bin centre
        # Rows are monotone in width; from the first wide row upwards every row is wide.
        split = int(np.argmax(wide)) if wide.any() else self.rows
        if wide.any() and not wide[split:].all():
            split = self.rows  # should not happen for monotone axes; stay safe
        pos = self.to_hz(self.row_u()[:split]) / self.df
        lo = np.clip(np.floor(pos).astype(np.int64), 0, self.bins - 2)
        frac = np.clip(pos - lo, 0.0, 1.0).astype(np.float32)
        starts = first[split:self.rows]
        return split, lo, frac, starts

    @cached_property
    def _row_bins(self):
        """First and last bin each display row reads, int64 (rows,) each."""
        if self.name == "linear":
            r = np.arange(self.rows)
            return r, r
        split, lo, _, starts = self._plan
        ends = np.r_[starts[1:], self.bins] - 1
        return np.r_[lo, starts], np.r_[lo + 1, np.maximum(ends, starts)]

    def rows_for_bins(self, b0: int, b1: int) -> tuple:
        """Display rows [r0, r1) that read any bin in [b0, b1) (empty range if none)."""
        first, last = self._row_bins
        hit = np.flatnonzero((last >= b0) & (first < b1))
        if hit.size == 0:
            return 0, 0
        return int(hit[0]), int(hit[-1]) + 1

    def resample(self, image: np.ndarray, rows: Optional[tuple] = None) -> np.ndarray:
        """Bins → display rows: ``image`` (bins, cols) → (rows, cols) float32.

        rows : compute only display rows [r0, r1) (returns (r1 - r0, cols))
        """
        r0, r1 = rows if rows is not None else (0, self.rows)
        if self.name == "linear":
            return np.asarray(image[r0:r1], dtype=np.float32)
        split, lo, frac, starts = self._plan
        img = np.asarray(image, dtype=np.float32)
        out = np.empty((r1 - r0, img.shape[1]), dtype=np.float32)
        a, b = min(r0, split), min(r1, split)
        if b > a:
            f = frac[a:b, None]
            out[:b - a] = img[lo[a:b]] * (1.0 - f) + img[lo[a:b] + 1] * f
        a, b = max(r0, split), max(r1, split)
        if b > a:
            seg = starts[a - split:b - split]
            end = starts[b - split] if b < self.rows else self.bins
            out[a - r0:] = np.maximum.reduceat(img[:end], seg, axis=0)
        return out

    # -- ticks ------------------------------------------------------------------------
    def tick_hz(self, u0: float, u1: float, max_ticks: int = 12) -> List[float]:
        """Round frequencies (Hz) to label between display coordinates u0 and u1."""
        f0, f1 = float(self.to_hz(min(u0, u1))), float(self.to_hz(max(u0, u1)))
        if self.name == "linear" or f1 < 4 * max(f0, 1.0):
            step = _nice_step((f1 - f0) / max(1, max_ticks // 2))
            start = max(0.0, np.ceil(f0 / step) * step)
            return [float(v) for v in np.arange(start, f1 + 1e-9, step)]
        ticks = []
        for decade in (1, 10, 100, 1000, 10000, 100000):
            for m in (1, 2, 5):
                v = m * decade
                if f0 <= v <= f1:
                    ticks.append(float(v))
        return ticks


def _nice_step(raw: float) -> float:
    if raw <= 0:
        return 1.0
    mag = 10 ** np.floor(np.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return float(m * mag)
    return float(10 * mag)


def format_hz(f: float) -> str:
    """``440 Hz``, ``1.25 kHz``."""
    f = max(0.0, float(f))  # the lowest bin's edge lies half a bin below 0 Hz
    if f >= 1000:
        return f"{f / 1000:.3g} kHz" if f < 10000 else f"{f / 1000:.1f} kHz"
    return f"{f:.0f} Hz"


def format_time(t: float, precision: int = 3) -> str:
    """``m:ss.mmm`` (or ``h:mm:ss.mmm`` past an hour)."""
    neg = t < 0
    t = abs(t)
    h, rem = divmod(t, 3600)
    m, s = divmod(rem, 60)
    width = 3 + precision if precision else 2
    body = (f"{int(h)}:{int(m):02d}:{s:0{width}.{precision}f}" if h >= 1
            else f"{int(m)}:{s:0{width}.{precision}f}")
    return ("-" if neg else "") + body
