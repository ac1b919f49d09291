"""SpectrogramView: the spectrogram of the mixture or of a layer, with paint tools.

Drawing: pyqtgraph ImageItems, one per tile (``spectrogram_tiles``). The
overview (the whole file at most 4096 columns wide) is always underneath;
when the view is zoomed in far enough for a finer level, that level's tiles
for the visible range (plus one on each side) are computed in a thread pool
and drawn on top as they arrive. Images hold dB values; the colour map and
the dB floor/range are the ImageItem's lookup table and levels, so changing
them never recomputes a tile. GUI-thread work (resampling rows for the
log/mel axis, building overlay images) goes through a queue that yields to
the event loop every ~12 ms.

Paint: each target's weights (``session.paint``) are drawn over the tiles in
the target's colour with opacity = weight; a "paint" event redraws only the
columns it names. A stroke writes into the store as the mouse moves (only
the cells under the stroke) and becomes one undo step on release.

Mouse: left-drag pans with the navigate tool ("none") and paints with the
others; the wheel zooms time (Ctrl: frequency; Shift: scrolls time);
right-drag zooms; clicking the time ruler seeks, dragging it selects a time
range. Keys: ←/→ scroll (Shift: a page), +/− zoom time, ↑/↓ zoom frequency,
Home shows everything, Esc cancels a stroke and clears the time selection.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPainterPath, QPen
from PySide6.QtWidgets import (QGraphicsEllipseItem, QGraphicsPathItem, QGraphicsRectItem,
                               QLabel, QVBoxLayout, QWidget)

from demixstudio.errors import ParameterError
from demixstudio.gui.colormaps import DEFAULT_COLORMAP, hex_rgb, lookup_table
from demixstudio.gui.freq_scale import FreqScale, format_hz, format_time
from demixstudio.gui.paint_tools import (Grid, Patch, brush_patch, combine, harmonic_patch,
                                         lasso_patch, rect_patch)
from demixstudio.gui.spectrogram_tiles import (TILE_COLS, SourceSpec, TileLoader, choose_level,
                                               detail_levels, tile_cols, tile_count)


TOOLS = ("none", "brush", "rect", "lasso", "eraser", "harmonic")
#: The most harmonics the harmonic brush can be limited to (0 = all).
MAX_HARMONICS = 200
_TOOL_LABELS = {"brush": "Brush", "rect": "Rectangle", "lasso": "Lasso", "eraser": "Eraser",
                "harmonic": "Harmonic brush"}
DEFAULT_TARGET = "target 1"
QUEUE_BUDGET_S = 0.012
MAX_SOURCES = 4  # sources (mixture / layers) whose tiles stay cached
MAX_SPARE_ITEMS = 24  # hidden tile items kept for reuse


# Byte order of an RGBA pixel read as one uint32.
_ALPHA_SHIFT = np.uint32(24 if np.little_endian else 0)


def _packed_rgb(rgb: Tuple[int, int, int]) -> np.uint32:
    """(r, g, b) as the uint32 of the RGBA bytes (r, g, b, 0)."""
    return np.frombuffer(bytes((rgb[0], rgb[1], rgb[2], 0)), dtype=np.uint32)[0]


class _TileItems:
    """The two ImageItems of one displayed tile and what they currently show."""

    __slots__ = ("k", "j", "c0", "c1", "image", "overlay", "rgba", "shown", "has_overlay")

    def __init__(self, k: int, j: int, c0: int, c1: int, z: float) -> None:
        self.k, self.j, self.c0, self.c1 = k, j, c0, c1
        self.image = pg.ImageItem(axisOrder="row-major")
        self.overlay = pg.ImageItem(axisOrder="row-major")
        self.image.setZValue(z)
        self.overlay.setZValue(z + 1)
        self.image.setVisible(False)
        self.overlay.setVisible(False)
        self.rgba: Optional[np.ndarray] = None
        self.shown: Optional[tuple] = None  # (generation, scale name) of the image
        self.has_overlay = False


class _ViewBox(pg.ViewBox):
    """Routes left-button drags and clicks to the active paint tool."""

    def __init__(self, view: "SpectrogramView") -> None:
        super().__init__(enableMenu=False)
        self._view = view

    def mouseDragEvent(self, ev, axis=None):
        if axis is None and ev.button() == Qt.MouseButton.LeftButton and self._view._tool != "none":
            ev.accept()
            self._view._tool_drag(ev)
            return
        super().mouseDragEvent(ev, axis)

    def mouseClickEvent(self, ev):
        if ev.button() == Qt.MouseButton.LeftButton and self._view._tool in (
                "brush", "eraser", "harmonic"):
            ev.accept()
            self._view._tool_click(ev)
            return
        super().mouseClickEvent(ev)

    def wheelEvent(self, ev, axis=None):
        if axis is None:
            mods = ev.modifiers()
            if mods & Qt.KeyboardModifier.ShiftModifier:
                x0, x1 = self.viewRange()[0]
                step = -0.1 * (x1 - x0) * np.sign(ev.delta())
                self.translateBy(x=step)
                ev.accept()
                return
            axis = 1 if mods & Qt.KeyboardModifier.ControlModifier else 0
        super().wheelEvent(ev, axis)


class _TimeAxis(pg.AxisItem):
    """The time ruler: m:ss labels; click seeks, drag selects a time range."""

    def __init__(self, view: "SpectrogramView") -> None:
        super().__init__("bottom")
        self._view = view

    def tickStrings(self, values, scale, spacing):
        prec = 0 if spacing >= 1 else (1 if spacing >= 0.1 else (2 if spacing >= 0.01 else 3))
        return [format_time(v, prec) for v in values]

    def _time(self, scene_pos) -> float:
        return self._view._clamp_time(self._view._vb.mapSceneToView(scene_pos).x())

    def mouseClickEvent(self, ev):
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            self._view._ruler_click(self._time(ev.scenePos()))
        else:
            ev.ignore()

    def mouseDragEvent(self, ev):
        if ev.button() != Qt.MouseButton.LeftButton:
            ev.ignore()
            return
        ev.accept()
        self._view._ruler_drag(self._time(ev.buttonDownScenePos()), self._time(ev.scenePos()),
                               ev.isFinish())

    def wheelEvent(self, ev):
        self._view._vb.wheelEvent(ev, axis=0)


class _FreqAxis(pg.AxisItem):
    """Frequency labels in Hz/kHz at round values, for any FreqScale."""

    def __init__(self, view: "SpectrogramView") -> None:
        super().__init__("left")
        self._view = view

    def tickValues(self, minVal, maxVal, size):
        scale = self._view._scale
        if scale is None:
            return super().tickValues(minVal, maxVal, size)
        hz = scale.tick_hz(minVal, maxVal, max_ticks=max(2, int(size / 40)))
        return [(1.0, [float(scale.to_u(f)) for f in hz])]

    def tickStrings(self, values, scale, spacing):
        s = self._view._scale
        if s is None:
            return super().tickStrings(values, scale, spacing)
        return [format_hz(float(s.to_hz(v))) for v in values]


class SpectrogramView(QWidget):
    """The spectrogram of a session's mixture or one layer, with paint tools.

    See gui_interfaces (issue 6) for the contract the main window relies on.
    """

    cursorMoved = Signal(float, float, float)      # time s, frequency Hz, level dB
    seekRequested = Signal(float)                  # a click on the time ruler (s)
    timeSelectionChanged = Signal(float, float)    # (0, 0) = no selection
    strokeFinished = Signal(str)                   # the target painted for

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self._session = None
        self._unsubscribe = None
        self._layer_id: Optional[str] = None
        self._scale: Optional[FreqScale] = None
        self._scale_name = "linear"
        self._floor_db, self._range_db = -100.0, 100.0
        self._colormap = DEFAULT_COLORMAP
        self._lut = lookup_table(self._colormap)
        self._tool = "none"
        self._target: Optional[str] = None
        self._brush_px, self._strength = 24, 1.0
        self._harmonics = 0  # the harmonic brush paints all harmonics
        self._overlay_alpha = 0.6  # full weight still lets the spectrogram show through
        self._grid: Optional[Grid] = None
        self._levels: List[int] = [1]
        self._level = 1
        self._gen = 0
        self._gen_counter = 0
        self._spec: Optional[SourceSpec] = None
        self._sources: "OrderedDict[tuple, Tuple[int, SourceSpec]]" = OrderedDict()
        self._items: Dict[Tuple[int, int], _TileItems] = {}
        self._spare: List[_TileItems] = []
        self._needed: set = set()
        self._queue: "OrderedDict[tuple, Any]" = OrderedDict()
        self._stroke = None
        self._stroke_mode = "paint"
        self._last_pos: Optional[Tuple[float, float]] = None
        self._lasso: List[Tuple[float, float]] = []
        self._selection = (0.0, 0.0)
        self._closed = False

        # -- widgets ----------------------------------------------------------------
        self._vb = _ViewBox(self)
        self._time_axis = _TimeAxis(self)
        self._freq_axis = _FreqAxis(self)
        self._glw = pg.GraphicsLayoutWidget()
        self._glw.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self._plot = self._glw.addPlot(viewBox=self._vb, axisItems={
            "bottom": self._time_axis, "left": self._freq_axis})
        self._plot.hideButtons()
        self._plot.setMenuEnabled(False)
        self._vb.disableAutoRange()
        self._time_axis.setLabel("time")
        self._freq_axis.setLabel("frequency")
        self._readout = QLabel(" ")
        self._readout.setObjectName("spectrogramReadout")
        self._readout.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(self._glw, 1)
        lay.addWidget(self._readout, 0)

        self._playhead = pg.InfiniteLine(0.0, angle=90, movable=False,
                                         pen=pg.mkPen("#ffffff", width=1.5))
        self._playhead.setZValue(50)
        self._vb.addItem(self._playhead, ignoreBounds=True)
        self._region = pg.LinearRegionItem((0, 0), movable=False,
                                           brush=pg.mkBrush(255, 255, 255, 40),
                                           pen=pg.mkPen(255, 255, 255, 120))
        self._region.setZValue(40)
        self._region.setVisible(False)
        self._vb.addItem(self._region, ignoreBounds=True)
        tool_pen = QPen(QColor("#ffffff"))
        tool_pen.setCosmetic(True)
        tool_pen.setStyle(Qt.PenStyle.DashLine)
        self._rubber = QGraphicsRectItem()
        self._rubber.setPen(tool_pen)
        self._rubber.setZValue(60)
        self._rubber.setVisible(False)
        self._vb.addItem(self._rubber, ignoreBounds=True)
        self._lasso_item = QGraphicsPathItem()
        self._lasso_item.setPen(tool_pen)
        self._lasso_item.setZValue(60)
        self._vb.addItem(self._lasso_item, ignoreBounds=True)
        cursor_pen = QPen(QColor(255, 255, 255, 170))
        cursor_pen.setCosmetic(True)
        self._cursor = QGraphicsEllipseItem()
        self._cursor.setPen(cursor_pen)
        self._cursor.setZValue(60)
        self._cursor.setVisible(False)
        self._vb.addItem(self._cursor, ignoreBounds=True)

        self._loader = TileLoader(self)
        self._loader.tileReady.connect(self._on_tile)
        self._range_timer = QTimer(self)
        self._range_timer.setSingleShot(True)
        self._range_timer.setInterval(25)
        self._range_timer.timeout.connect(self._update_tiles)
        self._queue_timer = QTimer(self)
        self._queue_timer.setSingleShot(True)
        self._queue_timer.setInterval(0)
        self._queue_timer.timeout.connect(self._process_queue)
        self._vb.sigRangeChanged.connect(lambda *_: self._range_timer.start())
        self._vb.sigResized.connect(lambda *_: self._range_timer.start())
        self._plot.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self._glw.installEventFilter(self)

    # ======================================================================
    # Public API
    # ======================================================================
    def set_session(self, session) -> None:
        """Show ``session`` (its mixture, zoomed out); None detaches."""
        self._cancel_stroke()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._clear_items()
        self._sources.clear()
        self._loader.want([], set())
        self._session = session
        self._layer_id = None
        self._spec = None
        if self._selection != (0.0, 0.0):
            self.set_time_selection(0.0, 0.0)  # a selection belongs to its document
        if session is None:
            self._grid = None
            self._scale = None
            self._readout.setText(" ")
            return
        self._scale = FreqScale(self._scale_name, session.stft.bins, session.sr)
        frames = session.stft.frames(session.samples)
        self._grid = Grid(self._scale, session.stft.hop / session.sr, frames)
        self._levels = detail_levels(frames)
        self._unsubscribe = session.subscribe(self._on_session_event)
        self._set_source(self._spec_for(None))
        self._apply_limits()
        self._vb.setRange(xRange=(0.0, session.duration_s),
                          yRange=(self._scale.u_min, self._scale.u_max), padding=0)
        self._update_tiles()

    def show_layer(self, layer_id: Optional[str]) -> None:
        """Show a layer's content (None = the mixture)."""
        if self._session is None:
            self._layer_id = layer_id
            return
        if layer_id is not None:
            self._session.layer(layer_id)  # raises ParameterError for an unknown id
        self._layer_id = layer_id
        self._set_source(self._spec_for(layer_id))
        self._update_tiles()

    def set_playhead(self, seconds: float) -> None:
        """Move the playhead; when playback runs off the right edge, page the view along."""
        old = self._playhead.value()
        self._playhead.setValue(float(seconds))
        if self._session is None:
            return
        x0, x1 = self._vb.viewRange()[0]
        if x0 <= old <= x1 < seconds and seconds - old < 0.5 * (x1 - x0):
            width = x1 - x0
            self._vb.setXRange(seconds - 0.05 * width, seconds + 0.95 * width, padding=0)

    def set_tool(self, name: str) -> None:
        """"none" (navigate), "brush", "rect", "lasso", "eraser" or "harmonic"."""
        if name not in TOOLS:
            raise ParameterError(f"tool {name!r} is not one of {', '.join(TOOLS)}")
        self._cancel_stroke()
        self._tool = name
        self._cursor.setVisible(False)
        shape = Qt.CursorShape.ArrowCursor if name == "none" else Qt.CursorShape.CrossCursor
        self._glw.setCursor(shape)

    def tool(self) -> str:
        return self._tool

    def set_paint_target(self, name: str) -> None:
        """Paint for target ``name`` from now on (created in session.paint if missing)."""
        name = str(name).strip()
        if not name:
            raise ParameterError("a paint target name must not be empty")
        self._target = name
        if self._session is not None:
            self._session.paint.add_target(name)

    def paint_target(self) -> Optional[str]:
        return self._target

    def set_brush(self, size_px: int, strength: float) -> None:
        """Brush diameter in screen pixels (1–512) and strength (0–1]."""
        size_px, strength = int(size_px), float(strength)
        if not 1 <= size_px <= 512:
            raise ParameterError(f"brush size {size_px} px must be between 1 and 512")
        if not 0.0 < strength <= 1.0:
            raise ParameterError(f"brush strength {strength} must be in (0, 1]")
        self._brush_px, self._strength = size_px, strength

    def set_harmonics(self, count: int) -> None:
        """How many harmonics the harmonic brush paints, the fundamental the first;
        0 = all of them up to Nyquist."""
        count = int(count)
        if not 0 <= count <= MAX_HARMONICS:
            raise ParameterError(f"harmonics {count} must be between 0 (all) and "
                                 f"{MAX_HARMONICS}")
        self._harmonics = count

    def set_freq_scale(self, scale: str) -> None:
        """"linear", "log" or "mel"; keeps the visible frequency band."""
        if self._session is None:
            FreqScale(scale, 3, 1000)  # validates the name
            self._scale_name = scale
            return
        old = self._scale
        (_, _), (u0, u1) = self._vb.viewRange()
        f0, f1 = float(old.to_hz(u0)), float(old.to_hz(u1))
        self._scale_name = scale
        self._scale = FreqScale(scale, self._session.stft.bins, self._session.sr)
        self._grid = Grid(self._scale, self._grid.hop_s, self._grid.frames)
        self._apply_limits()
        nu0 = max(self._scale.u_min, float(self._scale.to_u(max(f0, 0.0))))
        nu1 = min(self._scale.u_max, float(self._scale.to_u(f1)))
        if nu1 <= nu0:
            nu0, nu1 = self._scale.u_min, self._scale.u_max
        self._vb.setYRange(nu0, nu1, padding=0)
        for it in self._items.values():
            # The old images are laid out on the old axis: hide them until redrawn.
            it.shown = None
            it.image.setVisible(False)
            it.overlay.setVisible(False)
            it.rgba = None
            self._enqueue(("image", it.k, it.j))
            self._enqueue_overlay(it, 0, it.c1 - it.c0)
        self._freq_axis.picture = None
        self._freq_axis.update()
        self._update_tiles()

    def freq_scale(self) -> str:
        return self._scale_name

    def set_db_range(self, floor_db: float, range_db: float) -> None:
        """Colour scale: ``floor_db`` is black, ``floor_db + range_db`` the brightest."""
        floor_db, range_db = float(floor_db), float(range_db)
        if not np.isfinite(floor_db) or not -300.0 <= floor_db <= 50.0:
            raise ParameterError(f"dB floor {floor_db} must be between -300 and +50")
        if not np.isfinite(range_db) or not 1.0 <= range_db <= 300.0:
            raise ParameterError(f"dB range {range_db} must be between 1 and 300")
        self._floor_db, self._range_db = floor_db, range_db
        for it in self._items.values():
            if it.shown is not None:
                self._enqueue(("levels", it.k, it.j))

    def db_range(self) -> Tuple[float, float]:
        return self._floor_db, self._range_db

    def set_colormap(self, name: str) -> None:
        """One of colormaps.COLORMAPS."""
        self._lut = lookup_table(name)
        self._colormap = name
        for it in self._items.values():
            if it.shown is not None:
                self._enqueue(("levels", it.k, it.j))

    def zoom_to(self, t0: float, t1: float, f0: Optional[float] = None,
                f1: Optional[float] = None) -> None:
        """Show times [t0, t1] s and, if given, frequencies [f0, f1] Hz."""
        if self._session is None:
            return
        t0, t1 = sorted((float(t0), float(t1)))
        self._vb.setXRange(t0, t1, padding=0)
        if f0 is not None and f1 is not None:
            u0 = max(self._scale.u_min, float(self._scale.to_u(min(f0, f1))))
            u1 = min(self._scale.u_max, float(self._scale.to_u(max(f0, f1))))
            self._vb.setYRange(u0, u1, padding=0)
        self._update_tiles()

    def view_range(self) -> Tuple[float, float, float, float]:
        """(t0, t1, f0, f1) currently shown."""
        (x0, x1), (u0, u1) = self._vb.viewRange()
        s = self._scale
        return (x0, x1, float(s.to_hz(u0)), float(s.to_hz(u1))) if s else (x0, x1, 0.0, 0.0)

    def time_selection(self) -> Tuple[float, float]:
        return self._selection

    def set_time_selection(self, t0: float, t1: float) -> None:
        """Select [t0, t1] s on the ruler ((0, 0) clears)."""
        t0, t1 = sorted((float(t0), float(t1)))
        self._selection = (t0, t1)
        self._region.setRegion((t0, t1))
        self._region.setVisible(t1 > t0)
        self.timeSelectionChanged.emit(t0, t1)

    # -- test hooks ------------------------------------------------------------------
    def paint_rect_seconds(self, t0: float, t1: float, f0: float, f1: float,
                           strength: float = 1.0) -> None:
        """Paint a rectangle for the current target, as if the rect tool was dragged."""
        self._require_session()
        patch = rect_patch(self._grid, t0, t1, f0, f1, float(strength))
        self._one_patch_stroke(patch, "Rectangle", "paint")

    def paint_lasso_seconds(self, points: Sequence[Tuple[float, float]],
                            strength: float = 1.0) -> None:
        """Fill the polygon [(t s, f Hz), ...] for the current target, as the lasso would."""
        self._require_session()
        poly = [(t, float(self._scale.to_u(f))) for t, f in points]
        self._one_patch_stroke(lasso_patch(self._grid, poly, float(strength)), "Lasso", "paint")

    def paint_path_seconds(self, points: Sequence[Tuple[float, float]],
                           tool: Optional[str] = None) -> None:
        """Drag the brush, eraser or harmonic brush through [(t s, f Hz), ...] as one stroke,
        with the current brush size (in screen pixels of the current zoom) and strength."""
        self._require_session()
        tool = tool or self._tool
        if tool not in ("brush", "eraser", "harmonic"):
            raise ParameterError(f"paint_path_seconds needs a brush-like tool, not {tool!r}")
        pts = [(float(t), float(self._scale.to_u(f))) for t, f in points]
        self._begin_stroke(tool)
        prev = pts[0]
        self._stroke_segment(tool, prev, prev)
        for p in pts[1:]:
            self._stroke_segment(tool, prev, p)
            prev = p
        self._finish_stroke()

    def image_ready(self) -> bool:
        """True when the image at the detail the view needs is loaded and drawn
        (the overview when zoomed out, full-resolution tiles when zoomed in)."""
        if self._session is None or self._spec is None:
            return False
        if self._range_timer.isActive() or self._queue:
            return False
        for k, j in self._needed:
            it = self._items.get((k, j))
            if it is None or it.shown != (self._gen, self._scale_name):
                return False
        return True

    def level(self) -> int:
        """Frames per column of the finest level now drawn (1 = full resolution)."""
        return self._level

    def tile_items(self) -> Dict[Tuple[int, int], _TileItems]:
        """Displayed tiles by (level k, index j) (for tests and screenshots)."""
        return dict(self._items)

    def loader(self) -> TileLoader:
        return self._loader

    def shutdown(self) -> None:
        """Stop background work (called on close)."""
        if self._closed:
            return
        self._closed = True
        self._range_timer.stop()
        self._queue_timer.stop()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._loader.shutdown()

    def closeEvent(self, ev) -> None:
        self.shutdown()
        super().closeEvent(ev)

    # ======================================================================
    # Sources and tiles
    # ======================================================================
    def _spec_for(self, layer_id: Optional[str]) -> Tuple[tuple, SourceSpec]:
        s = self._session
        base = dict(mixture=s.mixture, cfg=s.stft, sr=s.sr)
        if layer_id is None:
            return ("mixture", id(s.mixture)), SourceSpec(**base)
        layer = s.layer(layer_id)
        if layer.is_residual:
            others = tuple(("mask", x.mask) if x.mask is not None else ("waveform", x.waveform)
                           for x in s.layers if not x.is_residual)
            if not others:
                return ("mixture", id(s.mixture)), SourceSpec(**base)
            sig = ("residual",) + tuple(id(a) for _, a in others)
            return sig, SourceSpec(**base, kind="residual", others=others)
        if layer.mask is not None:
            return ("mask", id(layer.mask)), SourceSpec(**base, kind="mask", mask=layer.mask)
        return ("waveform", id(layer.waveform)), SourceSpec(**base, kind="waveform",
                                                            waveform=layer.waveform)

    def _set_source(self, sig_spec: Tuple[tuple, SourceSpec]) -> None:
        sig, spec = sig_spec
        if sig in self._sources:
            gen, _ = self._sources[sig]
            self._sources.move_to_end(sig)
        else:
            self._gen_counter += 1
            gen = self._gen_counter
            # The spec holds the arrays, so the ids in ``sig`` stay unique while cached.
            self._sources[sig] = (gen, spec)
            while len(self._sources) > MAX_SOURCES:
                _, (old_gen, _) = self._sources.popitem(last=False)
                self._loader.forget_generation(old_gen)
        if gen == self._gen and self._spec is not None:
            return
        self._gen = gen
        self._spec = self._sources[sig][1]
        for it in self._items.values():
            it.shown = None
            self._enqueue(("image", it.k, it.j))

    def _visible_frames(self) -> Tuple[float, float]:
        (x0, x1), _ = self._vb.viewRange()
        return x0 / self._grid.hop_s, x1 / self._grid.hop_s

    def _update_tiles(self) -> None:
        if self._session is None or self._spec is None or self._closed:
            return
        frames = self._grid.frames
        a, b = self._visible_frames()
        width = self._vb.width() or self.width() or 1
        k_ov = self._levels[-1]
        k = choose_level(self._levels, b - a, width)
        self._level = k
        sc = self._scale_name
        needed = {(k_ov, j) for j in range(tile_count(frames, k_ov))}
        ready_needed = set(needed)
        requests = [((self._gen, k_ov, j, sc), self._spec, self._scale, 100)
                    for j in range(tile_count(frames, k_ov))]
        if k != k_ov:
            span = TILE_COLS * k
            j0 = max(0, int(a // span) - 1)
            j1 = min(tile_count(frames, k) - 1, int(b // span) + 1)
            centre = 0.5 * (a + b) / span
            for j in sorted(range(j0, j1 + 1), key=lambda j: abs(j + 0.5 - centre)):
                visible = (j + 1) * span > a and j * span < b
                needed.add((k, j))
                if visible:
                    ready_needed.add((k, j))
                requests.append(((self._gen, k, j, sc), self._spec, self._scale,
                                 50 if visible else 10))
        pin = {(self._gen, k_ov, j) for j in range(tile_count(frames, k_ov))}
        self._loader.want(requests, pin)
        # Drop items that are no longer needed; add the new ones.
        for key in [key for key in self._items if key not in needed]:
            self._remove_item(key)
        for key in sorted(needed):
            if key not in self._items:
                kk, j = key
                c0, c1 = tile_cols(frames, kk, j)
                z = 0.0 if kk == k_ov else 2.0
                if self._spare:  # reuse: building ImageItems costs milliseconds each
                    it = self._spare.pop()
                    it.k, it.j, it.c0, it.c1 = kk, j, c0, c1
                    it.image.setZValue(z)
                    it.overlay.setZValue(z + 1)
                else:
                    it = _TileItems(kk, j, c0, c1, z=z)
                    self._vb.addItem(it.image, ignoreBounds=True)
                    self._vb.addItem(it.overlay, ignoreBounds=True)
                self._items[key] = it
                self._enqueue(("image", kk, j))
                self._enqueue_overlay(it, 0, c1 - c0)
            elif self._items[key].shown != (self._gen, self._scale_name):
                self._enqueue(("image",) + key)
        self._needed = ready_needed

    def _on_tile(self, dkey) -> None:
        gen, k, j, scale = dkey
        if gen == self._gen and scale == self._scale_name and (k, j) in self._items:
            self._enqueue(("image", k, j))

    def _remove_item(self, key) -> None:
        it = self._items.pop(key)
        for op in [op for op in self._queue if op[1:3] == key]:
            del self._queue[op]
        it.image.setVisible(False)
        it.overlay.setVisible(False)
        it.shown, it.rgba, it.has_overlay = None, None, False
        if len(self._spare) < MAX_SPARE_ITEMS:
            self._spare.append(it)
        else:
            self._vb.removeItem(it.image)
            self._vb.removeItem(it.overlay)

    def _clear_items(self) -> None:
        for key in list(self._items):
            self._remove_item(key)
        self._queue.clear()

    # -- the GUI-thread work queue ------------------------------------------------------
    def _enqueue(self, op: tuple) -> None:
        self._queue[op] = None
        if not self._queue_timer.isActive():
            self._queue_timer.start()

    def _enqueue_overlay(self, it: _TileItems, a: int, b: int) -> None:
        """Redraw overlay columns [a, b) of a tile (merged with a pending request)."""
        op = ("overlay", it.k, it.j)
        if op in self._queue and self._queue[op] is not None:
            pa, pb = self._queue[op]
            a, b = min(a, pa), max(b, pb)
        self._queue[op] = (a, b)
        if not self._queue_timer.isActive():
            self._queue_timer.start()

    def _process_queue(self) -> None:
        start = time.perf_counter()
        while self._queue and time.perf_counter() - start < QUEUE_BUDGET_S:
            op, arg = self._queue.popitem(last=False)
            it = self._items.get(op[1:3])
            if it is None:
                continue
            if op[0] == "image":
                self._draw_image(it)
            elif op[0] == "levels":
                it.image.setLevels((self._floor_db, self._floor_db + self._range_db),
                                   update=False)
                it.image.setLookupTable(self._lut, update=False)
                it.image.qimage = None
                it.image.render()
                it.image.update()
            elif op[0] == "overlay":
                self._draw_overlay(it, *arg)
        if self._queue:
            self._queue_timer.start()

    def _draw_image(self, it: _TileItems) -> None:
        disp = self._loader.display((self._gen, it.k, it.j, self._scale_name))
        if disp is None:
            it.image.setVisible(False)
            it.overlay.setVisible(False)
            it.shown = None
            return
        it.image.setImage(disp, autoLevels=False, lut=self._lut,
                          levels=(self._floor_db, self._floor_db + self._range_db))
        it.image.setRect(self._tile_rect(it))
        it.image.render()  # colour-map now, within the queue's time budget, not in paint
        it.image.setVisible(True)
        it.shown = (self._gen, self._scale_name)
        if it.has_overlay:
            it.overlay.setRect(self._tile_rect(it))
            it.overlay.setVisible(True)

    def _tile_rect(self, it: _TileItems) -> QRectF:
        hop_s = self._grid.hop_s
        x0 = (it.c0 * it.k - 0.5) * hop_s
        w = (it.c1 - it.c0) * it.k * hop_s
        return QRectF(x0, self._scale.u_min, w, self._scale.u_max - self._scale.u_min)

    def _draw_overlay(self, it: _TileItems, a: int, b: int) -> None:
        """Composite every target's weights over tile columns [a, b) and redraw the overlay.

        Work is limited to the display rows that hold paint; one target (the
        usual case) is a plain fill, several are composited "over" in order.
        """
        paint = self._session.paint
        names = [n for n in paint.targets() if not paint.is_empty(n)]
        rows, cols = self._scale.rows, it.c1 - it.c0
        if not names and it.rgba is None:
            it.has_overlay = False
            it.overlay.setVisible(False)
            return
        if it.rgba is None or it.rgba.shape[:2] != (rows, cols):
            it.rgba = np.zeros((rows, cols, 4), dtype=np.uint8)
            a, b = 0, cols
        layers = []  # (r0, r1, weights (r1-r0, b-a), rgb)
        for name in names:
            w = paint.pooled(name, it.k, it.c0 + a, it.c0 + b)
            nz = np.flatnonzero(w.any(axis=1))
            if nz.size == 0:
                continue
            r0, r1 = self._scale.rows_for_bins(int(nz[0]), int(nz[-1]) + 1)
            wr = self._scale.resample(w, (r0, r1))
            layers.append((r0, r1, wr * self._overlay_alpha, hex_rgb(paint.colour(name))))
        out = it.rgba[:, a:b]
        out32 = it.rgba.view(np.uint32)[:, a:b, 0]  # one RGBA pixel per uint32
        out32[...] = 0
        if len(layers) == 1:
            r0, r1, w, rgb = layers[0]
            alpha = (w * 255.0 + 0.5).astype(np.uint32)
            out32[r0:r1] = _packed_rgb(rgb) | (alpha << _ALPHA_SHIFT)
        elif layers:
            R0, R1 = min(x[0] for x in layers), max(x[1] for x in layers)
            premul = np.zeros((R1 - R0, b - a, 3), dtype=np.float32)
            alpha = np.zeros((R1 - R0, b - a), dtype=np.float32)
            for r0, r1, w, rgb in layers:
                p, al = premul[r0 - R0:r1 - R0], alpha[r0 - R0:r1 - R0]
                p *= (1.0 - w)[..., None]
                p += w[..., None] * np.asarray(rgb, dtype=np.float32)
                al *= 1.0 - w
                al += w
            safe = np.maximum(alpha, 1e-6)[..., None]
            out[R0:R1, :, :3] = np.clip(premul / safe + 0.5, 0, 255).astype(np.uint8)
            out[R0:R1, :, 3] = (alpha * 255.0 + 0.5).astype(np.uint8)
        it.has_overlay = bool(layers) or bool(it.rgba[..., 3].any()) if a > 0 or b < cols \
            else bool(layers)
        if not it.has_overlay:
            it.rgba = None
            it.overlay.setVisible(False)
            return
        # uint8 RGBA without levels goes to a QImage as is (no per-pixel scaling).
        it.overlay.setImage(it.rgba, autoLevels=False, levels=None)
        it.overlay.setRect(self._tile_rect(it))
        it.overlay.render()
        it.overlay.setVisible(it.shown is not None)

    # ======================================================================
    # Session events
    # ======================================================================
    def _on_session_event(self, kind: str, payload: Dict[str, Any]) -> None:
        if self._closed or self._session is None:
            return
        if kind == "paint":
            t0, t1 = payload.get("frames", (0, 0))
            if t1 <= t0:
                return
            for it in self._items.values():
                lo, hi = it.c0 * it.k, it.c1 * it.k
                if t1 <= lo or t0 >= hi:
                    continue
                a = max(t0 // it.k, it.c0) - it.c0
                b = min(-(-t1 // it.k), it.c1) - it.c0
                self._enqueue_overlay(it, a, b)
        elif kind == "layers":
            layer_id = self._layer_id
            if layer_id is not None and not any(x.id == layer_id for x in self._session.layers):
                layer_id = self._layer_id = None
            self._set_source(self._spec_for(layer_id))
            self._update_tiles()

    # ======================================================================
    # Painting
    # ======================================================================
    def _require_session(self) -> None:
        if self._session is None:
            raise ParameterError("no session is shown")

    def _ensure_target(self) -> str:
        if self._target is None:
            self._target = DEFAULT_TARGET
        self._session.paint.add_target(self._target)
        return self._target

    def _begin_stroke(self, tool: str) -> None:
        self._cancel_stroke()
        target = self._ensure_target()
        self._stroke = self._session.begin_stroke(target, _TOOL_LABELS.get(tool, tool))
        self._stroke_mode = "erase" if tool == "eraser" else "paint"

    def _apply_patch(self, patch: Optional[Patch]) -> None:
        if patch is None or self._stroke is None:
            return
        h, w = patch.weights.shape
        old = self._stroke.read(patch.f0, patch.f0 + h, patch.t0, patch.t0 + w)
        new = combine(old, patch.weights, self._stroke_mode)
        if not np.array_equal(new, old):
            self._stroke.write(patch.f0, patch.t0, new)

    def _finish_stroke(self) -> None:
        stroke, self._stroke = self._stroke, None
        if stroke is None:
            return
        stroke.finish()
        self.strokeFinished.emit(stroke.target)

    def _cancel_stroke(self) -> None:
        stroke, self._stroke = self._stroke, None
        if stroke is not None:
            stroke.cancel()
        self._rubber.setVisible(False)
        self._lasso = []
        self._lasso_item.setPath(QPainterPath())

    def _one_patch_stroke(self, patch: Optional[Patch], label: str, mode: str) -> None:
        target = self._ensure_target()
        self._cancel_stroke()
        self._stroke = self._session.begin_stroke(target, label)
        self._stroke_mode = mode
        self._apply_patch(patch)
        self._finish_stroke()

    def _brush_radii(self) -> Tuple[float, float]:
        sx, sy = self._vb.viewPixelSize()
        r = 0.5 * self._brush_px
        return max(r * sx, 1e-9), max(r * sy, 1e-9)

    def _stroke_segment(self, tool: str, p0: Tuple[float, float], p1: Tuple[float, float]) -> None:
        rx, ry = self._brush_radii()
        if tool == "harmonic":
            s = self._scale
            f_a, f_b = float(s.to_hz(p0[1])), float(s.to_hz(p1[1]))
            hw1 = 0.5 * float(s.to_hz(p1[1] + ry) - s.to_hz(p1[1] - ry))
            patch = harmonic_patch(self._grid, (p0[0], f_a), (p1[0], f_b), rx, hw1,
                                   self._strength, harmonics=self._harmonics)
        else:
            patch = brush_patch(self._grid, p0, p1, rx, ry, self._strength)
        self._apply_patch(patch)

    def _view_pos(self, scene_pos) -> Tuple[float, float]:
        p = self._vb.mapSceneToView(scene_pos)
        return float(p.x()), float(p.y())

    def _tool_click(self, ev) -> None:
        if self._session is None:
            return
        p = self._view_pos(ev.scenePos())
        self._begin_stroke(self._tool)
        self._stroke_segment(self._tool, p, p)
        self._finish_stroke()

    def _tool_drag(self, ev) -> None:
        if self._session is None:
            return
        tool = self._tool
        p = self._view_pos(ev.scenePos())
        if ev.isStart():
            start = self._view_pos(ev.buttonDownScenePos())
            self._begin_stroke(tool)
            self._last_pos = start
            if tool in ("brush", "eraser", "harmonic"):
                self._stroke_segment(tool, start, p)
            elif tool == "lasso":
                self._lasso = [start, p]
        elif self._stroke is None:
            return  # cancelled with Esc mid-drag
        elif tool in ("brush", "eraser", "harmonic"):
            self._stroke_segment(tool, self._last_pos, p)
        elif tool == "lasso":
            self._lasso.append(p)
        if tool == "rect":
            (t0, u0), (t1, u1) = self._view_pos(ev.buttonDownScenePos()), p
            self._rubber.setRect(QRectF(QPointF(t0, u0), QPointF(t1, u1)).normalized())
            self._rubber.setVisible(not ev.isFinish())
            if ev.isFinish():
                s = self._scale
                patch = rect_patch(self._grid, t0, t1, float(s.to_hz(u0)), float(s.to_hz(u1)),
                                   self._strength)
                self._apply_patch(patch)
        elif tool == "lasso":
            path = QPainterPath(QPointF(*self._lasso[0]))
            for q in self._lasso[1:]:
                path.lineTo(QPointF(*q))
            if ev.isFinish():
                self._lasso_item.setPath(QPainterPath())
                self._apply_patch(lasso_patch(self._grid, self._lasso, self._strength))
                self._lasso = []
            else:
                path.closeSubpath()
                self._lasso_item.setPath(path)
        self._last_pos = p
        if ev.isFinish():
            self._finish_stroke()

    # ======================================================================
    # Ruler, cursor, keys
    # ======================================================================
    def _clamp_time(self, t: float) -> float:
        if self._session is None:
            return 0.0
        return float(min(max(t, 0.0), self._session.duration_s))

    def _ruler_click(self, t: float) -> None:
        if self._session is None:
            return
        if self._selection != (0.0, 0.0):
            self.set_time_selection(0.0, 0.0)
        self.seekRequested.emit(t)

    def _ruler_drag(self, t0: float, t1: float, finished: bool) -> None:
        if self._session is None:
            return
        lo, hi = sorted((t0, t1))
        self._region.setRegion((lo, hi))
        self._region.setVisible(hi > lo)
        if finished:
            self.set_time_selection(lo, hi)

    def _on_mouse_moved(self, scene_pos) -> None:
        if self._session is None or not self._vb.sceneBoundingRect().contains(scene_pos):
            self._cursor.setVisible(False)
            return
        t, u = self._view_pos(scene_pos)
        f = float(self._scale.to_hz(u))
        db = self._level_at(t, f)
        level = "—" if not np.isfinite(db) else f"{db:.1f} dB"
        self._readout.setText(f"{format_time(max(t, 0.0))}   {format_hz(max(f, 0.0))}   {level}")
        self.cursorMoved.emit(t, f, db)
        if self._tool in ("brush", "eraser", "harmonic"):
            rx, ry = self._brush_radii()
            self._cursor.setRect(QRectF(t - rx, u - ry, 2 * rx, 2 * ry))
            self._cursor.setVisible(True)
        else:
            self._cursor.setVisible(False)

    def _level_at(self, t: float, f: float) -> float:
        """dB under (t s, f Hz) from the finest loaded tile; NaN outside or not loaded."""
        if self._grid is None:
            return float("nan")
        frame = int(round(t / self._grid.hop_s))
        b = int(round(f / self._scale.df))
        if not (0 <= frame < self._grid.frames and 0 <= b < self._scale.bins):
            return float("nan")
        for k in sorted({self._level, self._levels[-1]}):
            c = frame // k
            j = c // TILE_COLS
            img = self._loader.get((self._gen, k, j))
            if img is not None:
                return float(img[b, c - j * TILE_COLS])
        return float("nan")

    def eventFilter(self, obj: QObject, ev: QEvent) -> bool:
        if obj is self._glw and ev.type() == QEvent.Type.KeyPress:
            return self._key(ev)
        return super().eventFilter(obj, ev)

    def _key(self, ev) -> bool:
        if self._session is None:
            return False
        key, mods = ev.key(), ev.modifiers()
        if mods & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier):
            return False
        (x0, x1), (u0, u1) = self._vb.viewRange()
        w = x1 - x0
        page = 1.0 if mods & Qt.KeyboardModifier.ShiftModifier else 0.2
        if key == Qt.Key.Key_Left:
            self._vb.setXRange(x0 - page * w, x1 - page * w, padding=0)
        elif key == Qt.Key.Key_Right:
            self._vb.setXRange(x0 + page * w, x1 + page * w, padding=0)
        elif key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self._vb.scaleBy(x=0.5, center=QPointF(0.5 * (x0 + x1), 0.5 * (u0 + u1)))
        elif key in (Qt.Key.Key_Minus, Qt.Key.Key_Underscore):
            self._vb.scaleBy(x=2.0, center=QPointF(0.5 * (x0 + x1), 0.5 * (u0 + u1)))
        elif key == Qt.Key.Key_Up:
            self._vb.scaleBy(y=0.8, center=QPointF(0.5 * (x0 + x1), u0))
        elif key == Qt.Key.Key_Down:
            self._vb.scaleBy(y=1.25, center=QPointF(0.5 * (x0 + x1), u0))
        elif key == Qt.Key.Key_Home:
            self.zoom_to(0.0, self._session.duration_s, 0.0, self._scale.nyquist)
        elif key == Qt.Key.Key_Escape:
            self._cancel_stroke()
            if self._selection != (0.0, 0.0):
                self.set_time_selection(0.0, 0.0)
        else:
            return False
        return True

    def _apply_limits(self) -> None:
        s, g = self._scale, self._grid
        dur = self._session.duration_s
        self._vb.setLimits(xMin=-0.5 * g.hop_s, xMax=dur + 0.5 * g.hop_s,
                           yMin=s.u_min, yMax=s.u_max,
                           minXRange=min(16 * g.hop_s, dur), maxXRange=dur + g.hop_s,
                           minYRange=(s.u_max - s.u_min) / 400.0,
                           maxYRange=s.u_max - s.u_min)
