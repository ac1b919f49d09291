"""The paint tools' geometry: which STFT cells a stroke covers, and how strongly.

Numpy only; the view turns mouse positions into view coordinates (time in
seconds, frequency display coordinate ``u`` of a :class:`FreqScale`) and
hands them here. Each function returns a :class:`Patch` — the weights of a
rectangle of cells (bins × frames) — covering only what the stroke touched,
so painting costs the size of the stroke, not of the file.

- brush / eraser: a soft round stamp swept along the drag. The stamp's
  radius is given in view units per axis (a circle on screen); the weight at
  a cell is ``strength · profile(d)`` with ``d`` the distance from the cell
  to the drag segment, normalised by the radius, and ``profile`` flat up to
  ``hardness`` then a raised-cosine fall to zero at the rim.
- harmonic brush: the same swept stamp at the fundamental under the cursor
  and at every harmonic k·f0 up to Nyquist (or the first N: upper harmonics a
  noise covers would paint the noise as the target). A harmonic's half-width grows with
  k (a vibrato of a given depth in cents moves harmonic k by k times as many
  Hz), is at least two bins (the Hann window's main lobe) and at most 0.45·f0
  (so neighbouring harmonics stay apart).
- rectangle: every cell whose centre lies in the time × frequency box.
- lasso: every cell whose centre lies inside the polygon (even–odd rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from demixstudio.gui.freq_scale import FreqScale

HARDNESS = 0.5


@dataclass
class Patch:
    """Weights of bins [f0, f0+h) × frames [t0, t0+w): float32 (h, w)."""

    f0: int
    t0: int
    weights: np.ndarray

    @property
    def bins(self) -> slice:
        return slice(self.f0, self.f0 + self.weights.shape[0])

    @property
    def frames(self) -> slice:
        return slice(self.t0, self.t0 + self.weights.shape[1])


@dataclass
class Grid:
    """The STFT grid as the view sees it."""

    scale: FreqScale
    hop_s: float   # seconds per frame
    frames: int

    @property
    def bins(self) -> int:
        return self.scale.bins

    def frame_of(self, t: float) -> float:
        return t / self.hop_s

    def frame_range(self, t0: float, t1: float) -> Tuple[int, int]:
        """Frames whose centres lie in [t0, t1] as a half-open range (at least the nearest)."""
        lo, hi = sorted((t0, t1))
        a = int(np.ceil(lo / self.hop_s - 1e-9))
        b = int(np.floor(hi / self.hop_s + 1e-9)) + 1
        if b <= a:
            a = int(round(0.5 * (lo + hi) / self.hop_s))
            b = a + 1
        return max(0, a), min(self.frames, b)

    def bin_range_u(self, u0: float, u1: float) -> Tuple[int, int]:
        lo, hi = sorted((u0, u1))
        return self.scale.bin_range(float(self.scale.to_hz(lo)), float(self.scale.to_hz(hi)))


def profile(d: np.ndarray, hardness: float = HARDNESS) -> np.ndarray:
    """1 up to ``hardness``, raised-cosine to 0 at 1, 0 beyond; float32."""
    d = np.asarray(d, dtype=np.float32)
    x = np.clip((d - hardness) / max(1e-6, 1.0 - hardness), 0.0, 1.0)
    return (0.5 + 0.5 * np.cos(np.pi * x)).astype(np.float32) * (d < 1.0)


def _segment_distance(px, py, ax, ay, bx, by):
    """Distance from points (px, py) to the segment a–b (broadcasting)."""
    dx, dy = bx - ax, by - ay
    L2 = dx * dx + dy * dy
    if L2 <= 0:
        return np.hypot(px - ax, py - ay)
    s = np.clip(((px - ax) * dx + (py - ay) * dy) / L2, 0.0, 1.0)
    return np.hypot(px - (ax + s * dx), py - (ay + s * dy))


def brush_patch(grid: Grid, p0: Tuple[float, float], p1: Tuple[float, float],
                rx: float, ry: float, strength: float,
                hardness: float = HARDNESS) -> Optional[Patch]:
    """The soft round stamp swept from p0 to p1 ((t s, u) each); radius rx s, ry u-units."""
    (t0, u0), (t1, u1) = p0, p1
    fa, fb = grid.frame_range(min(t0, t1) - rx, max(t0, t1) + rx)
    ba, bb = grid.bin_range_u(min(u0, u1) - ry, max(u0, u1) + ry)
    if fb <= fa or bb <= ba:
        return None
    tt = np.arange(fa, fb) * grid.hop_s
    uu = grid.scale.bin_u[ba:bb]
    d = _segment_distance(tt[None, :] / rx, uu[:, None] / ry, t0 / rx, u0 / ry, t1 / rx, u1 / ry)
    w = strength * profile(d, hardness)
    if not w.any():
        # A stamp smaller than one cell still marks the cell under its centre.
        w = np.zeros_like(w)
        ti = int(np.clip(round(t1 / grid.hop_s), fa, fb - 1)) - fa
        bi = int(np.argmin(np.abs(uu - u1)))
        w[bi, ti] = strength
    return Patch(ba, fa, w.astype(np.float32))


def harmonic_half_widths(f0: np.ndarray, k: np.ndarray, hw1: float, df: float) -> np.ndarray:
    """Half-width in Hz of harmonic ``k`` of ``f0`` for a brush of half-width ``hw1`` Hz."""
    return np.minimum(np.maximum(k * hw1, 2.0 * df), 0.45 * f0)


def harmonic_patch(grid: Grid, p0: Tuple[float, float], p1: Tuple[float, float],
                   rx: float, hw1: float, strength: float,
                   hardness: float = HARDNESS, harmonics: int = 0) -> Optional[Patch]:
    """f0 and its harmonics swept from p0 to p1 ((t s, f0 Hz) each).

    rx : time radius (s); hw1 : half-width (Hz) at the fundamental; harmonics :
    paint the first this many (f0 is the first), 0 = all of them. Covers every
    bin up to Nyquist (or to the last harmonic's rim) over the stroke's frames.
    """
    (t0, f_a), (t1, f_b) = p0, p1
    if t1 < t0:
        (t0, f_a), (t1, f_b) = (t1, f_b), (t0, f_a)
    df = grid.scale.df
    lowest = 2.0 * df  # below two bins there are no harmonics to speak of
    f_a, f_b = max(f_a, lowest), max(f_b, lowest)
    fa, fb = grid.frame_range(t0 - rx, t1 + rx)
    if fb <= fa:
        return None
    tt = np.arange(fa, fb) * grid.hop_s
    # Distance in time beyond the segment's ends, normalised by the radius.
    dt = np.maximum(0.0, np.maximum(t0 - tt, tt - t1)) / rx
    s = np.clip((tt - t0) / (t1 - t0), 0.0, 1.0) if t1 > t0 else np.zeros_like(tt)
    f0t = f_a + s * (f_b - f_a)  # the fundamental under the drag, per frame
    freqs = np.arange(grid.bins) * df
    k = np.maximum(1.0, np.round(freqs[:, None] / f0t[None, :]))  # nearest harmonic per cell
    hw = harmonic_half_widths(f0t[None, :], k, hw1, df)
    dfreq = np.abs(freqs[:, None] - k * f0t[None, :]) / hw
    d = np.hypot(dfreq, dt[None, :])
    w = strength * profile(d, hardness)
    if harmonics > 0:
        w[k > harmonics] = 0.0
    rows = np.flatnonzero(w.any(axis=1))
    if rows.size == 0:
        return None
    return Patch(int(rows[0]), fa, w[rows[0]:rows[-1] + 1].astype(np.float32))


def rect_patch(grid: Grid, t0: float, t1: float, f0_hz: float, f1_hz: float,
               strength: float) -> Optional[Patch]:
    """Cells whose centres lie in [t0, t1] s × [f0, f1] Hz, at ``strength``."""
    fa, fb = grid.frame_range(t0, t1)
    ba, bb = grid.scale.bin_range(f0_hz, f1_hz)
    if fb <= fa or bb <= ba:
        return None
    return Patch(ba, fa, np.full((bb - ba, fb - fa), strength, dtype=np.float32))


def lasso_patch(grid: Grid, polygon: Sequence[Tuple[float, float]],
                strength: float) -> Optional[Patch]:
    """Cells whose centres lie inside ``polygon`` [(t s, u), ...] (even–odd rule)."""
    pts = np.asarray(polygon, dtype=np.float64)
    if pts.ndim != 2 or len(pts) < 3:
        return None
    fa, fb = grid.frame_range(pts[:, 0].min(), pts[:, 0].max())
    ba, bb = grid.bin_range_u(pts[:, 1].min(), pts[:, 1].max())
    if fb <= fa or bb <= ba:
        return None
    tt = np.arange(fa, fb) * grid.hop_s
    uu = grid.scale.bin_u[ba:bb]
    xa, ya = pts[:, 0], pts[:, 1]
    xb, yb = np.roll(xa, -1), np.roll(ya, -1)
    # For each column, where each edge crosses it (NaN where it does not).
    lo, hi = np.minimum(xa, xb), np.maximum(xa, xb)
    cross = (tt[:, None] >= lo[None]) & (tt[:, None] < hi[None])  # (cols, edges)
    with np.errstate(divide="ignore", invalid="ignore"):
        yc = ya[None] + (tt[:, None] - xa[None]) * (yb - ya)[None] / (xb - xa)[None]
    yc = np.where(cross, yc, np.nan)
    inside = np.zeros((bb - ba, fb - fa), dtype=bool)
    step = max(1, 4_000_000 // max(1, (bb - ba) * len(pts)))
    for c in range(0, fb - fa, step):
        block = yc[c:c + step]  # (n, edges)
        count = (block[None, :, :] > uu[:, None, None]).sum(axis=2)  # NaN compares False
        inside[:, c:c + step] = (count % 2) == 1
    if not inside.any():
        return None
    return Patch(ba, fa, np.where(inside, np.float32(strength), np.float32(0.0)))


def combine(old: np.ndarray, w: np.ndarray, mode: str) -> np.ndarray:
    """New weights: "paint" keeps the larger (repeated passes don't pile up beyond the
    strength), "erase" scales by (1 − w)."""
    if mode == "erase":
        return (old * (1.0 - w)).astype(np.float32)
    return np.maximum(old, w).astype(np.float32)
