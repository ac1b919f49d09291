"""The layer list: one row per layer with colour, name, mute, solo, gain and pan.

Rows observe the session (``"layers"`` rebuilds the list, ``"layer"`` updates
one row in place) and change it only through undoable session calls, so
every edit made here is undone with Ctrl+Z. Dragging a row reorders layers
(``session.move``); the residual stays last and cannot be dragged.

While the pan slider is being dragged its value is previewed live
(``previewSettings``, for the transport) and committed as one undo step on
release.
"""

from __future__ import annotations

import time
from typing import Dict, List, Optional

from PySide6.QtCore import QPoint, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QColor, QDropEvent, QIcon, QPixmap
from PySide6.QtWidgets import (QAbstractItemView, QColorDialog, QDoubleSpinBox, QHBoxLayout,
                               QLabel, QLineEdit, QListWidget, QListWidgetItem, QMenu,
                               QPushButton, QSlider, QToolButton, QVBoxLayout, QWidget)

from demixstudio.gui.analysis_view import MENU_TITLES, AnalysisDialog, analysis_kind
from demixstudio.errors import DemixError
from demixstudio.session.commands import ReplaceLayers
from demixstudio.session.layer import Layer

ID_ROLE = Qt.ItemDataRole.UserRole
#: Seconds of row-widget creation per event-loop turn (one row takes ~5–15 ms).
ROW_BUDGET_S = 0.012


def provenance_text(layer: Layer) -> str:
    """The row's tooltip: what made the layer, with which parameters, from what."""
    if layer.is_residual:
        return ("Residual: what no other layer claims (the mixture minus every layer).\n"
                "With every layer at unity the layers sum to the mixture.")
    lines = [f"{layer.name} ({layer.kind} layer)"]
    p = layer.provenance
    if p is None:
        lines.append("made by hand")
    else:
        lines.append(f"method: {p.method}")
        lines.append(f"input: {p.input}")
        if p.name_in_run is not None and p.name_in_run != layer.name:
            # What its "not:" paint is called (the method's own name for the layer).
            lines.append(f"{p.method} knows it as: {p.name_in_run}")
        for k, v in p.params.items():
            lines.append(f"  {k} = {v}")
        if p.hints:
            lines.append("hints: " + ", ".join(f"{k}: {v}" for k, v in p.hints.items()))
    return "\n".join(lines)


def swatch_icon(colour: str, size: int = 14) -> QIcon:
    pm = QPixmap(size, size)
    pm.fill(QColor(colour))
    return QIcon(pm)


class LayerRow(QWidget):
    """The widgets of one layer. ``update_from(layer)`` refreshes them without echo."""

    edited = Signal(str, dict)          # layer id, settings to commit
    preview = Signal(str, dict)         # layer id, settings being dragged
    colourRequested = Signal(str)

    def __init__(self, layer: Layer, parent: Optional[QWidget] = None, *,
                 stereo: bool = True) -> None:
        super().__init__(parent)
        self.layer_id = layer.id
        # Two lines: the name gets the full width, the mixer controls sit below.
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 3, 4, 4)
        outer.setSpacing(2)
        top = QHBoxLayout()
        top.setSpacing(4)
        lay = QHBoxLayout()
        lay.setSpacing(4)
        lay.setContentsMargins(22, 0, 0, 0)
        outer.addLayout(top)
        outer.addLayout(lay)
        self.swatch = QToolButton()
        self.swatch.setFixedSize(18, 18)
        self.swatch.setToolTip("Layer colour (click to change)")
        self.swatch.clicked.connect(lambda: self.colourRequested.emit(self.layer_id))
        self.name = QLineEdit()
        self.name.setObjectName("layerName")
        self.name.setMinimumWidth(120)
        self.name.setToolTip("Layer name (click to rename)")
        self.name.editingFinished.connect(self._rename)
        self.mute = QToolButton()
        self.mute.setObjectName("muteButton")
        self.mute.setText("M")
        self.mute.setCheckable(True)
        self.mute.setToolTip("Mute")
        self.mute.toggled.connect(lambda on: self.edited.emit(self.layer_id, {"mute": on}))
        self.solo = QToolButton()
        self.solo.setObjectName("soloButton")
        self.solo.setText("S")
        self.solo.setCheckable(True)
        self.solo.setToolTip("Solo")
        self.solo.toggled.connect(lambda on: self.edited.emit(self.layer_id, {"solo": on}))
        self.gain = QDoubleSpinBox()
        self.gain.setRange(-120.0, 24.0)
        self.gain.setSingleStep(0.5)
        self.gain.setDecimals(1)
        self.gain.setSuffix(" dB")
        self.gain.setKeyboardTracking(False)
        self.gain.setFixedWidth(86)
        self.gain.setToolTip("Gain in dB")
        self.gain.valueChanged.connect(lambda v: self.edited.emit(self.layer_id, {"gain_db": v}))
        self.pan = QSlider(Qt.Orientation.Horizontal)
        self.pan.setRange(-100, 100)
        self.pan.setMinimumWidth(60)
        self.pan.setToolTip("Pan (double-click the label to centre)")
        self.pan.valueChanged.connect(self._pan_moved)
        self.pan.sliderReleased.connect(self._pan_released)
        self.pan_label = QLabel("C")
        self.pan_label.setFixedWidth(30)
        self.pan_label.setObjectName("dimLabel")
        self.pan_label.mouseDoubleClickEvent = lambda _e: self._commit_pan(0)  # type: ignore
        if not stereo:
            # The mixer pans stereo only (mono and multichannel play as they are).
            self.pan.setEnabled(False)
            self.pan.setToolTip("Pan works on stereo recordings")
            self.pan_label.setEnabled(False)
        top.addWidget(self.swatch)
        top.addWidget(self.name, 1)
        for w in (self.mute, self.solo, self.gain, self.pan, self.pan_label):
            lay.addWidget(w)
        lay.setStretch(3, 1)
        self.update_from(layer)

    def update_from(self, layer: Layer, *, restore_name: bool = False) -> None:
        """Show ``layer``'s settings; the name field is left alone while it is being
        edited, unless ``restore_name`` (an edit that was refused)."""
        widgets = (self.name, self.mute, self.solo, self.gain, self.pan)
        for w in widgets:
            w.blockSignals(True)
        try:
            # An icon, not a per-widget style sheet: style sheets make rows slow to create.
            self.swatch.setIcon(swatch_icon(layer.colour, 14))
            self.swatch.setIconSize(QSize(14, 14))
            if restore_name or not self.name.hasFocus():
                self.name.setText(layer.name)
                self.name.setCursorPosition(0)  # show the start of a long name
            self.name.setToolTip(f"{layer.name} (click to rename)" if not layer.is_residual
                                 else layer.name)
            self.name.setReadOnly(layer.is_residual)
            self.mute.setChecked(layer.mute)
            self.solo.setChecked(layer.solo)
            self.gain.setValue(layer.gain_db)
            if not self.pan.isSliderDown():
                self.pan.setValue(int(round(layer.pan * 100)))
            self._label_pan(self.pan.value())
        finally:
            for w in widgets:
                w.blockSignals(False)
        self.setToolTip(provenance_text(layer))

    def _rename(self) -> None:
        self.edited.emit(self.layer_id, {"name": self.name.text()})

    def _label_pan(self, v: int) -> None:
        self.pan_label.setText("C" if v == 0 else (f"L{-v}" if v < 0 else f"R{v}"))

    def _pan_moved(self, v: int) -> None:
        self._label_pan(v)
        if self.pan.isSliderDown():
            self.preview.emit(self.layer_id, {"pan": v / 100.0})
        else:  # keyboard, wheel or a click on the groove: one step, one commit
            self.edited.emit(self.layer_id, {"pan": v / 100.0})

    def _pan_released(self) -> None:
        self.edited.emit(self.layer_id, {"pan": self.pan.value() / 100.0})

    def _commit_pan(self, v: int) -> None:
        self.pan.setValue(v)


class _LayerList(QListWidget):
    """A QListWidget whose drops reorder the session instead of the items."""

    moveRequested = Signal(str, int)  # layer id, new index among the movable layers

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("layerList")
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setDragDropMode(QAbstractItemView.DragDropMode.InternalMove)
        self.setDefaultDropAction(Qt.DropAction.MoveAction)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)

    def drop_row_at(self, pos: QPoint) -> int:
        """Row a drop at ``pos`` inserts before (count() = at the end)."""
        item = self.itemAt(pos)
        if item is None:
            return self.count()
        row = self.row(item)
        rect = self.visualItemRect(item)
        return row + 1 if pos.y() > rect.center().y() else row

    def dropEvent(self, event: QDropEvent) -> None:
        dragged = [it for it in self.selectedItems()
                   if it.flags() & Qt.ItemFlag.ItemIsDragEnabled]
        if event.source() is not self or len(dragged) != 1:
            event.ignore()
            return
        src = self.row(dragged[0])
        dst = self.drop_row_at(event.position().toPoint())
        if dst > src:
            dst -= 1  # the index after taking the row out
        # Leave the items alone: the session's "layers" event rebuilds them.
        event.setDropAction(Qt.DropAction.IgnoreAction)
        event.accept()
        if dst != src:
            self.moveRequested.emit(dragged[0].data(ID_ROLE), dst)


class LayerPanel(QWidget):
    """The layer list of a session, with a "Mixture" entry to view the input.

    Signals
    -------
    layerSelected(id or None) : the layer to show (None = the mixture)
    reseparateRequested(id, method) : the context menu's "Re-separate with"
    paintNotRequested(target) : "Paint what does not belong here": paint ``not:TARGET``,
        TARGET being the method's name for the layer (``Provenance.name_in_run``)
    exportRequested(list of ids) : the context menu's "Export…"
    previewSettings(id, dict) : a setting being dragged (not yet committed)
    error(str) : a one-line reason when an edit was refused
    """

    layerSelected = Signal(object)
    rowsReady = Signal()
    reseparateRequested = Signal(str, str)
    paintNotRequested = Signal(str)
    exportRequested = Signal(list)
    previewSettings = Signal(str, dict)
    error = Signal(str)

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.session = None
        self._unsubscribe = None
        self._rows: Dict[str, LayerRow] = {}
        self._order: List[str] = []
        self._pending: List[tuple] = []
        self._row_height = 0
        self._row_timer = QTimer(self)
        self._row_timer.setSingleShot(True)
        self._row_timer.setInterval(0)
        self._row_timer.timeout.connect(self._build_some_rows)
        self.methods: List[str] = []
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        self.mixture_button = QPushButton("Mixture")
        self.mixture_button.setCheckable(True)
        self.mixture_button.setChecked(True)
        self.mixture_button.setToolTip("Show the mixture (the input) in the spectrogram")
        self.mixture_button.clicked.connect(self.show_mixture)
        lay.addWidget(self.mixture_button)
        self.list = _LayerList()
        self.list.currentItemChanged.connect(self._current_changed)
        self.list.moveRequested.connect(self._move)
        self.list.customContextMenuRequested.connect(self._context_menu)
        lay.addWidget(self.list, 1)
        self.summary = QLabel()
        self.summary.setObjectName("dimLabel")
        self.summary.setWordWrap(True)
        lay.addWidget(self.summary)

    # -- session -----------------------------------------------------------------
    def set_session(self, session) -> None:
        if self._unsubscribe:
            self._unsubscribe()
            self._unsubscribe = None
        self.session = session
        if session is not None:
            self._unsubscribe = session.subscribe(self._on_event)
        self.rebuild()

    def _on_event(self, kind: str, payload: dict) -> None:
        if kind == "layers":
            self.rebuild()
        elif kind == "layer":
            row = self._rows.get(payload.get("layer"))
            if row is not None and self.session is not None:
                try:
                    row.update_from(self.session.layer(row.layer_id))
                except DemixError:
                    self.rebuild()

    def rebuild(self) -> None:
        """Make the rows match the session's layers, keeping the current layer selected.

        When only content or settings changed (same ids, same order) the rows
        are updated in place. Otherwise the list is rebuilt; the row widgets
        are created a few at a time between events (``ROW_BUDGET_S`` each
        turn), so a separation into many layers never freezes the window.
        """
        ids = [x.id for x in self.session.layers] if self.session is not None else []
        if ids and ids == self._order and not self._pending:
            for layer in self.session.layers:
                self._rows[layer.id].update_from(layer)
            self._update_summary()
            return
        current = self.current_layer_id()
        self.list.blockSignals(True)
        self.list.clear()
        self._rows.clear()
        self._pending = []
        self._order = ids
        if self.session is not None:
            for layer in self.session.layers:
                item = QListWidgetItem()
                item.setData(ID_ROLE, layer.id)
                flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
                if not layer.is_residual:
                    flags |= Qt.ItemFlag.ItemIsDragEnabled
                item.setFlags(flags)
                if self._row_height:
                    item.setSizeHint(QSize(0, self._row_height))
                self.list.addItem(item)
                self._pending.append((item, layer))
        self.list.blockSignals(False)
        self._update_summary()
        self._build_some_rows()
        if current is not None and current in ids:
            self.select_layer(current)
        elif current is not None:  # the layer went away (undo, re-separation)
            self.show_mixture()

    def _update_summary(self) -> None:
        if self.session is None:
            self.summary.setText("")
            return
        n = len(self.session.layers) - 1
        self.summary.setText(f"{n} layer{'s' if n != 1 else ''} + residual")

    def _build_some_rows(self, budget_s: float = ROW_BUDGET_S) -> None:
        """Create pending row widgets until the time budget is used; continue later."""
        t0 = time.perf_counter()
        while self._pending:
            item, layer = self._pending.pop(0)
            if self.list.row(item) < 0:
                continue  # the list was rebuilt meanwhile
            row = LayerRow(layer, stereo=self.session is None or self.session.channels == 2)
            row.edited.connect(self._edit)
            row.preview.connect(self.previewSettings)
            row.colourRequested.connect(self._pick_colour)
            if not self._row_height:
                self._row_height = row.sizeHint().height()
            item.setSizeHint(QSize(0, self._row_height))
            self.list.setItemWidget(item, row)
            self._rows[layer.id] = row
            if time.perf_counter() - t0 > budget_s:
                break
        if self._pending:
            self._row_timer.start()
        else:
            self.rowsReady.emit()

    def finish_rows(self) -> None:
        """Create every pending row now (scripts, tests)."""
        self._row_timer.stop()
        self._build_some_rows(budget_s=float("inf"))

    # -- selection -------------------------------------------------------------------
    def current_layer_id(self) -> Optional[str]:
        item = self.list.currentItem()
        if item is None or not item.isSelected():
            return None
        return item.data(ID_ROLE)

    def selected_layer_ids(self) -> List[str]:
        return [it.data(ID_ROLE) for it in self.list.selectedItems()]

    def select_layer(self, layer_id: Optional[str]) -> None:
        if layer_id is None:
            self.show_mixture()
            return
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.data(ID_ROLE) == layer_id:
                self.list.setCurrentItem(item)
                item.setSelected(True)
                self.mixture_button.setChecked(False)
                return

    def show_mixture(self) -> None:
        self.list.blockSignals(True)
        self.list.clearSelection()
        self.list.setCurrentItem(None)
        self.list.blockSignals(False)
        self.mixture_button.setChecked(True)
        self.layerSelected.emit(None)

    def _current_changed(self, item: Optional[QListWidgetItem], _prev) -> None:
        lid = None if item is None else item.data(ID_ROLE)
        self.mixture_button.setChecked(lid is None)
        self.layerSelected.emit(lid)

    def row(self, layer_id: str) -> LayerRow:
        """The row widget of a layer (for tests and scripts)."""
        if layer_id not in self._rows:
            self.finish_rows()
        return self._rows[layer_id]

    # -- edits -------------------------------------------------------------------------
    def _edit(self, layer_id: str, settings: dict) -> None:
        if self.session is None:
            return
        try:
            layer = self.session.layer(layer_id)
            changed = {k: v for k, v in settings.items() if getattr(layer, k) != v}
            if changed:
                self.session.set(layer, **changed)
        except DemixError as exc:
            self.error.emit(str(exc))
            row = self._rows.get(layer_id)
            if row is not None:
                row.update_from(self.session.layer(layer_id), restore_name=True)

    def _move(self, layer_id: str, index: int) -> None:
        if self.session is None:
            return
        try:
            self.session.move(layer_id, index)
        except DemixError as exc:
            self.error.emit(str(exc))
            self.rebuild()

    def _pick_colour(self, layer_id: str) -> None:
        layer = self.session.layer(layer_id)
        colour = QColorDialog.getColor(QColor(layer.colour), self, f"Colour of {layer.name}")
        if colour.isValid():
            self._edit(layer_id, {"colour": colour.name()})

    def duplicate(self, layer_id: str) -> Optional[Layer]:
        """Insert a copy of a layer after it (one undo step). The residual takes
        the difference, so the layers still sum to the mixture at unity."""
        s = self.session
        layer = s.layer(layer_id)
        if layer.is_residual:
            self.error.emit("the residual cannot be duplicated; it is what no layer claims")
            return None
        taken = {x.name for x in s.layers}
        name, i = f"{layer.name} copy", 2
        while name in taken:
            name, i = f"{layer.name} copy {i}", i + 1
        copy = Layer(name, mask=layer.mask, waveform=layer.waveform, colour=layer.colour,
                     gain_db=layer.gain_db, pan=layer.pan, provenance=layer.provenance)
        index = [x.id for x in s.layers].index(layer.id) + 1
        s.history.push(ReplaceLayers([], [copy], label=f"duplicate {layer.name}", index=index))
        return copy

    def merge_selected(self) -> None:
        ids = [i for i in self.selected_layer_ids() if not self.session.layer(i).is_residual]
        try:
            merged = self.session.merge(ids)
        except DemixError as exc:
            self.error.emit(str(exc))
            return
        self.select_layer(merged.id)

    def delete(self, layer_ids: List[str]) -> None:
        """Delete the layers (one undo step); the residual, if among them, stays."""
        ids = [i for i in layer_ids if not self.session.layer(i).is_residual]
        if len(ids) < len(layer_ids):
            self.error.emit("the residual cannot be deleted; it is what no layer claims")
        if ids:
            try:
                self.session.remove(*ids)
            except DemixError as exc:
                self.error.emit(str(exc))

    def show_analysis(self, lid: str) -> AnalysisDialog:
        """Open (non-modal) the DUET histogram or azimugram the layer was separated from."""
        dlg = AnalysisDialog(self.session.layer(lid), self)
        dlg.setModal(False)
        dlg.show()
        self._analysis_dialogs = [d for d in getattr(self, "_analysis_dialogs", [])
                                  if d.isVisible()] + [dlg]  # keep a reference while open
        return dlg

    # -- context menu ----------------------------------------------------------------------
    def _context_menu(self, pos: QPoint) -> None:
        menu = self.build_context_menu(self.list.itemAt(pos))
        if menu is not None:
            menu.exec(self.list.viewport().mapToGlobal(pos))

    def build_context_menu(self, item: Optional[QListWidgetItem]) -> Optional[QMenu]:
        if item is None or self.session is None:
            return None
        if not item.isSelected():
            self.list.setCurrentItem(item)
        lid = item.data(ID_ROLE)
        layer = self.session.layer(lid)
        menu = QMenu(self)
        sub = menu.addMenu("Re-separate with")
        for name in self.methods:
            act = QAction(name, sub)
            act.triggered.connect(lambda _c=False, n=name: self.reseparateRequested.emit(lid, n))
            sub.addAction(act)
        sub.setEnabled(bool(self.methods))
        prov = layer.provenance
        # The method's name for the layer, not the one shown: a rename, or the input's
        # name before it ("harmonic: rest"), would read as a new target to the method.
        target = (prov.name_in_run if prov is not None and prov.name_in_run is not None
                  else layer.name)
        veto = menu.addAction("Paint what does not belong here",
                              lambda: self.paintNotRequested.emit(target))
        # Only for a run whose method reads paint: another would ignore it on Re-run.
        refusal = self.session.paint_refusal(layer)
        menu.setToolTipsVisible(True)
        veto.setToolTip(f"Paint target not:{target}: strokes over energy that should leave this "
                        f"layer; then Re-run with paint moves it to the run's other layers"
                        if refusal is None else refusal)
        veto.setEnabled(refusal is None)
        menu.addAction("Export…", lambda: self.exportRequested.emit(
            self.selected_layer_ids() or [lid]))
        kind = analysis_kind(layer)
        if kind is not None:
            menu.addAction(MENU_TITLES[kind], lambda: self.show_analysis(lid))
        rename = menu.addAction("Rename", lambda: (self.row(lid).name.setFocus(),
                                                   self.row(lid).name.selectAll()))
        rename.setEnabled(not layer.is_residual)
        dup = menu.addAction("Duplicate", lambda: self.duplicate(lid))
        dup.setEnabled(not layer.is_residual)
        movable = [i for i in self.selected_layer_ids() if not self.session.layer(i).is_residual]
        merge = menu.addAction("Merge selected", self.merge_selected)
        merge.setEnabled(len(movable) >= 2)
        delete = menu.addAction("Delete", lambda: self.delete(movable or [lid]))
        delete.setEnabled(bool(movable))
        return menu
