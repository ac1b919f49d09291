"""The main window: spectrogram, layers, methods, transport, menus and files.

``MainWindow`` holds one ``Session``; every widget observes it. Work that can
take long (opening, separating, saving, exporting) runs in the ``JobRunner``
worker thread and is applied on the GUI thread as one undoable step, so the
window stays responsive and Ctrl+Z undoes a whole separation.
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import Any, Callable, List, Optional

import numpy as np
from PySide6.QtCore import QSize, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import (QAction, QActionGroup, QCloseEvent, QColor, QDesktopServices,
                           QDragEnterEvent, QDropEvent, QKeySequence, QPalette)
from PySide6.QtWidgets import (QComboBox, QDockWidget, QDoubleSpinBox, QFileDialog,
                               QInputDialog, QLabel, QMainWindow, QMessageBox, QSpinBox,
                               QToolBar, QToolButton, QVBoxLayout, QWidget)

from demixstudio import __version__
from demixstudio.audio.atomic import describe_os_error
from demixstudio.audio.io import load_audio
from demixstudio.audio.playback import input_status, output_devices, record, set_output_device
from demixstudio.audio.stft import apply_mask
from demixstudio.errors import DemixError, OutputError, ParameterError
from demixstudio.gui.autosave import Autosaver, RecoveryEntry
from demixstudio.gui.dialogs import ExportChoice, ExportDialog, error_dialog
from demixstudio.gui.first_run import show_first_run_hint
from demixstudio.gui.layer_panel import LayerPanel
from demixstudio.gui.method_panel import MethodPanel, editor_reason
from demixstudio.gui.settings import Preferences, log_dir, setup_logging
from demixstudio.gui.spectrogram_view import MAX_HARMONICS, SpectrogramView
from demixstudio.gui.transport import Transport
from demixstudio.gui.drops import accept_files, local_files
from demixstudio.gui.worker import BackgroundTask, JobBar, JobRunner, one_line_reason
from demixstudio.separation.base import AudioHint, Hints, LayerProposal, params_to_dict
from demixstudio.separation.registry import available, get_method
from demixstudio.session.export import clipping_warnings, export
from demixstudio.session.project import load_project, save_project
from demixstudio.session.session import Session
from demixstudio.session.operations import run_notes

log = logging.getLogger("demixstudio.gui")


def _run_message(text: str, layers) -> tuple[str, int]:
    """The status bar's message (and its milliseconds) for a run's ``layers``: ``text``
    and what the method noted about the run, which stays up longer to be read."""
    notes = run_notes(layers)
    return text + "".join(f" — {n}" for n in notes), (15000 if notes else 5000)


AUDIO_FILTER = "Audio files (*.wav *.flac *.ogg *.oga *.mp3 *.aif *.aiff *.caf)"
PROJECT_FILTER = "DemixStudio projects (*.dsproj)"
DEMO_SECONDS = 12.0
TOOLS = (("none", "Navigate", "N", "Zoom and pan; click the ruler to move the playhead"),
         ("brush", "Brush", "B", "Paint weights for the current target"),
         ("rect", "Rectangle", "R", "Paint a time–frequency rectangle"),
         ("lasso", "Lasso", "L", "Paint inside a freehand outline"),
         ("eraser", "Eraser", "E", "Erase paint of the current target"),
         ("harmonic", "Harmonic", "H", "Paint a fundamental and its harmonics at once"))


#: How an undo step's setting names read in the Edit menu (the session's labels
#: name the fields: "change gain_db, mute").
SETTING_WORDS = {"name": "rename", "colour": "colour", "gain_db": "gain", "pan": "pan",
                 "mute": "mute", "solo": "solo"}


def human_step_label(label: Optional[str]) -> str:
    """An undo step's label as the Edit menu shows it: "change gain_db" → "gain";
    "&" kept literal (not a menu mnemonic)."""
    text = (label or "").strip()
    if text.startswith("change "):
        keys = [k.strip() for k in text[len("change "):].split(",") if k.strip()]
        words = [SETTING_WORDS.get(k, k.replace("_", " ")) for k in keys]
        text = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
    return text.replace("&", "&&")


def layer_content_audio(session: Session, layer) -> np.ndarray:
    """A layer's audio at unity, computed from its own (immutable) content.

    For worker threads: it never reads or fills the session's audio cache,
    whose entries an edit on the GUI thread may drop or replace meanwhile.
    """
    if layer.mask is not None:
        return apply_mask(session.mixture, layer.mask, session.stft)
    return layer.waveform


def _present(session: Session, layers) -> bool:
    """Whether all ``layers`` are still in ``session`` (a job may outlive them)."""
    ids = {x.id for x in session.layers}
    return all(x.id in ids for x in layers)


def input_audio_for(session: Session, layer, others) -> np.ndarray:
    """What a method sees when run on ``layer`` (None = the mixture); ``others``
    are the session's layers when the job started (for the residual)."""
    if layer is None:
        return session.mixture
    if not layer.is_residual:
        return layer_content_audio(session, layer)
    res = session.mixture.copy()
    for other in others:
        if not other.is_residual:
            res -= layer_content_audio(session, other)
    return res


class MainWindow(QMainWindow):
    """The editor window.

    Parameters
    ----------
    prefs : Preferences (default: the user's, or ``DEMIXSTUDIO_SETTINGS``)
    autosave : enable autosave (tests turn it off or drive it directly)
    """

    sessionChanged = Signal(object)
    jobApplied = Signal(str)  # label of a job whose result is now in the session

    def __init__(self, *, prefs: Optional[Preferences] = None, autosave: bool = True) -> None:
        super().__init__()
        setup_logging()
        self.prefs = prefs or Preferences()
        self.session: Optional[Session] = None
        self.project_path: Optional[Path] = None
        self.modified = False
        self._unsubscribe: Optional[Callable[[], None]] = None
        self._suspend_dirty = False
        self._locked = False
        # Hooks the tests replace: questions that would block in a modal dialog.
        self.ask_save_changes: Callable[[], str] = self._ask_save_changes
        self.show_error: Callable[[str, str, str], Any] = self._show_error
        # "recover", "discard" (delete the autosave) or "ignore" (keep it for later)
        self.ask_recovery: Callable[[RecoveryEntry], str] = self._ask_recovery
        self.first_run_hint = None
        set_output_device(self.prefs.audio_device())  # before any playback engine opens

        self.setWindowTitle("DemixStudio")
        self.setAcceptDrops(True)
        self.setDockNestingEnabled(True)
        self.resize(1400, 860)

        self.runner = JobRunner(self)
        # A method's reason can name the CLI's way of giving a hint; say the editor's.
        self.runner.failed.connect(lambda label, reason, details: self.show_error(
            f"{label} failed", editor_reason(reason), details))
        self.runner.cancelled.connect(lambda label: self.statusBar().showMessage(
            f"{label}: cancelled — nothing was changed", 5000))
        self.runner.busyChanged.connect(self._busy_changed)

        # centre: spectrogram over the transport
        self.view = SpectrogramView()
        self.transport = Transport()
        centre = QWidget()
        cl = QVBoxLayout(centre)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.setSpacing(0)
        cl.addWidget(self.view, 1)
        cl.addWidget(self.transport)
        self.setCentralWidget(centre)

        self.layer_panel = LayerPanel()
        self.layers_dock = QDockWidget("Layers", self)
        self.layers_dock.setObjectName("layersDock")
        self.layers_dock.setWidget(self.layer_panel)
        self.layers_dock.setMinimumWidth(320)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.layers_dock)

        self.method_panel = MethodPanel(default_method=self.prefs.default_method())
        self.method_dock = QDockWidget("Separate", self)
        self.method_dock.setObjectName("methodDock")
        self.method_dock.setWidget(self.method_panel)
        self.method_dock.setMinimumWidth(300)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.method_dock)
        ok, why = input_status()
        self.method_panel.set_recording_available(ok, why)

        self.autosaver = Autosaver(self.prefs.autosave_interval_s(), self)
        self.autosaver.enabled = autosave
        self.autosaver.saved.connect(self._autosaved)
        self.autosaver.failed.connect(self._autosave_failed)

        self._build_actions()
        self._build_toolbar()
        self._build_menus()
        self._build_statusbar()
        self._connect()
        self._update_actions()
        # Method modules (some import torch) load in the background so the
        # window shows at once; the panel fills in when they are there.
        self._method_loader = BackgroundTask(self)
        self._method_loader.done.connect(self._methods_loaded)
        # Without this the panel would say "loading methods…" for ever.
        self._method_loader._runner.failed.connect(
            lambda label, reason, details: self.show_error(
                "Methods", f"the separation methods could not be loaded: {reason}", details))
        self._method_loader.submit("load methods", lambda ctx: available())

    def _methods_loaded(self, names: List[str]) -> None:
        self.layer_panel.methods = list(names)
        if not self.method_panel.method.isEnabled():
            self.method_panel.refresh_methods()

    # ------------------------------------------------------------------ building
    def _action(self, text: str, slot: Callable, shortcut: Any = None, tip: str = "",
                checkable: bool = False) -> QAction:
        a = QAction(text, self)
        if shortcut is not None:
            seqs = shortcut if isinstance(shortcut, list) else [shortcut]
            a.setShortcuts([QKeySequence(s) for s in seqs])
            a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        if tip:
            a.setToolTip(tip)
            a.setStatusTip(tip)
        a.setCheckable(checkable)
        a.triggered.connect(lambda *_: slot())
        self.addAction(a)
        return a

    def _build_actions(self) -> None:
        A = self._action
        self.act_open = A("&Open…", self.open_dialog, QKeySequence.StandardKey.Open,
                          "Open an audio file or a project")
        self.act_demo = A("Open the &demo", self.open_demo, tip="The built-in demo song")
        self.act_save = A("&Save", self.save, "Ctrl+S", "Save the project (.dsproj)")
        self.act_save_as = A("Save &As…", self.save_as, "Ctrl+Shift+S")
        self.act_export = A("&Export…", self.export_dialog, "Ctrl+E",
                            "Export stems and/or the remix")
        self.act_quit = A("&Quit", self.close, QKeySequence.StandardKey.Quit)
        self.act_undo = A("&Undo", self.undo, "Ctrl+Z")
        self.act_redo = A("&Redo", self.redo, ["Ctrl+Shift+Z", "Ctrl+Y"])
        self.act_play = A("Play / Pause", self.transport.toggle, "Space")
        self.act_stop = A("Stop", self.transport.stop)
        self.act_extract = A("E&xtract selection to new layer", self.extract_selection,
                             "Ctrl+Shift+X", "Move the painted energy of the current target "
                             "into a new layer")
        self.act_remove_sel = A("&Remove selection from layer", self.remove_selection,
                                "Ctrl+Shift+Backspace", "Send the painted energy of the "
                                "shown layer to the residual")
        self.act_clear_paint = A("Clear paint of target", self.clear_paint)
        self.act_new_target = A("New paint target…", self.new_paint_target)
        self.act_cancel = A("Cancel job", self.runner.cancel, "Escape")
        self.tool_group = QActionGroup(self)
        self.tool_actions = {}
        for name, label, key, tip in TOOLS:
            a = A(label, lambda n=name: self.set_tool(n), key, f"{tip} ({key})", checkable=True)
            self.tool_group.addAction(a)
            self.tool_actions[name] = a
        self.tool_actions["none"].setChecked(True)

    def _build_toolbar(self) -> None:
        tb = QToolBar("Tools", self)
        tb.setObjectName("toolsBar")
        tb.setIconSize(QSize(16, 16))
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, tb)
        for name, *_ in TOOLS:
            tb.addAction(self.tool_actions[name])
        tb.addSeparator()
        tb.addWidget(QLabel(" Target "))
        self.target_combo = QComboBox()
        self.target_combo.setMinimumWidth(120)
        self.target_combo.setToolTip("The paint target: strokes paint for it, and methods "
                                     "get one hint per target")
        self.target_combo.currentTextChanged.connect(self._target_chosen)
        tb.addWidget(self.target_combo)
        add = QToolButton()
        # The button shows the action's icon text; menus keep its full text.
        self.act_new_target.setIconText("+")
        add.setDefaultAction(self.act_new_target)
        tb.addWidget(add)
        tb.addWidget(QLabel(" Size "))
        self.brush_size = QSpinBox()
        self.brush_size.setRange(1, 400)
        self.brush_size.setValue(24)
        self.brush_size.setSuffix(" px")
        self.brush_size.setToolTip("Brush size in screen pixels")
        tb.addWidget(self.brush_size)
        tb.addWidget(QLabel(" Strength "))
        self.brush_strength = QDoubleSpinBox()
        self.brush_strength.setRange(0.05, 1.0)
        self.brush_strength.setSingleStep(0.05)
        self.brush_strength.setValue(1.0)
        self.brush_strength.setToolTip("Weight a stroke paints (opacity of the overlay)")
        tb.addWidget(self.brush_strength)
        tb.addWidget(QLabel(" Harmonics "))
        self.brush_harmonics = QSpinBox()
        self.brush_harmonics.setRange(0, MAX_HARMONICS)
        self.brush_harmonics.setSpecialValueText("all")
        self.brush_harmonics.setValue(0)
        self.brush_harmonics.setToolTip(
            "Harmonics the harmonic brush paints, the fundamental first (all: up to "
            "Nyquist). Stop where they fade into other sounds, whose bins would otherwise "
            "go to the target")
        tb.addWidget(self.brush_harmonics)
        tb.addSeparator()
        for act in (self.act_extract, self.act_remove_sel):
            tb.addAction(act)
        self.act_extract.setIconText("Extract")
        self.act_remove_sel.setIconText("Remove")
        tb.addSeparator()
        tb.addWidget(QLabel(" Scale "))
        self.freq_scale = QComboBox()
        for s in ("linear", "log", "mel"):
            self.freq_scale.addItem(s)
        self.freq_scale.setCurrentText(str(self.prefs.value("view/freq_scale", "log")))
        self.freq_scale.setToolTip("Frequency axis")
        tb.addWidget(self.freq_scale)
        tb.addWidget(QLabel(" Floor "))
        self.db_floor = QSpinBox()
        self.db_floor.setRange(-160, -10)
        self.db_floor.setValue(int(self.prefs.value("view/db_floor", -90)))
        self.db_floor.setSuffix(" dB")
        self.db_floor.setToolTip("Level shown as black")
        tb.addWidget(self.db_floor)
        tb.addWidget(QLabel(" Range "))
        self.db_range = QSpinBox()
        self.db_range.setRange(20, 160)
        self.db_range.setValue(int(self.prefs.value("view/db_range", 90)))
        self.db_range.setSuffix(" dB")
        self.db_range.setToolTip("Levels from the floor to floor + range are coloured")
        tb.addWidget(self.db_range)

    def _build_menus(self) -> None:
        mb = self.menuBar()
        f = mb.addMenu("&File")
        f.addAction(self.act_open)
        self.recent_menu = f.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        self._fill_recent()
        f.addAction(self.act_demo)
        f.addSeparator()
        f.addAction(self.act_save)
        f.addAction(self.act_save_as)
        f.addAction(self.act_export)
        f.addSeparator()
        f.addAction(self.act_quit)
        e = mb.addMenu("&Edit")
        e.addAction(self.act_undo)
        e.addAction(self.act_redo)
        p = mb.addMenu("&Paint")
        for name, *_ in TOOLS:
            p.addAction(self.tool_actions[name])
        p.addSeparator()
        p.addAction(self.act_new_target)
        p.addAction(self.act_extract)
        p.addAction(self.act_remove_sel)
        p.addAction(self.act_clear_paint)
        pl = mb.addMenu("P&layback")
        pl.addAction(self.act_play)
        pl.addAction(self.act_stop)
        self.device_menu = pl.addMenu("Output &device")
        self.device_menu.aboutToShow.connect(self._fill_devices)
        self._fill_devices()
        v = mb.addMenu("&View")
        theme_menu = v.addMenu("&Theme")
        self.theme_group = QActionGroup(self)
        self.theme_actions = {}
        for name in ("dark", "light"):
            a = theme_menu.addAction(name.capitalize(), lambda n=name: self.set_theme(n))
            a.setCheckable(True)
            a.setChecked(name == self.prefs.theme())
            self.theme_group.addAction(a)
            self.theme_actions[name] = a
        h = mb.addMenu("&Help")
        h.addAction("Open the log folder", lambda: QDesktopServices.openUrl(
            QUrl.fromLocalFile(str(log_dir()))))
        h.addAction("About DemixStudio", lambda: QMessageBox.about(
            self, "DemixStudio", f"DemixStudio {__version__}\nA layer-based audio editor "
            "built on source separation."))

    def _build_statusbar(self) -> None:
        sb = self.statusBar()
        self.readout = QLabel("")
        self.readout.setObjectName("timeLabel")
        self.readout.setMinimumWidth(220)
        sb.addWidget(self.readout)
        # Shown while autosaving fails (a full disk), until an autosave or a save works.
        self.autosave_warning = QLabel("")
        self.autosave_warning.setObjectName("autosaveWarning")
        # Palette and font, not a style sheet: a widget style sheet slows every
        # status-bar update (the event loop stalled >100 ms during a job with one).
        pal = self.autosave_warning.palette()
        pal.setColor(QPalette.ColorRole.WindowText, QColor("#e0a030"))
        self.autosave_warning.setPalette(pal)
        font = self.autosave_warning.font()
        font.setBold(True)
        self.autosave_warning.setFont(font)
        self.autosave_warning.setVisible(False)
        sb.addPermanentWidget(self.autosave_warning)
        self.job_bar = JobBar(self.runner)
        sb.addPermanentWidget(self.job_bar)

    def _autosaved(self, _path: str) -> None:
        self._clear_autosave_warning()
        self.statusBar().showMessage("Autosaved", 2000)

    def _autosave_failed(self, reason: str) -> None:
        """An autosave could not be written: say so (no dialog; it is tried again)."""
        if self.session is None or not self.modified:
            return  # nothing is at stake any more (saved or closed meanwhile)
        text = f"⚠ Autosave failed: {reason}"
        self.autosave_warning.setText(text)
        self.autosave_warning.setToolTip(
            f"{text}\nYour unsaved changes are not protected against a crash. Autosave is "
            "tried again every few seconds; save the project (Ctrl+S) to keep them.")
        self.autosave_warning.setVisible(True)
        self.statusBar().showMessage(f"Autosave failed: {reason} — save with Ctrl+S to keep "
                                     "your changes", 10000)

    def _clear_autosave_warning(self) -> None:
        self.autosave_warning.setVisible(False)
        self.autosave_warning.setText("")

    def _connect(self) -> None:
        v, lp, mp, tr = self.view, self.layer_panel, self.method_panel, self.transport
        v.cursorMoved.connect(self._cursor_moved)
        v.seekRequested.connect(tr.seek)
        v.timeSelectionChanged.connect(self._time_selection)
        v.strokeFinished.connect(lambda target: self._update_actions())
        tr.positionChanged.connect(v.set_playhead)
        lp.layerSelected.connect(self._layer_selected)
        lp.reseparateRequested.connect(self.reseparate)
        lp.exportRequested.connect(lambda ids: self.export_dialog(ids))
        lp.previewSettings.connect(tr.preview)
        lp.error.connect(lambda reason: self.show_error("Layer", reason, ""))
        mp.runRequested.connect(self.run_method)
        mp.rerunRequested.connect(self.rerun_layer)
        lp.paintNotRequested.connect(lambda target: self.new_paint_target(f"not:{target}"))
        mp.recordRequested.connect(self.record_hum)
        mp.error.connect(lambda reason: self.show_error("Method", reason, ""))
        mp.notice.connect(lambda text: self.statusBar().showMessage(text, 15000))
        mp.methodChanged.connect(self.prefs.set_default_method)
        mp.methodChanged.connect(self._restore_method_params)
        mp.runRequested.connect(lambda name, params, _hints, _on:
                                self._remember_method_params(name, params))
        self.brush_size.valueChanged.connect(self._brush_changed)
        self.brush_strength.valueChanged.connect(self._brush_changed)
        self.brush_harmonics.valueChanged.connect(self.view.set_harmonics)
        self.freq_scale.currentTextChanged.connect(self._scale_changed)
        self.db_floor.valueChanged.connect(self._db_changed)
        self.db_range.valueChanged.connect(self._db_changed)
        self._brush_changed()
        self._scale_changed(self.freq_scale.currentText())
        self._db_changed()

    # ------------------------------------------------------------------ session
    def _first_run_hint_gone(self) -> None:
        self.first_run_hint = None

    def set_session(self, session: Optional[Session], *, project_path: Optional[Path] = None,
                    modified: bool = False) -> None:
        """Show ``session`` in every part of the window."""
        if self.first_run_hint is not None:
            # The hint is about the demo song; another document takes it away.
            self.first_run_hint.dismiss()
            self.first_run_hint = None
        if self._unsubscribe:
            self._unsubscribe()
            self._unsubscribe = None
        self.session = session
        self.project_path = Path(project_path) if project_path else None
        self.view.set_session(session)
        self.layer_panel.set_session(session)
        self.method_panel.set_session(session)
        self.transport.set_session(session)
        self.autosaver.set_session(session, self.project_path)
        self._clear_autosave_warning()
        if session is not None:
            self._unsubscribe = session.subscribe(self._on_session_event)
            self._fill_targets()
            self.view.show_layer(None)
            # The state opened is the clean one; a recovered document has none
            # (it differs from its file until saved).
            if modified:
                session.history.forget_clean()
            else:
                session.history.mark_clean()
        self.modified = modified
        if modified:
            self.autosaver.mark_edited()
        self._update_title()
        self._update_actions()
        self.sessionChanged.emit(session)

    def _on_session_event(self, kind: str, payload: dict) -> None:
        if kind == "history":
            if not self._suspend_dirty:
                # Modified exactly when away from the state opened or last saved:
                # undoing (or redoing) back to it makes the document clean again.
                was = self.modified
                self.modified = not self.session.history.is_clean
                if self.modified:
                    self.autosaver.mark_edited()
                elif was:
                    self.autosaver.mark_clean()
                    self._clear_autosave_warning()
            self._update_title()
            self._update_actions()
        elif kind == "paint":
            # Targets added, removed or recoloured (not strokes): refresh the combo.
            target = payload.get("target")
            whole = payload.get("bins") in ((0, 0), (0, self.session.stft.bins))
            if target is not None and (whole or self.target_combo.findText(target) < 0):
                self._fill_targets(keep=self.target_combo.currentText())
        elif kind == "layers":
            self._update_actions()

    def document_name(self) -> str:
        if self.session is None:
            return ""
        if self.project_path is not None:
            return self.project_path.name
        if self.session.source_path:
            return Path(self.session.source_path).name
        return self.session.name

    def _update_title(self) -> None:
        name = self.document_name()
        self.setWindowTitle(f"{name}{' •' if self.modified else ''} — DemixStudio" if name
                            else "DemixStudio")

    def _update_actions(self) -> None:
        has = self.session is not None
        busy = self.runner.busy
        h = self.session.history if has else None
        self.act_undo.setEnabled(bool(h and h.can_undo) and not busy)
        self.act_redo.setEnabled(bool(h and h.can_redo) and not busy)
        self.act_undo.setText(f"&Undo {human_step_label(h.undo_label())}"
                              if h and h.can_undo else "&Undo")
        self.act_redo.setText(f"&Redo {human_step_label(h.redo_label())}"
                              if h and h.can_redo else "&Redo")
        for a in (self.act_save, self.act_save_as, self.act_export, self.act_extract,
                  self.act_clear_paint, self.act_new_target):
            a.setEnabled(has and not busy)
        shown = self.layer_panel.current_layer_id()
        self.act_remove_sel.setEnabled(has and not busy and shown is not None)
        self.act_cancel.setEnabled(busy)
        self.method_panel.run_button.setEnabled(has and not busy)
        # Only for a layer whose method reads paint (the panel says why not in the tooltip).
        self.method_panel.rerun_button.setEnabled(has and not busy and shown is not None
                                                  and self.method_panel.rerun_refusal() is None)

    def _busy_changed(self, busy: bool) -> None:
        if not busy and self._locked:
            self._locked = False
            for w in (self.view, self.layer_panel, self.method_panel):
                w.setEnabled(True)
        self._update_actions()

    # ------------------------------------------------------------------ files
    def open_dialog(self) -> None:
        if not self._may_discard():
            return
        path, _ = QFileDialog.getOpenFileName(
            self, "Open", str(Path(self.prefs.recent_files()[0]).parent)
            if self.prefs.recent_files() else "",
            f"{AUDIO_FILTER};;{PROJECT_FILTER};;All files (*)")
        if path:
            self.open_path(path, ask=False)

    def open_path(self, path: str | Path, *, ask: bool = True) -> bool:
        """Open an audio file or a ``.dsproj`` in the background. Returns whether it started."""
        if ask and not self._may_discard():
            return False
        path = Path(path)
        if path.suffix.lower() == ".dsproj":
            def work(ctx):
                ctx.progress(0, 1, "reading the project")
                return load_project(path)

            def apply(session):
                self.set_session(session, project_path=path)
                self.prefs.add_recent(str(path))
                return session
        else:
            warnings: list = []  # e.g. a WAV cut short: opened, and said in the status bar

            def work(ctx):
                ctx.progress(0, 1, "decoding")
                audio, sr = load_audio(path, on_warning=warnings.append)
                return Session(audio, sr, name=path.stem, source_path=str(path))

            def apply(session):
                self.set_session(session)
                self.prefs.add_recent(str(path))
                if warnings:
                    self.statusBar().showMessage(" — ".join(warnings), 15000)
                return session
        return self._start(f"Open {path.name}", work, apply)

    def open_demo(self, seconds: float = DEMO_SECONDS) -> bool:
        """The built-in demo song (no file needed)."""
        def work(ctx):
            from demixstudio.demo import DEMO_SR, demo_mixture

            ctx.progress(0, 1, "synthesising")
            mix, _stems = demo_mixture(DEMO_SR, seconds)
            return Session(mix, DEMO_SR, name="demo")

        def apply(session):
            self.set_session(session)
            # The first time ever: a banner saying what to do (shown once).
            self.first_run_hint = show_first_run_hint(self)
            if self.first_run_hint is not None:
                self.first_run_hint.dismissed.connect(self._first_run_hint_gone)
            return session
        return self._start("Open the demo", work, apply)

    def recover(self, entry: RecoveryEntry) -> bool:
        """Open an autosave left by a crash, as an unsaved document (saved, by
        Ctrl+S, to the project file it came from, if any).

        The crash's autosave is kept until this session's own autosave (or a save)
        has been written: a second crash meanwhile still leaves it to recover."""
        def work(ctx):
            return load_project(entry.project)

        def apply(session):
            path = Path(entry.project_path) if entry.project_path else None
            self.set_session(session, project_path=path, modified=True)
            self.autosaver.adopt(entry)
            self.statusBar().showMessage(f"Recovered {entry.describe()}", 8000)
            return session
        return self._start("Recover autosave", work, apply)

    def offer_recovery(self, entries: List[RecoveryEntry]) -> Optional[RecoveryEntry]:
        """Ask whether to recover the newest autosave; the others are kept for later."""
        if not entries:
            return None
        e = entries[0]
        answer = self.ask_recovery(e)
        if answer == "recover":
            self.recover(e)
            return e
        if answer == "discard":
            e.discard()
        return None

    def _ask_recovery(self, e: RecoveryEntry) -> str:
        box = QMessageBox(QMessageBox.Icon.Question, "Recover unsaved work?",
                          f"DemixStudio did not close normally. Recover {e.describe()}?",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Discard
                          | QMessageBox.StandardButton.Ignore, self)
        box.setInformativeText("Discard deletes the autosave; Ignore keeps it for next time.")
        answer = box.exec()
        return {QMessageBox.StandardButton.Yes: "recover",
                QMessageBox.StandardButton.Discard: "discard"}.get(answer, "ignore")

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        files = self.prefs.recent_files()
        for p in files:
            self.recent_menu.addAction(p, lambda p=p: self.open_path(p))
        if files:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear the list", self.prefs.clear_recent)
        else:
            self.recent_menu.addAction("(none)").setEnabled(False)

    def save(self) -> bool:
        if self.session is None:
            return False
        if self.project_path is None:
            return self.save_as()
        return self.save_to(self.project_path)

    def save_as(self) -> bool:
        if self.session is None:
            return False
        start = str(self.project_path or Path(self.session.source_path or self.session.name)
                    .with_suffix(".dsproj"))
        path, _ = QFileDialog.getSaveFileName(self, "Save project", start, PROJECT_FILTER)
        return bool(path) and self.save_to(path)

    def save_to(self, path: str | Path) -> bool:
        """Save the project in the background; the document is clean when it lands."""
        session = self.session
        path = Path(path)
        # The state written: edits made while the file is written keep the
        # document modified (until undone back to it).
        state = session.history.state

        def work(ctx):
            ctx.progress(0, 1, "writing")
            return save_project(session, path)

        def apply(written):
            self.project_path = Path(written)
            self.autosaver.document_path = str(written)
            if self.session is session:
                session.history.mark_clean(state)
            if self.session is session and session.history.is_clean:  # no edit since
                self.modified = False
                self.autosaver.mark_saved(written)
                self._clear_autosave_warning()
            self.prefs.add_recent(str(written))
            self._update_title()
            self.statusBar().showMessage(f"Saved {written}", 4000)
            return written
        return self._start(f"Save {path.name}", work, apply)

    def export_dialog(self, layer_ids: Optional[List[str]] = None) -> None:
        if self.session is None:
            return
        dlg = ExportDialog(self.session, self, preselect=layer_ids,
                           folder=self.prefs.export_folder(), ext=self.prefs.export_format(),
                           bits=self.prefs.export_bits())
        if dlg.exec():
            self.export(dlg.choice())

    def export(self, choice: ExportChoice) -> bool:
        """Write stems and/or the remix in the background."""
        session = self.session
        if not choice.folder:
            self.show_error("Export", "choose a folder to export into", "")
            return False
        folder = Path(choice.folder)
        layers = None if choice.layers is None else [session.layer(i) for i in choice.layers]
        if choice.stems and layers == []:
            self.show_error("Export", "no layer is ticked: tick the layers to write as stems, "
                            "or untick Stems", "")
            return False

        def work(ctx):
            ctx.progress(0, 1, "writing files")
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputError(f"cannot create the folder {folder}: "
                                  f"{describe_os_error(exc)}") from exc
            return export(session, folder, stems=choice.stems, remix=choice.remix,
                          layers=layers, ext=choice.ext, bits=choice.bits,
                          apply_settings=choice.apply_settings)

        def apply(files):
            # Remembered only once it worked: a folder that failed is not offered again.
            self.prefs.set_export(choice.ext, choice.bits, choice.folder)
            clipped = clipping_warnings(files)
            for line in clipped:
                log.warning("export: %s", line)
            note = (f"; {len(clipped)} clipped at full scale (export as float WAV to keep "
                    "them whole)" if clipped else "")
            self.statusBar().showMessage(f"Exported {len(files)} file(s) to {folder}{note}",
                                         15000 if clipped else 6000)
            return files
        # Export reads the session's audio cache from the worker: no edits meanwhile.
        return self._start("Export", work, apply, lock=True)

    def _may_discard(self) -> bool:
        """Whether the current document may be replaced (asks to save if modified)."""
        if self.session is None or not self.modified:
            return True
        answer = self.ask_save_changes()
        if answer == "save":
            return self._save_now()
        return answer == "discard"

    def _save_now(self) -> bool:
        """Save before closing or replacing the document: here and now, not in the
        background, since the document is about to go."""
        path = self.project_path
        if path is None:
            start = str(Path(self.session.source_path or self.session.name).with_suffix(".dsproj"))
            chosen, _ = QFileDialog.getSaveFileName(self, "Save project", start, PROJECT_FILTER)
            if not chosen:
                return False
            path = Path(chosen)
        self.runner.wait()
        try:
            written = save_project(self.session, path)
        except Exception as exc:  # any failure: the document stays, modified and open
            # (MemoryError, a codec's own error...: not only DemixError)
            details = "" if isinstance(exc, DemixError) else traceback.format_exc()
            self.show_error("Save failed", f"{one_line_reason(exc)} — nothing was closed; "
                            "your changes are still open", details)
            return False
        self.project_path = Path(written)
        self.session.history.mark_clean()
        self.modified = False
        self.autosaver.mark_saved(written)
        self._clear_autosave_warning()
        self.prefs.add_recent(str(written))
        self._update_title()
        return True

    def save_changes_question(self) -> str:
        """The close/replace prompt's question. An audio file is never written by
        Save (a project is), so the question names the project for it."""
        if self.project_path is not None:
            return f"Save the changes to {self.project_path.name}?"
        name = self.document_name()
        return (f"“{name}” has unsaved changes. Save them as a DemixStudio project (.dsproj)? "
                "The audio file itself is not changed.")

    def _ask_save_changes(self) -> str:
        box = QMessageBox(QMessageBox.Icon.Question, "Unsaved changes",
                          self.save_changes_question(),
                          QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
                          | QMessageBox.StandardButton.Cancel, self)
        answer = box.exec()
        return {QMessageBox.StandardButton.Save: "save",
                QMessageBox.StandardButton.Discard: "discard"}.get(answer, "cancel")

    def _show_error(self, title: str, reason: str, details: str) -> None:
        error_dialog(self, title, reason, details)

    # drag and drop ------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        accept_files(event)

    def dragMoveEvent(self, event) -> None:
        accept_files(event)

    def dropEvent(self, event: QDropEvent) -> None:
        files = local_files(event)
        if not files:
            event.ignore()
            return
        event.acceptProposedAction()
        # Opened after the drop returns, so the drag source is not kept waiting.
        QTimer.singleShot(0, lambda: self.open_path(files[0]))

    # ------------------------------------------------------------------ jobs
    def _start(self, label: str, work, apply, *, lock: bool = False) -> bool:
        """Run a job; ``lock`` keeps the document read-only until it ends."""
        if self.runner.busy:
            self.statusBar().showMessage(f"Busy with {self.runner.label}; try again when it ends",
                                         4000)
            return False

        def applied(result):
            value = apply(result)
            self.jobApplied.emit(label)
            return value
        self._locked = lock
        started = self.runner.start(label, work, applied)
        if started and lock:
            for w in (self.view, self.layer_panel, self.method_panel):
                w.setEnabled(False)
        return started

    def run_method(self, name: str, params: Any = None, hints: Optional[Hints] = None,
                   on: Optional[str] = None) -> bool:
        """Separate the mixture (``on`` None) or a layer in the background; the
        proposals become layers in one undoable step."""
        session = self.session
        if session is None:
            return False
        layer = session.layer(on) if on is not None else None
        hints = hints or Hints()
        method = get_method(name)
        params = params if params is not None else method.Params()
        sr, stft = session.sr, session.stft
        others = list(session.layers)

        def work(ctx):
            audio = input_audio_for(session, layer, others)
            method.check_input(audio)
            proposals = method.separate(audio, sr, params, hints, ctx)
            if layer is not None and layer.mask is None:
                # On a waveform layer (or the residual) masks become waveforms; do
                # that inverse STFT here rather than on the GUI thread.
                proposals = [p if p.mask is None else LayerProposal(
                    p.name, p.method, p.params, waveform=apply_mask(audio, p.mask, stft),
                    target=p.target, extra=p.extra) for p in proposals]
            return proposals

        def apply(proposals):
            if not proposals:
                raise ParameterError(f"method {name!r} proposed no layers")
            if layer is not None and not _present(session, [layer]):
                raise ParameterError(f"the layer “{layer.name}” was deleted while it was being "
                                     "separated; nothing was changed")
            new = session.apply_proposals(proposals, on=layer, hints=hints)
            self.statusBar().showMessage(*_run_message(
                f"{name}: {len(new)} layer{'s' if len(new) != 1 else ''}", new))
            return new
        where = "the mixture" if layer is None else f"“{layer.name}”"
        return self._start(f"{name} on {where}", work, apply)

    def rerun_layer(self, name: str, params: Any, hints: Optional[Hints], layer_id: str) -> bool:
        """Repeat the run that made a layer with ``hints`` in the background ("Re-run
        with paint"); its layers are replaced in one undoable step (:meth:`Session.rerun`).

        Refused, with no job and no undo step, for a layer whose method does not read
        paint: its rerun would change nothing."""
        session = self.session
        if session is None:
            return False
        try:
            run = session.run_of(layer_id)
            refusal = session.paint_refusal(layer_id)
            if refusal is not None:
                raise ParameterError(refusal)
            hints = session.refinement_hints(run, hints)
        except ParameterError as exc:
            self.show_error("Re-run", str(exc), "")
            return False
        method = get_method(name)
        others = list(session.layers)

        def work(ctx):
            parent, audio = session.rerun_input(
                run, audio_of=lambda x: input_audio_for(session, x, others))
            method.check_input(audio)
            return parent, audio, method.separate(audio, session.sr, params, hints, ctx)

        def apply(result):
            parent, audio, proposals = result
            if not _present(session, run):
                raise ParameterError("a layer of that run was deleted while it was being re-run; "
                                     "nothing was changed")
            new = session.apply_rerun(run, parent, audio, proposals, hints)
            self.statusBar().showMessage(*_run_message(
                f"{name}: {len(run)} layer{'s' if len(run) != 1 else ''} refined", new))
            return new
        return self._start(f"{name}: refining {', '.join(x.name for x in run)}", work, apply)

    def reseparate(self, layer_id: str, method: str) -> None:
        """The layer menu's "Re-separate with": the panel's form for that method, on the layer."""
        self.layer_panel.select_layer(layer_id)
        self.method_panel.select_method(method)
        try:
            params = self.method_panel.params()
        except ParameterError as exc:
            self.show_error("Method", str(exc), "")
            return
        self.run_method(method, params, self.method_panel.hints(), layer_id)

    def record_hum(self, target: str) -> None:
        """Record a vocalized hint for ``target`` from the microphone."""
        if self.session is None:
            return
        seconds, ok = QInputDialog.getDouble(self, "Record a hint",
                                             f"Seconds to record for “{target}” (Cancel stops "
                                             "early while recording):", 5.0, 0.5, 60.0, 1)
        if not ok:
            return
        sr = self.session.sr

        def work(ctx):
            return record(seconds, sr, should_stop=lambda: ctx.cancelled,
                          on_level=lambda t, peak: ctx.progress(t, seconds, "recording"))

        def apply(audio):
            self.method_panel.add_example_audio(target, AudioHint(audio, sr, "microphone"), "hum")
            return audio
        self._start("Record", work, apply)

    # ------------------------------------------------------------------ editing
    def undo(self) -> None:
        if self.session is not None and not self.runner.busy:
            self.session.undo()

    def redo(self) -> None:
        if self.session is not None and not self.runner.busy:
            self.session.redo()

    def current_target(self) -> str:
        return self.target_combo.currentText().strip()

    def _fill_targets(self, keep: Optional[str] = None) -> None:
        paint = self.session.paint
        names = list(paint.targets())
        if not names:
            paint.add_target("target 1")
            names = list(paint.targets())
        self.target_combo.blockSignals(True)
        self.target_combo.clear()
        for n in names:
            self.target_combo.addItem(n)
            i = self.target_combo.count() - 1
            self.target_combo.setItemData(i, _swatch(paint.colour(n)),
                                          Qt.ItemDataRole.DecorationRole)
        self.target_combo.setCurrentText(keep if keep in names else names[0])
        self.target_combo.blockSignals(False)
        self._target_chosen(self.target_combo.currentText())

    def _target_chosen(self, name: str) -> None:
        if self.session is None or not name:
            return
        self.view.set_paint_target(name)
        self.transport.set_paint_target(name)
        if name != self.method_panel.target.currentText():
            self.method_panel.target.setCurrentText(name)

    def new_paint_target(self, name: Optional[str] = None) -> Optional[str]:
        if self.session is None:
            return None
        if name is None:
            taken = set(self.session.paint.targets())
            i = len(taken) + 1
            while f"target {i}" in taken:
                i += 1
            name, ok = QInputDialog.getText(self, "New paint target",
                                            "Name of the source to paint:", text=f"target {i}")
            if not ok or not name.strip():
                return None
        # An undoable edit: the project saves its targets, empty ones too.
        name = self.session.add_paint_target(name)
        self._fill_targets(keep=name)
        return name

    def set_tool(self, name: str) -> None:
        self.view.set_tool(name)
        if name in self.tool_actions and not self.tool_actions[name].isChecked():
            self.tool_actions[name].setChecked(True)

    def extract_selection(self) -> None:
        if self.session is None:
            return
        target = self.current_target()
        shown = self.layer_panel.current_layer_id()
        if target not in self.session.paint.targets() or self.session.paint.is_empty(target):
            self.show_error("Extract", f"nothing is painted for {target!r}: paint the energy "
                            "to extract first", "")
            return
        try:
            layer = self.session.extract_selection(target, layer=shown)
        except DemixError as exc:
            self.show_error("Extract", str(exc), "")
            return
        self.layer_panel.select_layer(layer.id)

    def remove_selection(self) -> None:
        if self.session is None:
            return
        shown = self.layer_panel.current_layer_id()
        if shown is None:
            self.show_error("Remove selection", "select the layer to remove the painted "
                            "energy from (the mixture itself is never changed)", "")
            return
        try:
            self.session.remove_selection(self.current_target(), shown)
        except DemixError as exc:
            self.show_error("Remove selection", str(exc), "")

    def clear_paint(self) -> None:
        if self.session is not None and self.current_target():
            self.session.clear_paint(self.current_target())

    # ------------------------------------------------------------------ view glue
    def _layer_selected(self, layer_id: Optional[str]) -> None:
        self.view.show_layer(layer_id)
        self.method_panel.set_selected_layer(layer_id)
        self._update_actions()

    def _time_selection(self, t0: float, t1: float) -> None:
        self.transport.set_selection(t0, t1)
        self.method_panel.set_time_selection(t0, t1)

    def _cursor_moved(self, t: float, f: float, db: float) -> None:
        level = f"{db:6.1f} dB" if np.isfinite(db) else "   −∞ dB"
        self.readout.setText(f"{t:8.3f} s  {f:8.1f} Hz  {level}")

    def _brush_changed(self, *_args) -> None:
        self.view.set_brush(self.brush_size.value(), self.brush_strength.value())

    def _restore_method_params(self, name: str) -> None:
        """Fill the method's form with the parameters it last ran with."""
        saved = self.prefs.method_params(name)
        if saved and self.method_panel.form is not None:
            self.method_panel.form.set_values(saved)

    def _remember_method_params(self, name: str, params: Any) -> None:
        try:
            self.prefs.set_method_params(name, params_to_dict(params))
        except TypeError as exc:  # a value JSON cannot hold: keep the old defaults
            log.warning("cannot remember the parameters of %s: %s", name, exc)

    def set_theme(self, name: str) -> None:
        """Switch between the dark and the light theme (remembered)."""
        from PySide6.QtWidgets import QApplication

        from demixstudio.gui.theme import apply_theme

        self.prefs.set_theme(name)
        apply_theme(QApplication.instance(), self.prefs.theme())
        if name in self.theme_actions:
            self.theme_actions[name].setChecked(True)

    def _fill_devices(self) -> None:
        """The Playback ▸ Output device menu: the system default and every output."""
        self.device_menu.clear()
        current = self.prefs.audio_device()
        group = QActionGroup(self.device_menu)
        for label, name in [("System default", None)] + [(n, n) for n in output_devices()]:
            a = self.device_menu.addAction(label, lambda n=name: self.set_audio_device(n))
            a.setCheckable(True)
            a.setChecked(name == current)
            group.addAction(a)
        if len(group.actions()) == 1:
            self.device_menu.addAction("(no output device found)").setEnabled(False)

    def set_audio_device(self, name: Optional[str]) -> None:
        """Play through ``name`` (None = the system default); remembered."""
        self.prefs.set_audio_device(name)
        set_output_device(name)
        if self.session is not None:  # reopen the engine on the new device
            self.transport.set_session(self.session)

    def _scale_changed(self, scale: str) -> None:
        self.view.set_freq_scale(scale)
        self.prefs.set_value("view/freq_scale", scale)

    def _db_changed(self, *_args) -> None:
        self.view.set_db_range(float(self.db_floor.value()), float(self.db_range.value()))
        self.prefs.set_value("view/db_floor", self.db_floor.value())
        self.prefs.set_value("view/db_range", self.db_range.value())

    # ------------------------------------------------------------------ closing
    def closeEvent(self, event: QCloseEvent) -> None:
        try:
            may_close = self._may_discard()
        except Exception as exc:  # never close on an error: the document would be lost
            log.error("closing: %s\n%s", exc, traceback.format_exc())
            self.show_error("Close", f"{one_line_reason(exc)} — the window stays open",
                            traceback.format_exc())
            may_close = False
        if not may_close:
            event.ignore()
            return
        self.shutdown()
        event.accept()

    def shutdown(self) -> None:
        """Stop jobs and audio, and remove the autosave (a clean exit)."""
        self.runner.cancel()
        self.runner.wait()
        self._method_loader.wait()
        self.method_panel.stop_loading()
        self.transport.close_audio()
        self.autosaver.close()
        if self._unsubscribe:
            self._unsubscribe()
            self._unsubscribe = None
        self.view.shutdown()


def _swatch(colour: str):
    from demixstudio.gui.layer_panel import swatch_icon

    return swatch_icon(colour, 12)
