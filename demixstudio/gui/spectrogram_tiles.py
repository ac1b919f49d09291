"""Spectrogram tiles at several levels of detail, computed in background threads.

A *level* ``k`` shows one column per ``k`` STFT frames; ``k = 1`` is the full
resolution. A tile is ``TILE_COLS`` columns of one level: tile ``j`` of level
``k`` covers frames ``[j·TILE_COLS·k, (j+1)·TILE_COLS·k)``. A column of a
coarse level is the maximum power over up to ``SAMPLES_PER_COL`` frames spread
evenly through its ``k`` frames (a max-pooled, decimated STFT), so a whole
hour needs only a few thousand FFTs and transients stay visible.

The coarsest level, the *overview*, has at most ``OVERVIEW_COLS`` columns for
the whole file; it is computed first and kept. Finer tiles are computed for
what the view shows, in a QThreadPool, and kept in an LRU cache. The same
jobs also resample a tile onto the display rows of the current frequency
axis (``FreqScale.resample``), so the GUI thread only hands finished arrays
to pyqtgraph.

Every tile is computed straight from the audio in the program's STFT
convention (``audio/stft.py``): frame ``t`` is centred on sample ``t·hop``
with a periodic Hann window, so a level-1 tile equals the same columns of
``stft()``. Values are power in dB relative to a full-scale sine (float16).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import scipy.fft
from PySide6.QtCore import QObject, QRunnable, QThread, QThreadPool, Signal

from demixstudio.audio.stft import StftConfig
from demixstudio.gui.freq_scale import FreqScale

TILE_COLS = 512
OVERVIEW_COLS = 4096
SAMPLES_PER_COL = 4
FRAMES_PER_FFT_BLOCK = 128  # bounds temporaries and keeps each numpy call short
FLOOR_DB = -200.0

TileKey = Tuple[int, int, int]  # (source generation, level k, tile index j)
DisplayKey = Tuple[int, int, int, str]  # TileKey + frequency scale name


@dataclass(frozen=True)
class SourceSpec:
    """What to draw: the mixture, or a layer's content, as immutable arrays.

    kind : "mixture", "mask" (mask × mixture STFT), "waveform" (its own STFT)
        or "residual" (mixture STFT minus every other layer's)
    mask : float32 (channels or 1, bins, frames) for "mask"
    waveform : float32 (channels, samples) for "waveform"
    others : for "residual", each other layer as ("mask", array) or ("waveform", array)
    """

    mixture: np.ndarray
    cfg: StftConfig
    sr: int
    kind: str = "mixture"
    mask: Optional[np.ndarray] = None
    waveform: Optional[np.ndarray] = None
    others: Tuple[Tuple[str, np.ndarray], ...] = field(default_factory=tuple)

    @property
    def frames(self) -> int:
        return self.cfg.frames(self.mixture.shape[1])


def overview_level(frames: int) -> int:
    """The overview's k: the smallest power of two giving at most OVERVIEW_COLS columns."""
    k = 1
    while -(-frames // k) > OVERVIEW_COLS:
        k *= 2
    return k


def detail_levels(frames: int) -> List[int]:
    """Every level, finest first: 1, 4, 16, ... below the overview, then the overview."""
    k_ov = overview_level(frames)
    levels = []
    k = 1
    while k < k_ov:
        levels.append(k)
        k *= 4
    return levels + [k_ov]


def choose_level(levels: List[int], visible_frames: float, width_px: float) -> int:
    """The coarsest level that still gives about one column per screen pixel."""
    best = levels[0]
    for k in levels:
        if visible_frames / k >= 0.75 * max(width_px, 1.0):
            best = k
    return best


def level_cols(frames: int, k: int) -> int:
    return -(-frames // k)


def tile_count(frames: int, k: int) -> int:
    return -(-level_cols(frames, k) // TILE_COLS)


def tile_cols(frames: int, k: int, j: int) -> Tuple[int, int]:
    """Column range [c0, c1) of tile j at level k."""
    c0 = j * TILE_COLS
    return c0, min(c0 + TILE_COLS, level_cols(frames, k))


def _sampled_frames(k: int, c0: int, c1: int, frames: int) -> np.ndarray:
    """Frame indices to compute for columns [c0, c1): int64 (cols, P)."""
    p = min(k, SAMPLES_PER_COL)
    offsets = (np.arange(p) * k) // p + (k // p) // 2
    idx = np.arange(c0, c1)[:, None] * k + offsets[None, :]
    return np.minimum(idx, frames - 1)


def spectra_at(x: np.ndarray, idx: np.ndarray, cfg: StftConfig) -> np.ndarray:
    """STFT frames ``idx`` of ``x`` in the program's convention: complex64 (C, bins, n).

    x : float32 (channels, samples); idx : int (n,) frame indices
    """
    c, n = x.shape
    half = cfg.n_fft // 2
    pos = idx[:, None] * cfg.hop - half + np.arange(cfg.n_fft)[None, :]
    inside = (pos >= 0) & (pos < n)
    seg = np.take(x, np.clip(pos, 0, n - 1), axis=1)  # (c, n_idx, n_fft)
    seg *= inside[None] * cfg.window
    spec = scipy.fft.rfft(seg, axis=-1)
    return spec.transpose(0, 2, 1).astype(np.complex64, copy=False)


def _source_spectra(spec: SourceSpec, idx: np.ndarray) -> np.ndarray:
    """The shown source's STFT at frames ``idx``: complex64 (C, bins, n)."""
    if spec.kind == "waveform":
        return spectra_at(spec.waveform, idx, spec.cfg)
    X = spectra_at(spec.mixture, idx, spec.cfg)
    if spec.kind == "mask":
        return X * spec.mask[:, :, idx]
    if spec.kind == "residual":
        out = X.copy()
        for kind, arr in spec.others:
            if kind == "mask":
                out -= X * arr[:, :, idx]
            else:
                out -= spectra_at(arr, idx, spec.cfg)
        return out
    return X


def db_reference(cfg: StftConfig) -> float:
    """Power of a full-scale sine's peak bin: (sum(window) / 2)²."""
    return float((cfg.window.sum() / 2.0) ** 2)


def compute_tile(spec: SourceSpec, k: int, j: int,
                 cancelled: Callable[[], bool] = lambda: False) -> Optional[np.ndarray]:
    """dB image of tile ``j`` at level ``k``: float16 (bins, cols); None if cancelled.

    Power is the mean over channels of |S|²; a coarse column keeps the largest
    power of its sampled frames.
    """
    frames = spec.frames
    c0, c1 = tile_cols(frames, k, j)
    idx = _sampled_frames(k, c0, c1, frames)  # (cols, P)
    cols, p = idx.shape
    out = np.empty((spec.cfg.bins, cols), dtype=np.float16)
    ref = db_reference(spec.cfg)
    step = max(1, FRAMES_PER_FFT_BLOCK // p)
    for a in range(0, cols, step):
        if cancelled():
            return None
        b = min(cols, a + step)
        flat = idx[a:b].reshape(-1)
        S = _source_spectra(spec, flat)
        power = (S.real ** 2 + S.imag ** 2).mean(axis=0)  # (bins, (b-a)*p)
        power = power.reshape(power.shape[0], b - a, p).max(axis=2)
        db = 10.0 * np.log10(power / ref + 1e-20)
        out[:, a:b] = np.maximum(db, FLOOR_DB)
    return out


# --------------------------------------------------------------------------
# Background computation
# --------------------------------------------------------------------------


class _Bridge(QObject):
    """Carries results from pool threads to the GUI thread (queued signals)."""

    done = Signal(object, object, object)  # display key, float16 dB (bins), float32 display
    dropped = Signal(object)               # display key: cancelled, no image
    failed = Signal(object, str)           # display key, message


class _TileJob(QRunnable):
    """Compute a tile (unless ``db`` is given) and resample it for ``scale``."""

    def __init__(self, loader: "TileLoader", dkey: DisplayKey, spec: SourceSpec,
                 scale: FreqScale, db: Optional[np.ndarray]) -> None:
        super().__init__()
        self.loader = loader
        self.dkey = dkey
        self.spec = spec
        self.scale = scale
        self.db = db

    def run(self) -> None:  # pool thread
        loader, dkey = self.loader, self.dkey
        try:
            db = self.db
            if not loader.is_wanted(dkey):
                db = None
            elif db is None:
                db = compute_tile(self.spec, dkey[1], dkey[2],
                                  cancelled=lambda: not loader.is_wanted(dkey))
            if db is None:
                loader.emit_dropped(dkey)
                return
            disp = self.scale.resample(db.astype(np.float32))
            loader.emit_done(dkey, db, np.ascontiguousarray(disp, dtype=np.float32))
        except Exception as exc:  # a tile must never take the pool thread down
            loader.emit_failed(dkey, f"{type(exc).__name__}: {exc}")


class TileLoader(QObject):
    """Schedules tile jobs, keeps the caches, and reports finished tiles.

    Two caches: dB tiles on STFT bins, float16, by TileKey (the overview's
    pinned, the rest LRU within ``max_bytes``), and display images (resampled
    to the current frequency axis, float32) by DisplayKey, only for what the
    view shows. ``tileReady(display_key)`` is emitted on the GUI thread when a
    display image is ready. ``want(requests)`` says which display images the
    view needs now; queued jobs for others are dropped before they start and
    stop between FFT blocks if already running.
    """

    tileReady = Signal(object)

    def __init__(self, parent: Optional[QObject] = None, *,
                 max_bytes: int = 192 << 20, threads: Optional[int] = None) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        n = threads if threads is not None else max(1, min(4, QThread.idealThreadCount() - 1))
        self.pool.setMaxThreadCount(n)
        self._bridge = _Bridge()
        self._bridge.done.connect(self._on_done)
        self._bridge.dropped.connect(self._on_dropped)
        self._bridge.failed.connect(self._on_failed)
        self._cache: "OrderedDict[TileKey, np.ndarray]" = OrderedDict()
        self._pinned: Dict[TileKey, np.ndarray] = {}
        self._pin: set = set()
        self._display: Dict[DisplayKey, np.ndarray] = {}
        self._pending: set = set()
        self._wanted: frozenset = frozenset()
        self._alive = True
        self.max_bytes = max_bytes
        self.errors: List[str] = []

    # -- thread-side ----------------------------------------------------------------
    def is_wanted(self, dkey: DisplayKey) -> bool:
        return self._alive and dkey in self._wanted

    def _emit(self, sig, *args) -> None:
        if self._alive:
            try:
                sig.emit(*args)
            except RuntimeError:  # the bridge went away with the view
                pass

    def emit_done(self, dkey: DisplayKey, db: np.ndarray, disp: np.ndarray) -> None:
        self._emit(self._bridge.done, dkey, db, disp)

    def emit_dropped(self, dkey: DisplayKey) -> None:
        self._emit(self._bridge.dropped, dkey)

    def emit_failed(self, dkey: DisplayKey, msg: str) -> None:
        self._emit(self._bridge.failed, dkey, msg)

    # -- GUI-side -------------------------------------------------------------------
    def get(self, key: TileKey) -> Optional[np.ndarray]:
        """The dB tile (bins, cols) float16, if cached."""
        if key in self._pinned:
            return self._pinned[key]
        img = self._cache.get(key)
        if img is not None:
            self._cache.move_to_end(key)
        return img

    def display(self, dkey: DisplayKey) -> Optional[np.ndarray]:
        """The display image (rows, cols) float32, if ready."""
        return self._display.get(dkey)

    def has(self, key: TileKey) -> bool:
        return key in self._pinned or key in self._cache

    def pending(self) -> int:
        return len(self._pending)

    def want(self, requests: List[Tuple[DisplayKey, SourceSpec, FreqScale, int]],
             pin: set) -> None:
        """Make exactly these display images wanted; start jobs for missing ones.

        requests : (display key, spec, scale, priority) — higher priority starts first
        pin : tile keys kept out of the LRU (the overview)
        """
        self._pin = set(pin)
        for key in [k for k in self._pinned if k not in self._pin]:
            self._cache[key] = self._pinned.pop(key)
        for key in self._pin:
            if key in self._cache:
                self._pinned[key] = self._cache.pop(key)
        self._wanted = frozenset(d for d, _, _, _ in requests)
        # Display images are only kept for what is wanted.
        for dkey in [d for d in self._display if d not in self._wanted]:
            del self._display[dkey]
        for dkey, spec, scale, prio in requests:
            if dkey in self._display or dkey in self._pending:
                continue
            self._pending.add(dkey)
            self.pool.start(_TileJob(self, dkey, spec, scale, self.get(dkey[:3])), prio)
        self._trim()

    def forget_generation(self, gen: int) -> None:
        """Drop every cached tile of a source generation (its content changed)."""
        for store in (self._cache, self._pinned, self._display):
            for key in [k for k in store if k[0] == gen]:
                del store[key]

    def _on_done(self, dkey: DisplayKey, db: np.ndarray, disp: np.ndarray) -> None:
        self._pending.discard(dkey)
        if not self._alive:
            return
        key = dkey[:3]
        if not self.has(key):
            if key in self._pin:
                self._pinned[key] = db
            else:
                self._cache[key] = db
                self._trim()
        if dkey in self._wanted:
            self._display[dkey] = disp
            self.tileReady.emit(dkey)

    def _on_dropped(self, dkey: DisplayKey) -> None:
        self._pending.discard(dkey)

    def _on_failed(self, dkey: DisplayKey, msg: str) -> None:
        self._pending.discard(dkey)
        self.errors.append(f"tile {dkey}: {msg}")

    def _trim(self) -> None:
        total = sum(a.nbytes for a in self._cache.values())
        while total > self.max_bytes and len(self._cache) > 1:
            _, arr = self._cache.popitem(last=False)
            total -= arr.nbytes

    def nbytes(self) -> int:
        return (sum(a.nbytes for a in self._cache.values())
                + sum(a.nbytes for a in self._pinned.values())
                + sum(a.nbytes for a in self._display.values()))

    def shutdown(self) -> None:
        """Stop handing out work and wait for running jobs (they stop at the next block)."""
        self._wanted = frozenset()
        self.pool.clear()
        self.pool.waitForDone(5000)
        self._alive = False
