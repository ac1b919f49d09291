"""The method panel: pick a method, fill its generated form, give hints, run.

The form is generated from the method's params dataclass (``param_specs``):
integers and floats become spin boxes with the declared range, booleans
check boxes, parameters with choices combo boxes, tuples text fields (the
CLI's syntax: ``1, 2, 5`` or ``1:50``); each field's help is its tooltip.
Parameters declared ``advanced`` (the NMF engine's divergence, tolerance,
device, precision...) come last, folded under an "Advanced" toggle.
Methods are looked up in the registry by name when the panel is filled and
again at run time, so methods registered later (other modules) appear too.

Hints come from the paint overlay (``session.hints_from_paint()``), example
recordings (imported files, or the microphone when there is one) and the
time selection (a time range for the chosen target). A method is handed, and
the panel lists, only the kinds of hints it reads (``Method.hint_kinds``).

The panel only asks; ``MainWindow`` runs jobs (``runRequested``).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout,
                               QGroupBox, QHBoxLayout, QLabel, QLineEdit, QListWidget,
                               QListWidgetItem, QPushButton, QScrollArea, QSpinBox, QToolButton,
                               QVBoxLayout, QWidget)

from demixstudio.errors import DemixError, ParameterError
from demixstudio.gui.drops import accept_files, local_files
from demixstudio.gui.worker import JobRunner
from demixstudio.separation.base import AudioHint, Hints, ParamSpec, make_params, param_specs
from demixstudio.separation.hintfiles import load_recording
from demixstudio.separation.registry import available, get_method
from demixstudio.session.session import provenance_params

INT_LIMIT = 2 ** 31 - 1
FLOAT_LIMIT = 1e12
#: The ``Hints`` field (a ``Method.hint_kinds`` entry) each kind of recording goes to.
RECORDING_KINDS = {"example": "examples", "hum": "hums"}
RERUN_TIP = ("Repeat the run that made the selected layer, with what is painted now, "
             "replacing that run's layers (the refinement loop: paint not:NAME over what a "
             "layer should not hold)")


#: The editor's way of giving each kind of hint, for the CLI's ``--hint KIND:NAME=FILE``
#: that a method's reason names when hints are missing (the CLI keeps that wording).
HINT_ADVICE = {
    "paint": "paint over each source on the spectrogram, one paint target per source",
    "example": "import example recordings with “Example file…” under Hints",
    "hum": "import a hum file with “Hum file…” under Hints, or record one with “Record…”",
}
_CLI_HINT = re.compile(r"--hint (\w+):[A-Z]+=[A-Z]+")  # the placeholders: NAME=FILE


def editor_reason(reason: str) -> str:
    """``reason`` (a one-line error) with the CLI's ``--hint KIND:NAME=FILE`` said as
    what to do in the editor; anything else is left as it is."""
    return _CLI_HINT.sub(lambda m: HINT_ADVICE.get(m.group(1), m.group(0)), reason)


def _decimals(spec: ParamSpec) -> int:
    """Enough decimals to show the default and the bounds exactly (2 to 8)."""
    need = 2
    for v in (spec.default, spec.min, spec.max):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v == 0:
            continue
        text = repr(float(v))
        if "e" in text:
            mant, exp = text.split("e")
            digits = len(mant.split(".")[1].rstrip("0")) if "." in mant else 0
            need = max(need, digits - int(exp))
        else:
            need = max(need, len(text.split(".")[1].rstrip("0")))
    return min(8, need)


def _tuple_text(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ", ".join(str(v) for v in value)
    return str(value)


class LogSpinBox(QDoubleSpinBox):
    """A spin box for positive values spanning decades (tolerances, learning rates):
    shown in %g notation, the arrows multiply or divide by 10."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setDecimals(300)  # no rounding: the value is kept as typed

    def textFromValue(self, value: float) -> str:
        return f"{value:.6g}"

    def valueFromText(self, text: str) -> float:
        try:
            return float(text.replace(self.suffix(), "").strip())
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int):
        t = text.strip()
        try:
            v = float(t)
        except ValueError:
            ok = t == "" or t[-1] in "eE+-." or t in ("-",)
            return (QValidator.State.Intermediate if ok else QValidator.State.Invalid), text, pos
        ok = self.minimum() <= v <= self.maximum()
        return (QValidator.State.Acceptable if ok else QValidator.State.Intermediate), text, pos

    def stepBy(self, steps: int) -> None:
        v = self.value()
        if v > 0:
            self.setValue(min(self.maximum(), max(self.minimum(), v * 10.0 ** steps)))


class RecordingList(QListWidget):
    """The list of example recordings; audio files dropped on it are added to it
    (``filesDropped``), rather than passing up to the window, which would open the
    first as the mixture in place of the session."""

    filesDropped = Signal(list)

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)

    def dragEnterEvent(self, event) -> None:
        accept_files(event)

    def dragMoveEvent(self, event) -> None:
        accept_files(event)

    def dropEvent(self, event) -> None:
        files = local_files(event)
        if not files:
            event.ignore()
            return
        event.acceptProposedAction()
        self.filesDropped.emit(files)


def _spans_decades(spec: ParamSpec) -> bool:
    lo, hi, d = spec.min, spec.max, float(spec.default)
    if lo is None or lo <= 0:
        return False
    return (hi is not None and hi / lo >= 1e4) or 0 < d < 1e-3


class ParamForm(QWidget):
    """Widgets for the fields of one params dataclass."""

    def __init__(self, params_cls: type, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.params_cls = params_cls
        self.specs = param_specs(params_cls)
        self.widgets: Dict[str, QWidget] = {}
        self._form = form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        # Settings few users change (``param(advanced=True)``: the engine's divergence,
        # tolerance, device...) come after the method's own, folded under a toggle: the
        # hum's pitch and balance, say, come first instead of under eight engine rows.
        ordered = ([s for s in self.specs if not s.advanced]
                   + [s for s in self.specs if s.advanced])
        self.advanced_toggle = QToolButton()
        self.advanced_toggle.setText(f"Advanced ({sum(s.advanced for s in self.specs)})")
        self.advanced_toggle.setCheckable(True)
        self.advanced_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_toggle.setAutoRaise(True)
        self.advanced_toggle.setToolTip("Settings most runs leave as they are")
        self.advanced_toggle.toggled.connect(self._show_advanced)
        self._advanced_rows: List[int] = []
        for spec in ordered:
            if spec.advanced and not self._advanced_rows:
                form.addRow(self.advanced_toggle)
            w = self._widget_for(spec)
            tip = f"<b>{spec.label}</b> (<code>{spec.name}</code>)<br>{spec.help}"
            if spec.min is not None or spec.max is not None:
                tip += f"<br>range: {spec.min if spec.min is not None else '−∞'} … " \
                       f"{spec.max if spec.max is not None else '∞'}"
            w.setToolTip(tip)
            label = QLabel(spec.label)
            label.setToolTip(tip)
            form.addRow(label, w)
            self.widgets[spec.name] = w
            if spec.advanced:
                self._advanced_rows.append(form.rowCount() - 1)
                form.setRowVisible(form.rowCount() - 1, False)

    def _show_advanced(self, shown: bool) -> None:
        """Unfold (or fold) the advanced settings' rows."""
        for row in self._advanced_rows:
            self._form.setRowVisible(row, shown)
        self.advanced_toggle.setArrowType(Qt.ArrowType.DownArrow if shown
                                          else Qt.ArrowType.RightArrow)

    def _widget_for(self, spec: ParamSpec) -> QWidget:
        if spec.choices is not None:
            w = QComboBox()
            for c in spec.choices:
                w.addItem(str(c), c)
            w.setCurrentIndex(max(0, list(spec.choices).index(spec.default)
                                  if spec.default in spec.choices else 0))
            return w
        if spec.type == "bool":
            w = QCheckBox()
            w.setChecked(bool(spec.default))
            return w
        if spec.type == "int":
            w = QSpinBox()
            w.setRange(int(spec.min) if spec.min is not None else -INT_LIMIT,
                       int(spec.max) if spec.max is not None else INT_LIMIT)
            w.setValue(int(spec.default))
            w.setKeyboardTracking(False)
            return w
        if spec.type == "float" and _spans_decades(spec):
            w = LogSpinBox()
            w.setRange(float(spec.min), float(spec.max) if spec.max is not None else FLOAT_LIMIT)
            w.setValue(float(spec.default))
            w.setKeyboardTracking(False)
            return w
        if spec.type == "float":
            w = QDoubleSpinBox()
            w.setDecimals(_decimals(spec))
            w.setRange(float(spec.min) if spec.min is not None else -FLOAT_LIMIT,
                       float(spec.max) if spec.max is not None else FLOAT_LIMIT)
            span = (spec.max - spec.min) if spec.min is not None and spec.max is not None else None
            w.setSingleStep(10 ** math.floor(math.log10(span / 100)) if span else
                            max(10 ** -w.decimals(), abs(float(spec.default)) / 10 or 0.1))
            w.setValue(float(spec.default))
            w.setKeyboardTracking(False)
            return w
        w = QLineEdit(_tuple_text(spec.default))
        if spec.type == "int-tuple":
            w.setPlaceholderText("integers: 1, 2, 5 or a range 1:50")
        elif spec.type == "float-tuple":
            w.setPlaceholderText("numbers: 0.5, 1.0")
        return w

    def values(self) -> Tuple[Dict[str, Any], Dict[str, str]]:
        """(typed values, strings to parse) from the widgets."""
        typed: Dict[str, Any] = {}
        strings: Dict[str, str] = {}
        for spec in self.specs:
            w = self.widgets[spec.name]
            if isinstance(w, QComboBox):
                typed[spec.name] = w.currentData()
            elif isinstance(w, QCheckBox):
                typed[spec.name] = w.isChecked()
            elif isinstance(w, (QSpinBox, QDoubleSpinBox)):
                typed[spec.name] = w.value()
            elif isinstance(w, QLineEdit):
                if spec.type == "str":
                    typed[spec.name] = w.text()
                else:  # tuples: the CLI's syntax, parsed by make_params
                    strings[spec.name] = w.text()
        return typed, strings

    def params(self) -> Any:
        """A validated params instance; raises ``ParameterError`` naming the bad field."""
        typed, strings = self.values()
        return make_params(self.params_cls, values=typed, strings=strings)

    def set_values(self, values: Dict[str, Any]) -> None:
        """Fill the form from a dict (e.g. a layer's provenance); unknown keys are ignored."""
        for spec in self.specs:
            if spec.name not in values:
                continue
            v = values[spec.name]
            w = self.widgets[spec.name]
            if isinstance(w, QComboBox):
                i = w.findData(v)
                if i >= 0:
                    w.setCurrentIndex(i)
            elif isinstance(w, QCheckBox):
                w.setChecked(bool(v))
            elif isinstance(w, QSpinBox):
                w.setValue(int(v))
            elif isinstance(w, QDoubleSpinBox):
                w.setValue(float(v))
            elif isinstance(w, QLineEdit):
                w.setText(_tuple_text(v))


def recording_length(hint: AudioHint) -> str:
    """How long a recording in the list is: "12.0 s", or for a long file sampled as
    it was read, "120 s sampled from 1:00:00"."""
    secs = hint.audio.shape[1] / hint.sr
    if hint.whole_s is None:
        return f"{secs:.1f} s"
    whole = int(round(hint.whole_s))
    h, m, sec = whole // 3600, whole // 60 % 60, whole % 60
    return f"{secs:.0f} s sampled from " + (f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}")


class MethodPanel(QWidget):
    """Method picker, generated form, hints and the Run buttons.

    Signals
    -------
    runRequested(method, params, hints, on) : ``on`` is a layer id or None (the mixture)
    rerunRequested(method, params, hints, layer) : repeat the run that made ``layer``
        with the current hints (the refinement loop)
    recordRequested(target) : the user asked to record an example from the microphone
    methodChanged(name)
    notice(text) : something the user should know that is not an error (a recording
        added though cut short)
    error(text) : a one-line reason (an example file that could not be read)
    exampleLoaded(path) : an example file asked for with ``load_example_file`` is in
        the list
    """

    runRequested = Signal(str, object, object, object)
    rerunRequested = Signal(str, object, object, str)
    recordRequested = Signal(str)
    methodChanged = Signal(str)
    error = Signal(str)
    notice = Signal(str)
    exampleLoaded = Signal(str)

    def __init__(self, parent: Optional[QWidget] = None, *, default_method: str = "ica") -> None:
        super().__init__(parent)
        self.session = None
        self._unsubscribe = None
        self.selected_layer: Optional[str] = None
        self.time_selection: Optional[Tuple[float, float]] = None
        # (kind, target, recording), kind "example" or "hum", in the order imported;
        # the list shows those of the kinds the method reads.
        self.examples: List[Tuple[str, str, AudioHint]] = []
        self.form: Optional[ParamForm] = None
        self.recording_reason = ""
        # Example files are read off the GUI thread, one after another:
        # (path, target, kind) of those asked for and not started yet.
        self._loader = JobRunner(self)
        self._loader.failed.connect(lambda _label, reason, _details: self.error.emit(reason))
        self._loader.finished.connect(self._load_next)
        self._pending_loads: List[Tuple[str, str, str]] = []
        self._reading = ""  # the name of the file being read

        outer = QVBoxLayout(self)
        outer.setContentsMargins(6, 6, 6, 6)
        self.method = QComboBox()
        self.method.currentTextChanged.connect(self._method_changed)
        outer.addWidget(self.method)
        self.summary = QLabel()
        self.summary.setObjectName("dimLabel")
        self.summary.setWordWrap(True)
        outer.addWidget(self.summary)

        self.params_box = params_box = QGroupBox("Parameters")
        pl = QVBoxLayout(params_box)
        pl.setContentsMargins(4, 4, 4, 4)
        self.form_area = QScrollArea()
        self.form_area.setWidgetResizable(True)
        self.form_area.setFrameShape(QScrollArea.Shape.NoFrame)
        pl.addWidget(self.form_area)
        # The form takes the dock's free height, up to its own (then the stretch
        # below takes the rest); the hints keep their natural height.
        outer.addWidget(params_box, 10)

        # Only the hints the method reads are shown (``Method.hint_kinds``): a method
        # without any leaves the dock to its parameters.
        self.hints_box = QGroupBox("Hints")
        hl = QVBoxLayout(self.hints_box)
        self.paint_hints = QWidget()
        pl = QVBoxLayout(self.paint_hints)
        pl.setContentsMargins(0, 0, 0, 0)
        self.use_paint = QCheckBox("Use the painted hints")
        self.use_paint.setChecked(True)
        self.use_paint.setToolTip("Pass what is painted on the spectrogram (one hint per "
                                  "paint target) to methods that take hints")
        pl.addWidget(self.use_paint)
        self.paint_summary = QLabel("nothing painted")
        self.paint_summary.setObjectName("dimLabel")
        self.paint_summary.setWordWrap(True)
        pl.addWidget(self.paint_summary)
        hl.addWidget(self.paint_hints)
        trow = QHBoxLayout()
        self._target_label = QLabel("Target")
        trow.addWidget(self._target_label)
        self.target = QComboBox()
        self.target.setEditable(True)
        self.target.setToolTip("The source that examples and the time selection describe")
        trow.addWidget(self.target, 1)
        hl.addLayout(trow)
        self.use_selection = QCheckBox("Time selection: none")
        self.use_selection.setEnabled(False)
        self.use_selection.setToolTip("Tell the method the target is active in the "
                                      "time range selected on the ruler")
        hl.addWidget(self.use_selection)
        self.example_hints = QWidget()
        el = QVBoxLayout(self.example_hints)
        el.setContentsMargins(0, 0, 0, 0)
        self.examples_label = QLabel("Example recordings")
        el.addWidget(self.examples_label)
        self.example_list = RecordingList()
        self.example_list.setMaximumHeight(70)
        self.example_list.setToolTip("Example recordings of targets (drop audio files here "
                                     "to add them for the chosen target)")
        self.example_list.filesDropped.connect(
            lambda paths: [self.load_example_file(p) for p in paths])
        el.addWidget(self.example_list)
        self.other_recordings = QLabel()
        self.other_recordings.setObjectName("dimLabel")
        self.other_recordings.setWordWrap(True)
        el.addWidget(self.other_recordings)
        erow = QHBoxLayout()
        self.add_example = QPushButton("Example file…")
        self.add_example.setToolTip("Import a clean recording of the target")
        self.add_example.clicked.connect(self._browse_example)
        self.record_button = QPushButton("Record…")
        self.record_button.clicked.connect(lambda: self.recordRequested.emit(self.target_name()))
        self.remove_example = QPushButton("Remove")
        self.remove_example.clicked.connect(self._remove_example)
        for b in (self.add_example, self.record_button, self.remove_example):
            erow.addWidget(b)
        el.addLayout(erow)
        self.record_note = QLabel()
        self.record_note.setObjectName("dimLabel")
        self.record_note.setWordWrap(True)
        el.addWidget(self.record_note)
        self.loading_note = QLabel()
        self.loading_note.setObjectName("dimLabel")
        self.loading_note.setWordWrap(True)
        self.loading_note.setVisible(False)
        el.addWidget(self.loading_note)
        hl.addWidget(self.example_hints)
        self.file_kind = "example"  # what an imported file is: "example" or "hum"
        self.shown_hints: set = set()  # the hint kinds of the current method
        outer.addWidget(self.hints_box)
        # Space left when the form is whole; none of it while the form is scrolled.
        outer.addStretch(0)

        onrow = QHBoxLayout()
        onrow.addWidget(QLabel("Run on"))
        self.run_on = QComboBox()
        self.run_on.addItem("the mixture", None)
        self.run_on.setToolTip("On the mixture the new layers replace all layers; on a layer "
                               "they replace that layer")
        self.run_on.currentIndexChanged.connect(self._update_buttons)
        onrow.addWidget(self.run_on, 1)
        outer.addLayout(onrow)
        self.run_button = QPushButton("Separate")
        self.run_button.setObjectName("primaryButton")
        self.run_button.clicked.connect(self.request_run)
        outer.addWidget(self.run_button)
        self.rerun_button = QPushButton("Re-run with paint")
        self.rerun_button.setToolTip(RERUN_TIP)
        self.rerun_button.clicked.connect(self.request_rerun)
        outer.addWidget(self.rerun_button)

        self.default_method = default_method
        self.method.setEnabled(False)
        self.method.blockSignals(True)
        self.method.addItem("loading methods…")
        self.method.blockSignals(False)
        self.set_recording_available(False, "")
        self._update_buttons()

    # -- methods ---------------------------------------------------------------------
    def refresh_methods(self, prefer: Optional[str] = None) -> None:
        """Fill the picker from the registry (keeps the current choice if still there)."""
        keep = prefer or (self.method.currentText() if self.method.isEnabled()
                          else self.default_method)
        names = available()
        self.method.setEnabled(True)
        self.method.blockSignals(True)
        self.method.clear()
        for name in names:
            m = get_method(name)
            self.method.addItem(name)
            i = self.method.count() - 1
            self.method.setItemData(i, f"{m.title}: {m.summary}" if m.title else m.summary,
                                    Qt.ItemDataRole.ToolTipRole)
        self.method.blockSignals(False)
        if keep in names:
            self.method.setCurrentText(keep)
        self._method_changed(self.method.currentText())

    def select_method(self, name: str) -> None:
        if self.method.findText(name) < 0 or not self.method.isEnabled():
            self.refresh_methods(name)
        self.method.setCurrentText(name)

    def method_name(self) -> str:
        return self.method.currentText()

    def _method_changed(self, name: str) -> None:
        if not name or not self.method.isEnabled():
            return
        m = get_method(name)
        refs = "<br>".join(m.references[:3])
        self.summary.setText(m.summary or m.title)
        self.summary.setToolTip(f"<b>{m.title}</b><br>{m.summary}<br><i>{refs}</i>")
        self.form = ParamForm(m.Params)
        self.form_area.setWidget(self.form)
        # A bound method, not a lambda holding the panel: a closure over ``self`` in a
        # child's connection makes a cycle that outlives the widgets (in the tests, a
        # deleted panel's refresh_targets then ran in a later test and failed).
        self.form.advanced_toggle.toggled.connect(self._fit_form_height)
        kinds = set(m.hint_kinds)
        self._show_hints(kinds)
        self._fit_form_height()
        self.methodChanged.emit(name)

    def _fit_form_height(self, *_: object) -> None:
        """No taller than the form (the box neither): the dock's free height below it
        goes to the stretch. Again when the advanced settings fold or unfold."""
        self.form.adjustSize()
        height = self.form.sizeHint().height() + 8
        self.form_area.setMaximumHeight(height)
        frame = (self.params_box.minimumSizeHint().height()
                 - self.form_area.minimumSizeHint().height())
        self.params_box.setMaximumHeight(height + max(0, frame))

    def _show_hints(self, kinds: set) -> None:
        """Show the hint controls of ``kinds`` (``Method.hint_kinds``) only. A method
        that reads hums but not examples takes an imported file as a hum, so a hum
        can be given without a microphone."""
        self.shown_hints = set(kinds)
        self.hints_box.setVisible(bool(kinds))
        self.paint_hints.setVisible("paint" in kinds)
        recordings = bool(kinds & {"examples", "hums"})
        self.example_hints.setVisible(recordings)
        # The target row goes with the recordings (paint names its own targets).
        for w in (self.target, self._target_label):
            w.setVisible(recordings)
        self.use_selection.setVisible("time_ranges" in kinds)
        # A recording from the microphone is a hum: only for methods that read hums.
        self.record_button.setVisible("hums" in kinds)
        self.record_note.setVisible("hums" in kinds and bool(self.record_note.text()))
        self.file_kind = "hum" if "hums" in kinds and "examples" not in kinds else "example"
        if self.file_kind == "hum":
            self.examples_label.setText("Hums (the target hummed, sung or whistled)")
            self.add_example.setText("Hum file…")
            self.add_example.setToolTip("Import a recording of the target hummed, sung or "
                                        "whistled (any pitch)")
        else:
            self.examples_label.setText("Example recordings")
            self.add_example.setText("Example file…")
            self.add_example.setToolTip("Import a clean recording of the target")
        self._fill_recordings()

    def params(self) -> Any:
        if self.form is None:
            self.refresh_methods()
        return self.form.params()

    # -- session, layer and selection --------------------------------------------------
    def set_session(self, session) -> None:
        if self._unsubscribe:
            self._unsubscribe()
            self._unsubscribe = None
        self.session = session
        self.examples.clear()
        self.example_list.clear()
        self.selected_layer = None
        self.time_selection = None
        if session is not None:
            self._unsubscribe = session.subscribe(self._on_event)
        self.refresh_targets()
        self._refresh_run_on()
        self.set_time_selection(0.0, 0.0)

    def _on_event(self, kind: str, payload: dict) -> None:
        if kind in ("paint", "history"):
            self.refresh_targets()
        if kind in ("layers", "layer"):
            if self.selected_layer is not None:
                try:
                    self.session.layer(self.selected_layer)
                except DemixError:
                    self.selected_layer = None
            self._refresh_run_on()

    def set_selected_layer(self, layer_id: Optional[str]) -> None:
        self.selected_layer = layer_id
        self._refresh_run_on()

    def _refresh_run_on(self) -> None:
        self.run_on.blockSignals(True)
        want_layer = self.run_on.currentData() is not None
        while self.run_on.count() > 1:
            self.run_on.removeItem(1)
        if self.session is not None and self.selected_layer is not None:
            layer = self.session.layer(self.selected_layer)
            self.run_on.addItem(f"the layer “{layer.name}”", layer.id)
            if want_layer:
                self.run_on.setCurrentIndex(1)
        self.run_on.blockSignals(False)
        self._update_buttons()

    def set_run_on_layer(self, on_layer: bool) -> None:
        self.run_on.setCurrentIndex(1 if on_layer and self.run_on.count() > 1 else 0)

    def set_time_selection(self, t0: float, t1: float) -> None:
        if t1 > t0:
            self.time_selection = (t0, t1)
            self.use_selection.setText(f"Target active in {t0:.2f}–{t1:.2f} s (selection)")
            self.use_selection.setEnabled(True)
        else:
            self.time_selection = None
            self.use_selection.setText("Time selection: none")
            self.use_selection.setChecked(False)
            self.use_selection.setEnabled(False)

    def refresh_targets(self) -> None:
        """The targets combo and the paint summary from the session's paint store."""
        names: List[str] = []
        painted: List[str] = []
        paint = getattr(self.session, "paint", None) if self.session is not None else None
        if paint is not None:
            names = list(paint.targets())
            painted = [n for n in names if not paint.is_empty(n)]
        current = self.target.currentText()
        self.target.blockSignals(True)
        self.target.clear()
        for n in names:
            self.target.addItem(n)
        if current:
            self.target.setCurrentText(current)
        elif not names:
            self.target.setCurrentText("target")
        self.target.blockSignals(False)
        self.paint_summary.setText("painted: " + ", ".join(painted) if painted
                                   else "nothing painted")
        self._update_buttons()

    def target_name(self) -> str:
        return self.target.currentText().strip() or "target"

    def set_recording_available(self, ok: bool, reason: str) -> None:
        self.recording_reason = reason
        self.record_button.setEnabled(ok)
        self.record_button.setToolTip(
            "Record a vocalized hint (hum or sing the target) from the microphone" if ok
            else reason)
        self.record_note.setText("" if ok else reason)
        self.record_note.setVisible(not ok and bool(reason) and "hums" in self.shown_hints)

    def rerun_refusal(self) -> Optional[str]:
        """Why "Re-run with paint" cannot refine the selected layer (None if it can):
        none is selected, or the method of the run that made it does not read paint
        (its rerun would change nothing)."""
        if self.session is None or self.selected_layer is None:
            return "Select a layer made by a method that reads paint"
        try:
            layer = self.session.layer(self.selected_layer)
        except DemixError as exc:
            return str(exc)
        return self.session.paint_refusal(layer)

    def _update_buttons(self) -> None:
        has = self.session is not None
        self.run_button.setEnabled(has)
        refusal = self.rerun_refusal()
        self.rerun_button.setEnabled(refusal is None)
        self.rerun_button.setToolTip(RERUN_TIP if refusal is None else refusal)
        self.run_button.setText("Separate layer" if self.run_on.currentData() else "Separate")

    # -- examples ------------------------------------------------------------------------
    # A recording keeps the kind it was imported as, and a method sees only those of the
    # kinds it reads (the list, and the hints it is handed). A clean example is not a hum
    # (nmf-hum reads a hum as an imitation of the target, not as the target itself), so
    # nothing is converted: examples imported for nmf-supervised do not become nmf-hum's
    # hums, and they are there again when a method that reads examples is picked.
    def add_example_audio(self, target: str, hint: AudioHint, kind: str = "example") -> None:
        """Add a recording of ``target``: kind "example" (a clean recording) or
        "hum" (a vocalized imitation, e.g. from the microphone)."""
        if kind not in ("example", "hum"):
            raise ParameterError(f"recording kind {kind!r} must be 'example' or 'hum'")
        self.examples.append((kind, target, hint))
        self._fill_recordings()

    def _fill_recordings(self) -> None:
        """List the recordings of the kinds the method reads; say how many others are kept."""
        self.example_list.clear()
        others: Dict[str, int] = {}
        for i, (kind, target, hint) in enumerate(self.examples):
            if RECORDING_KINDS[kind] not in self.shown_hints:
                others[kind] = others.get(kind, 0) + 1
                continue
            label = Path(hint.source).name if hint.source else "recording"
            item = QListWidgetItem(f"{target} ← {kind}: {label} ({recording_length(hint)})")
            item.setData(Qt.ItemDataRole.UserRole, i)
            self.example_list.addItem(item)
        kept = ", ".join(f"{n} {kind}{'s' if n != 1 else ''}" for kind, n in others.items())
        self.other_recordings.setText(
            f"Also kept, for methods that read them: {kept}" if kept else "")
        self.other_recordings.setVisible(bool(kept))

    def shown_recordings(self) -> List[Tuple[str, str, AudioHint]]:
        """The recordings the list shows: (kind, target, recording)."""
        return [self.examples[self.example_list.item(r).data(Qt.ItemDataRole.UserRole)]
                for r in range(self.example_list.count())]

    def add_example_file(self, path: str, target: Optional[str] = None) -> None:
        """Read ``path`` and add it as a recording of ``target`` (default: the chosen
        target), now, on this thread; errors are raised (``DemixError``)."""
        self._add_read(target or self.target_name(), self.file_kind,
                       self._read(path, self.session.sr if self.session is not None else None))

    @staticmethod
    def _read(path: str, sr: Optional[int]) -> Tuple[AudioHint, List[str]]:
        """``path`` read at ``sr`` (a long one sampled: ``load_recording``):
        (the recording, sentences for the user: a file cut short is added for what it
        holds, and said)."""
        told: List[str] = []
        return load_recording(path, sr, on_warning=told.append), told

    def _add_read(self, target: str, kind: str, read: Tuple[AudioHint, List[str]]) -> None:
        hint, told = read
        self.add_example_audio(target, hint, kind)
        for text in told:
            self.notice.emit(text)

    def load_example_file(self, path: str, target: Optional[str] = None) -> None:
        """:meth:`add_example_file` off the GUI thread, so the window stays live while a
        long recording is read (an hour of 44.1 kHz stereo WAV, which is sampled as it
        is read: ``load_recording``). Files asked for while one loads are read in turn;
        each keeps the target and kind chosen when it was asked for. A file that
        cannot be read is reported by ``error`` and adds nothing; each one added is
        reported by ``exampleLoaded``."""
        self._pending_loads.append((str(path), target or self.target_name(), self.file_kind))
        if self._loader.busy:
            self._show_loading()
        else:
            self._load_next()

    @property
    def loading_examples(self) -> bool:
        """Whether example files are being read or wait to be."""
        return self._loader.busy or bool(self._pending_loads)

    def stop_loading(self, ms: int = 60000) -> bool:
        """Forget the files waiting to be read and wait for the one being read (a
        file's decoding cannot be interrupted); for closing the window."""
        self._pending_loads.clear()
        return self._loader.wait(ms)

    def _load_next(self, *_: object) -> None:
        if self._loader.busy:
            return
        if not self._pending_loads:
            self.loading_note.setVisible(False)
            return
        path, target, kind = self._pending_loads.pop(0)
        sr = self.session.sr if self.session is not None else None

        def apply(read):
            self._add_read(target, kind, read)
            self.exampleLoaded.emit(path)

        self._reading = Path(path).name
        self._show_loading()
        self._loader.start(f"reading {self._reading}", lambda _ctx: self._read(path, sr), apply)

    def _show_loading(self) -> None:
        waiting = len(self._pending_loads)
        self.loading_note.setText(f"Reading {self._reading}…"
                                  + (f" ({waiting} more waiting)" if waiting else ""))
        self.loading_note.setVisible(True)

    def _browse_example(self) -> None:
        title = ("Hum of the target" if self.file_kind == "hum"
                 else "Example recording of the target")
        path, _ = QFileDialog.getOpenFileName(self, title, "",
                                              "Audio (*.wav *.flac *.ogg *.mp3 *.aif *.aiff);;"
                                              "All files (*)")
        if path:
            self.load_example_file(path)

    def _remove_example(self) -> None:
        item = self.example_list.currentItem()
        if item is not None:
            del self.examples[item.data(Qt.ItemDataRole.UserRole)]
            self._fill_recordings()

    # -- running ---------------------------------------------------------------------------
    def hints(self, kinds: Optional[Iterable[str]] = None) -> Hints:
        """Hints from the paint overlay, the recordings and the time selection, of
        ``kinds`` only (``Method.hint_kinds``; default: the picked method's)."""
        kinds = set(self.shown_hints if kinds is None else kinds)
        hints = Hints()
        if ("paint" in kinds and self.session is not None and self.use_paint.isChecked()
                and hasattr(self.session, "hints_from_paint")):
            hints = self.session.hints_from_paint()
        for kind, target, ex in self.examples:
            if RECORDING_KINDS[kind] in kinds:
                getattr(hints, RECORDING_KINDS[kind]).setdefault(target, []).append(ex)
        if "time_ranges" in kinds and self.time_selection and self.use_selection.isChecked():
            hints.time_ranges.setdefault(self.target_name(), []).append(self.time_selection)
        return hints

    def request_run(self) -> None:
        try:
            params = self.params()
        except ParameterError as exc:
            self.error.emit(str(exc))
            return
        self.runRequested.emit(self.method_name(), params, self.hints(),
                               self.run_on.currentData())

    def request_rerun(self) -> None:
        """Repeat the run that made the selected layer (its method and parameters) on
        what that run was made from, with the current paint: the run's layers are
        replaced (the refinement loop)."""
        if self.session is None or self.selected_layer is None:
            return
        layer = self.session.layer(self.selected_layer)
        try:
            prov = self.session.run_of(layer)[0].provenance
            method = get_method(prov.method)
            params = provenance_params(method, prov)
        except ParameterError as exc:
            self.error.emit(f"{exc} (use Separate with “Run on” this layer instead)")
            return
        refusal = self.rerun_refusal()
        if refusal is not None:
            self.error.emit(refusal)
            return
        # The hints the run's method reads, whichever method is picked in the panel.
        self.rerunRequested.emit(method.name, params, self.hints(method.hint_kinds), layer.id)
