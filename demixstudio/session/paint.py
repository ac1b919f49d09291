"""Painted time–frequency weights per target (no Qt).

The paint is what the user brushed onto the spectrogram: for each *target*
(a name such as "voice" or "birds") a colour and a weight mask in [0, 1] on
the session's STFT grid, shape (bins, frames). Methods read it as
:class:`~demixstudio.separation.base.PaintHint`; selection operations
(extract, remove) use it as a soft time–frequency selection.

Masks are stored in tiles of ``TILE_BINS × TILE_FRAMES`` float32, allocated
on first paint and dropped again when erased to zero, so an hour-long file
with a few small strokes costs a few hundred kilobytes rather than the
1.3 GB a dense (1025, 310 000) mask would take. Values are stored exactly as
written (no quantisation), so project files round-trip them bit for bit.

Undo works on tiles: a :class:`StrokeRecorder` keeps the original of every
tile a stroke touches the first time it touches it; ``diff()`` gives the
before/after pairs one undoable command needs, never a whole mask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from demixstudio.audio.stft import StftConfig
from demixstudio.errors import ParameterError
from demixstudio.separation.base import PaintHint
from demixstudio.session.commands import Command

if TYPE_CHECKING:  # pragma: no cover - typing only
    from demixstudio.session.session import Session

TILE_BINS = 128
TILE_FRAMES = 256

# Distinct from each other and from the layer palette's first entries, readable
# over a dark spectrogram colour map. The first ones are cool hues: the default
# colour maps (magma, inferno) run through purple, red, orange and yellow, so a
# pink or orange stroke over them is hard to see.
TARGET_PALETTE = ("#00e5ff", "#76ff03", "#2979ff", "#1de9b6", "#c6ff00", "#ff4081",
                  "#d500f9", "#ffea00", "#ff9100", "#f50057")

TileKey = Tuple[int, int]  # (bin tile index, frame tile index)
# on_change(target, (bin0, bin1), (frame0, frame1)): what changed, half-open ranges.
ChangeFn = Callable[[str, Tuple[int, int], Tuple[int, int]], None]


def check_colour(value: str) -> str:
    """``value`` as a lower-case ``#rrggbb`` string; ParameterError otherwise."""
    v = str(value)
    if len(v) != 7 or v[0] != "#" or any(ch not in "0123456789abcdefABCDEF" for ch in v[1:]):
        raise ParameterError(f"colour {value!r} must look like #rrggbb")
    return v.lower()


class _Target:
    __slots__ = ("name", "colour", "tiles")

    def __init__(self, name: str, colour: str) -> None:
        self.name = name
        self.colour = colour
        self.tiles: Dict[TileKey, np.ndarray] = {}


class StrokeRecorder:
    """The original content of every tile one stroke touched (for one undo step)."""

    def __init__(self, store: "PaintStore", target: str) -> None:
        self.store = store
        self.target = target
        self.before: Dict[TileKey, Optional[np.ndarray]] = {}

    def note(self, key: TileKey, tile: Optional[np.ndarray]) -> None:
        """Remember ``tile`` (None = not allocated) unless this key was seen already."""
        if key not in self.before:
            self.before[key] = None if tile is None else tile.copy()

    def diff(self) -> Dict[TileKey, Tuple[Optional[np.ndarray], Optional[np.ndarray]]]:
        """``{key: (before, after)}`` for the tiles that really changed (None = empty)."""
        out = {}
        tiles = self.store._target(self.target).tiles
        for key, before in self.before.items():
            after = tiles.get(key)
            if before is None and after is None:
                continue
            if before is not None and after is not None and np.array_equal(before, after):
                continue
            out[key] = (before, None if after is None else after.copy())
        return out


class PaintStore:
    """Weight masks per target on one STFT grid.

    Parameters
    ----------
    cfg : the session's StftConfig
    sr : sample rate in Hz
    samples : length of the session's audio; frames = ``cfg.frames(samples)``
    on_change : called as ``on_change(target, (b0, b1), (t0, t1))`` after every
        change of a target's weights (and with empty ranges when a target is
        added, or the full grid when one is removed or recoloured)
    """

    def __init__(self, cfg: StftConfig, sr: int, samples: int,
                 on_change: Optional[ChangeFn] = None) -> None:
        self.cfg = cfg
        self.sr = int(sr)
        self.samples = int(samples)
        self.bins = cfg.bins
        self.frames = cfg.frames(self.samples)
        self._targets: Dict[str, _Target] = {}
        self._on_change = on_change

    # -- targets ------------------------------------------------------------------
    def targets(self) -> List[str]:
        """Target names in the order they were added."""
        return list(self._targets)

    def __contains__(self, name: object) -> bool:
        return name in self._targets

    def _target(self, name: str) -> _Target:
        try:
            return self._targets[name]
        except KeyError:
            have = ", ".join(repr(n) for n in self._targets) or "none"
            raise ParameterError(f"no paint target {name!r}; targets: {have}") from None

    def add_target(self, name: str, colour: Optional[str] = None) -> str:
        """Create target ``name`` (no-op if it exists; a given colour then recolours it)."""
        name = str(name).strip()
        if not name:
            raise ParameterError("a paint target name must not be empty")
        if name in self._targets:
            if colour is not None:
                self.set_colour(name, colour)
            return name
        if colour is None:
            used = {t.colour for t in self._targets.values()}
            colour = next((c for c in TARGET_PALETTE if c not in used),
                          TARGET_PALETTE[len(self._targets) % len(TARGET_PALETTE)])
        self._targets[name] = _Target(name, check_colour(colour))
        self._changed(name, (0, 0), (0, 0))
        return name

    def remove_target(self, name: str) -> None:
        """Forget a target and its weights."""
        self._target(name)
        del self._targets[name]
        self._changed(name, (0, self.bins), (0, self.frames))

    def colour(self, name: str) -> str:
        return self._target(name).colour

    def set_colour(self, name: str, colour: str) -> None:
        self._target(name).colour = check_colour(colour)
        self._changed(name, (0, self.bins), (0, self.frames))

    # -- reading --------------------------------------------------------------------
    def is_empty(self, name: str) -> bool:
        """True if target ``name`` has no weight above zero anywhere."""
        return not self._target(name).tiles

    def tile_keys(self, name: str) -> List[TileKey]:
        """The allocated tiles of a target, sorted."""
        return sorted(self._target(name).tiles)

    def tile(self, name: str, key: TileKey) -> Optional[np.ndarray]:
        """The stored tile (TILE_BINS, TILE_FRAMES) float32, or None; do not modify it."""
        return self._target(name).tiles.get(key)

    def region(self, name: str, f0: int, f1: int, t0: int, t1: int) -> np.ndarray:
        """Weights of bins [f0, f1) × frames [t0, t1): float32 (f1-f0, t1-t0), a copy.

        Ranges may extend past the grid; cells outside it read as zero.
        """
        f0, f1, t0, t1 = int(f0), int(f1), int(t0), int(t1)
        if f1 < f0 or t1 < t0:
            raise ParameterError(f"empty or reversed region bins [{f0}, {f1}) frames [{t0}, {t1})")
        out = np.zeros((f1 - f0, t1 - t0), dtype=np.float32)
        tiles = self._target(name).tiles
        if not tiles:
            return out
        for (bi, ti), (fs, ts), (os_f, os_t) in self._overlaps(f0, f1, t0, t1):
            tile = tiles.get((bi, ti))
            if tile is not None:
                out[os_f, os_t] = tile[fs, ts]
        return out

    def mask(self, name: str) -> np.ndarray:
        """The whole weight mask: float32 (bins, frames), a dense copy."""
        return self.region(name, 0, self.bins, 0, self.frames)

    def bounds(self, name: str) -> Optional[Tuple[int, int, int, int]]:
        """``(f0, f1, t0, t1)`` enclosing every non-zero weight, or None when empty."""
        tiles = self._target(name).tiles
        if not tiles:
            return None
        f0 = t0 = None
        f1 = t1 = 0
        for (bi, ti), tile in tiles.items():
            rows = np.flatnonzero(tile.any(axis=1))
            cols = np.flatnonzero(tile.any(axis=0))
            lo_f, hi_f = bi * TILE_BINS + rows[0], bi * TILE_BINS + rows[-1] + 1
            lo_t, hi_t = ti * TILE_FRAMES + cols[0], ti * TILE_FRAMES + cols[-1] + 1
            f0 = lo_f if f0 is None else min(f0, lo_f)
            t0 = lo_t if t0 is None else min(t0, lo_t)
            f1, t1 = max(f1, hi_f), max(t1, hi_t)
        return int(f0), int(f1), int(t0), int(t1)

    def pooled(self, name: str, k: int, c0: int, c1: int) -> np.ndarray:
        """Max of the weights over groups of ``k`` frames: float32 (bins, c1-c0).

        Column ``c`` covers frames ``[c*k, (c+1)*k)``; a zoomed-out overlay uses
        this so a thin stroke stays visible. Reads only allocated tiles.
        """
        k, c0, c1 = int(k), int(c0), int(c1)
        out = np.zeros((self.bins, max(0, c1 - c0)), dtype=np.float32)
        tiles = self._target(name).tiles
        if not tiles or c1 <= c0:
            return out
        if k == 1:
            return self.region(name, 0, self.bins, c0, c1)
        t_lo, t_hi = c0 * k, c1 * k
        for (bi, ti), tile in tiles.items():
            fs = ti * TILE_FRAMES
            if fs + TILE_FRAMES <= t_lo or fs >= t_hi:
                continue
            a, b = max(fs, t_lo), min(fs + TILE_FRAMES, t_hi)
            cols = np.arange(a, b) // k - c0
            starts = np.flatnonzero(np.r_[True, cols[1:] != cols[:-1]])
            red = np.maximum.reduceat(tile[:, a - fs:b - fs], starts, axis=1)
            rows = slice(bi * TILE_BINS, min(self.bins, (bi + 1) * TILE_BINS))
            n_rows = rows.stop - rows.start
            dst = out[rows, cols[starts]]
            out[rows, cols[starts]] = np.maximum(dst, red[:n_rows])
        return out

    def to_hints(self) -> Dict[str, PaintHint]:
        """A PaintHint per non-empty target, on the session's own grid.

        The mask is cropped to the painted bounds plus one zero cell on each
        side (so interpolating onto another grid gives zero outside, exactly as
        the full mask would); ``times`` and ``freqs`` are those cells' centres.
        """
        out: Dict[str, PaintHint] = {}
        times = self.cfg.frame_times(self.samples, self.sr)
        freqs = self.cfg.bin_freqs(self.sr)
        for name in self._targets:
            b = self.bounds(name)
            if b is None:
                continue
            f0, f1, t0, t1 = max(b[0] - 1, 0), min(b[1] + 1, self.bins), \
                max(b[2] - 1, 0), min(b[3] + 1, self.frames)
            out[name] = PaintHint(mask=self.region(name, f0, f1, t0, t1),
                                  times=times[t0:t1].copy(), freqs=freqs[f0:f1].copy())
        return out

    # -- writing --------------------------------------------------------------------
    def write(self, name: str, f0: int, t0: int, values: np.ndarray,
              recorder: Optional[StrokeRecorder] = None) -> None:
        """Set bins [f0, f0+h) × frames [t0, t0+w) to ``values`` (h, w), clipped to [0, 1].

        Parts outside the grid are ignored. Tiles are allocated on demand and
        freed when they become all zero. ``recorder`` keeps the originals.
        """
        values = np.asarray(values, dtype=np.float32)
        if values.ndim != 2:
            raise ParameterError(f"paint values must be 2-D (bins, frames), got {values.shape}")
        if not np.all(np.isfinite(values)):
            raise ParameterError("paint values must be finite")
        f0, t0 = int(f0), int(t0)
        h, w = values.shape
        # Clip the rectangle to the grid.
        cf0, cf1 = max(f0, 0), min(f0 + h, self.bins)
        ct0, ct1 = max(t0, 0), min(t0 + w, self.frames)
        if cf1 <= cf0 or ct1 <= ct0:
            return
        values = np.clip(values[cf0 - f0:cf1 - f0, ct0 - t0:ct1 - t0], 0.0, 1.0)
        target = self._target(name)
        for key, (fs, ts), (os_f, os_t) in self._overlaps(cf0, cf1, ct0, ct1):
            tile = target.tiles.get(key)
            part = values[os_f, os_t]
            if tile is None and not part.any():
                continue
            if recorder is not None:
                recorder.note(key, tile)
            if tile is None:
                tile = np.zeros((TILE_BINS, TILE_FRAMES), dtype=np.float32)
                target.tiles[key] = tile
            tile[fs, ts] = part
            if not tile.any():
                del target.tiles[key]
        self._changed(name, (cf0, cf1), (ct0, ct1))

    def set_tiles(self, name: str, tiles: Dict[TileKey, Optional[np.ndarray]]) -> None:
        """Replace whole tiles (None removes one); used by undo/redo and project loading."""
        target = self._target(name)
        if not tiles:
            return
        for key, tile in tiles.items():
            self._check_key(key)
            if tile is None or not tile.any():
                target.tiles.pop(key, None)
            else:
                if tile.shape != (TILE_BINS, TILE_FRAMES):
                    raise ParameterError(
                        f"paint tile {key} has shape {tile.shape}; expected "
                        f"{(TILE_BINS, TILE_FRAMES)}")
                target.tiles[key] = np.array(tile, dtype=np.float32)
        bis = [k[0] for k in tiles]
        tis = [k[1] for k in tiles]
        self._changed(name, (min(bis) * TILE_BINS, min(self.bins, (max(bis) + 1) * TILE_BINS)),
                      (min(tis) * TILE_FRAMES, min(self.frames, (max(tis) + 1) * TILE_FRAMES)))

    def recorder(self, name: str) -> StrokeRecorder:
        """A recorder for one stroke on ``name`` (pass it to :meth:`write`)."""
        self._target(name)
        return StrokeRecorder(self, name)

    # -- helpers --------------------------------------------------------------------
    def tile_grid(self) -> Tuple[int, int]:
        """Number of tiles along bins and frames."""
        return -(-self.bins // TILE_BINS), -(-self.frames // TILE_FRAMES)

    def _check_key(self, key: TileKey) -> None:
        nb, nt = self.tile_grid()
        if not (0 <= key[0] < nb and 0 <= key[1] < nt):
            raise ParameterError(f"paint tile {key} lies outside the grid ({nb} × {nt} tiles)")

    def _overlaps(self, f0: int, f1: int, t0: int, t1: int) -> Iterator[tuple]:
        """For each tile meeting [f0, f1) × [t0, t1) within the grid: its key, the
        slices inside the tile and the matching slices of the region."""
        f0c, f1c = max(f0, 0), min(f1, self.bins)
        t0c, t1c = max(t0, 0), min(t1, self.frames)
        if f1c <= f0c or t1c <= t0c:
            return
        for bi in range(f0c // TILE_BINS, (f1c - 1) // TILE_BINS + 1):
            a = max(f0c, bi * TILE_BINS)
            b = min(f1c, (bi + 1) * TILE_BINS)
            for ti in range(t0c // TILE_FRAMES, (t1c - 1) // TILE_FRAMES + 1):
                c = max(t0c, ti * TILE_FRAMES)
                d = min(t1c, (ti + 1) * TILE_FRAMES)
                yield ((bi, ti),
                       (slice(a - bi * TILE_BINS, b - bi * TILE_BINS),
                        slice(c - ti * TILE_FRAMES, d - ti * TILE_FRAMES)),
                       (slice(a - f0, b - f0), slice(c - t0, d - t0)))

    def _changed(self, name: str, bins: Tuple[int, int], frames: Tuple[int, int]) -> None:
        if self._on_change is not None:
            self._on_change(name, bins, frames)

    def nbytes(self) -> int:
        """Memory held by the weight tiles."""
        return sum(t.nbytes for tg in self._targets.values() for t in tg.tiles.values())


# --------------------------------------------------------------------------
# Undoable edits (session.history)
# --------------------------------------------------------------------------

TileDiff = Dict[TileKey, Tuple[Optional[np.ndarray], Optional[np.ndarray]]]


class PaintEdit(Command):
    """One stroke (or clear) on one target: the touched tiles before and after.

    Created after the edit is already in the store (the brush draws live), so
    the first ``do`` from ``History.push`` changes nothing; redo writes the
    ``after`` tiles, undo the ``before`` ones.
    """

    def __init__(self, target: str, colour: str, diff: TileDiff, label: str) -> None:
        self.target = target
        self.colour = colour
        self.diff = diff
        self.label = label
        self._pending_first_do = True

    def do(self, s: "Session") -> None:
        if self._pending_first_do:
            self._pending_first_do = False
            return
        s.paint.add_target(self.target, self.colour)
        s.paint.set_tiles(self.target, {k: after for k, (_, after) in self.diff.items()})

    def undo(self, s: "Session") -> None:
        s.paint.add_target(self.target, self.colour)
        s.paint.set_tiles(self.target, {k: before for k, (before, _) in self.diff.items()})


class AddPaintTarget(Command):
    """A new (empty) paint target: a project saves its targets, empty ones too, so
    making one is an edit. Undo removes it again (its strokes, later steps, are
    undone first)."""

    def __init__(self, target: str, colour: Optional[str] = None) -> None:
        self.target = target
        self.colour = colour
        self.label = f"new paint target {target}"

    def do(self, s: "Session") -> None:
        self.target = s.paint.add_target(self.target, self.colour)
        self.colour = s.paint.colour(self.target)  # redo brings the same colour back

    def undo(self, s: "Session") -> None:
        if self.target in s.paint:
            s.paint.remove_target(self.target)


class Stroke:
    """One stroke in progress on ``target``.

    Edits reach the store at once (so the overlay follows the brush);
    :meth:`finish` turns everything the stroke changed into one undo step,
    :meth:`cancel` puts the touched tiles back.
    """

    def __init__(self, session: "Session", target: str, label: str = "Brush") -> None:
        self.session = session
        self.target = session.paint.add_target(target)
        self.label = label
        self._rec = session.paint.recorder(self.target)
        self.done = False

    def read(self, f0: int, f1: int, t0: int, t1: int) -> np.ndarray:
        """Current weights of bins [f0, f1) × frames [t0, t1), float32."""
        return self.session.paint.region(self.target, f0, f1, t0, t1)

    def write(self, f0: int, t0: int, values: np.ndarray) -> None:
        """Set bins [f0, f0+h) × frames [t0, t0+w) to ``values`` (h, w)."""
        if self.done:
            raise ParameterError("this stroke is already finished")
        self.session.paint.write(self.target, f0, t0, values, recorder=self._rec)

    def clear(self) -> None:
        """Erase every weight of the target (as part of this stroke)."""
        store = self.session.paint
        keys = store.tile_keys(self.target)
        for key in keys:
            self._rec.note(key, store.tile(self.target, key))
        store.set_tiles(self.target, {k: None for k in keys})

    def finish(self) -> bool:
        """Make the stroke one undo step; False (and no step) if it changed nothing."""
        if self.done:
            return False
        self.done = True
        diff = self._rec.diff()
        if not diff:
            return False
        self.session.history.push(
            PaintEdit(self.target, self.session.paint.colour(self.target), diff, self.label))
        return True

    def cancel(self) -> None:
        """Undo the stroke's edits without leaving a history entry."""
        if self.done:
            return
        self.done = True
        diff = self._rec.diff()
        if diff:
            self.session.paint.set_tiles(self.target, {k: b for k, (b, _) in diff.items()})
