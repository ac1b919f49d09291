"""The editor's panels on their own: layer panel, method form, job runner, export dialog,
autosave. (The whole window is driven in test_gui_app.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from gui_support import SR, ica_separation, ica_session, isolated_env, speech_mixture

from PySide6.QtCore import QPointF, Qt  # noqa: E402
from PySide6.QtGui import QDropEvent  # noqa: E402
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout,  # noqa: E402
                               QLineEdit, QSpinBox)

from demixstudio.errors import ParameterError  # noqa: E402
from demixstudio.gui.dialogs import ExportDialog  # noqa: E402
from demixstudio.gui.layer_panel import ID_ROLE, LayerPanel, provenance_text  # noqa: E402
from demixstudio.gui.method_panel import MethodPanel, ParamForm, editor_reason  # noqa: E402
from demixstudio.gui.worker import JobRunner, format_eta  # noqa: E402
from demixstudio.separation.base import param_specs  # noqa: E402
from demixstudio.separation.registry import available, get_method  # noqa: E402
from demixstudio.session.session import Session  # noqa: E402


@pytest.fixture
def env(monkeypatch, tmp_path):
    return isolated_env(monkeypatch, tmp_path)


@pytest.fixture(scope="module")
def separated():
    """The speech mixture and ICA's proposals for it (computed once)."""
    return ica_separation()


def _fresh(separated) -> Session:
    """A new session with the ICA layers (2 layers + residual) and an empty history."""
    return ica_session()


def _paint_run_layers(s: Session, on=None):
    """The layers of an nmf-paint run as it proposes them (target "voice", then its
    rest layer "rest"), each half of the input, without running it: [voice, rest]."""
    from demixstudio.separation.base import LayerProposal

    half = np.full((1, s.stft.bins, s.stft.frames(s.samples)), 0.5, np.float32)
    return s.apply_proposals([LayerProposal("voice", "nmf-paint", {}, mask=half, target="voice"),
                              LayerProposal("rest", "nmf-paint", {}, mask=half)], on=on)


# -- layer panel -------------------------------------------------------------------------------
def test_layer_rows_edit_the_session_undoably(qtbot, separated):
    s = _fresh(separated)
    panel = LayerPanel()
    qtbot.addWidget(panel)
    panel.set_session(s)
    first = s.layers[0]
    assert panel.list.count() == len(s.layers) == 3
    row = panel.row(first.id)
    assert "ica" in row.toolTip() and "nonlinearity" in row.toolTip()  # provenance

    qtbot.mouseClick(row.mute, Qt.MouseButton.LeftButton)
    assert s.layer(first.id).mute
    row.gain.setValue(-9.5)
    assert s.layer(first.id).gain_db == pytest.approx(-9.5)
    row.pan.setValue(-40)
    assert s.layer(first.id).pan == pytest.approx(-0.4)
    row.name.setText("voice A")
    row.name.editingFinished.emit()
    assert s.layer(first.id).name == "voice A"
    for _ in range(4):
        s.undo()
    back = s.layer(first.id)
    assert (back.mute, back.gain_db, back.pan, back.name) == (False, 0.0, 0.0, first.name)
    # The rows follow undo without echoing edits back into the history.
    assert not row.mute.isChecked() and row.gain.value() == 0.0
    assert s.history.can_redo


def test_layer_menu_duplicate_merge_delete_and_drag_reorder(qtbot, separated):
    s = _fresh(separated)
    panel = LayerPanel()
    qtbot.addWidget(panel)
    panel.set_session(s)
    a, b = s.layers[0], s.layers[1]
    copy = panel.duplicate(a.id)
    assert [x.id for x in s.layers][:2] == [a.id, copy.id]
    assert s.balance_error() < 1e-5
    s.undo()

    # Drag row 0 below row 1 (drop on the lower half of row 1).
    panel.list.setCurrentRow(0)
    rect = panel.list.visualItemRect(panel.list.item(1))
    md = panel.list.mimeData([panel.list.item(0)])
    drop = QDropEvent(QPointF(rect.center().x(), rect.bottom() - 2), Qt.DropAction.MoveAction,
                      md, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    drop_source = panel.list
    drop.source = lambda: drop_source  # the event's source is the list itself
    panel.list.dropEvent(drop)
    assert [x.id for x in s.layers[:2]] == [b.id, a.id]
    assert s.layers[-1].is_residual

    for i in range(2):
        panel.list.item(i).setSelected(True)
    menu = panel.build_context_menu(panel.list.item(0))
    labels = {act.text(): act for act in menu.actions()}
    assert labels["Merge selected"].isEnabled()
    labels["Merge selected"].trigger()
    assert len(s.layers) == 2 and s.balance_error() < 1e-5
    merged = s.layers[0]
    panel.select_layer(merged.id)
    menu = panel.build_context_menu(panel.list.item(0))
    {act.text(): act for act in menu.actions()}["Delete"].trigger()
    assert len(s.layers) == 1 and s.layers[0].is_residual
    # The residual takes everything back: nothing is lost.
    np.testing.assert_allclose(s.layer_audio(s.residual), s.mixture, atol=1e-5)
    s.undo()
    s.undo()
    assert len(s.layers) == 3


def test_a_refused_rename_shows_the_name_again_and_a_multiple_delete_is_one_step(
        qtbot, separated):
    s = _fresh(separated)
    panel = LayerPanel()
    qtbot.addWidget(panel)
    errors = []
    panel.error.connect(errors.append)
    panel.set_session(s)
    a, b = s.layers[0], s.layers[1]
    row = panel.row(a.id)
    row.name.setFocus()  # the user is typing in the field
    for bad, why in (("  ", "must not be empty"), (b.name, "already a layer named")):
        row.name.setText(bad)
        row.name.editingFinished.emit()
        assert why in errors.pop()
        assert s.layer(a.id).name == a.name and row.name.text() == a.name
    assert not s.history.can_undo
    # On a mono recording the pan slider is off: the mixer pans stereo only.
    mono = Session(separated[0][:1], SR, name="mono")
    panel.set_session(mono)
    assert not panel.row(mono.residual.id).pan.isEnabled()

    panel.set_session(s)
    panel.delete([a.id, b.id, s.residual.id])
    assert "residual cannot be deleted" in errors.pop()
    assert [x.is_residual for x in s.layers] == [True]
    s.undo()
    assert [x.id for x in s.layers[:2]] == [a.id, b.id]


def test_spatial_layers_show_the_plane_they_were_separated_from(qtbot, separated):
    """DUET and ADRess layers offer their histogram / azimugram in the layer menu; the
    window draws the method's plane and marks this layer's peak; ICA layers have none."""
    from demixstudio.gui.analysis_view import AnalysisDialog
    from demixstudio.jobs.context import NullContext
    from demixstudio.separation.base import Hints

    mix, _ = separated
    panel = LayerPanel()
    qtbot.addWidget(panel)
    panel.set_session(_fresh(separated))
    titles = [a.text() for a in panel.build_context_menu(panel.list.item(0)).actions()]
    assert not any(t.startswith("Show") for t in titles)
    for name, title in (("duet", "Show DUET histogram…"), ("adress", "Show azimugram…")):
        m = get_method(name)
        s = Session(mix, SR)
        s.apply_proposals(m.separate(mix, SR, m.Params(mwf=0), Hints(), NullContext()))
        panel.set_session(s)
        menu = panel.build_context_menu(panel.list.item(0))
        assert title in [a.text() for a in menu.actions()]
        layer = s.layers[0]
        dlg = panel.show_analysis(layer.id)
        assert isinstance(dlg, AnalysisDialog) and dlg.isVisible() and dlg.kind == name
        a = layer.provenance.analysis
        if name == "duet":
            assert dlg.image.image.shape == np.asarray(a["histogram"]).T.shape
            peaks = [(p["delay_samples"], p["alpha"]) for p in a["peaks"]]
            assert min(abs(dlg.this_peak[0] - d) + abs(dlg.this_peak[1] - al)
                       for d, al in peaks) < 1e-4
        else:
            assert dlg.image.image.shape[0] == np.asarray(a["azimuth_pans"]).size
            assert dlg.this_peak[0] in [p["pan"] for p in a["positions"]]
        dlg.close()


def test_residual_row_cannot_be_renamed_dragged_or_deleted(qtbot, separated):
    s = _fresh(separated)
    panel = LayerPanel()
    qtbot.addWidget(panel)
    panel.set_session(s)
    item = panel.list.item(panel.list.count() - 1)
    assert not item.flags() & Qt.ItemFlag.ItemIsDragEnabled
    assert panel.row(s.residual.id).name.isReadOnly()
    menu = panel.build_context_menu(item)
    acts = {a.text(): a for a in menu.actions()}
    assert not acts["Delete"].isEnabled() and not acts["Duplicate"].isEnabled()


# -- method form -------------------------------------------------------------------------------
def test_every_registered_method_gets_a_form_that_gives_its_defaults(qtbot):
    names = available()
    assert {"ica", "decorrelation"} <= set(names)
    for name in names:
        m = get_method(name)
        form = ParamForm(m.Params)
        qtbot.addWidget(form)
        assert form.params() == m.Params(), name
        for spec in param_specs(m.Params):
            w = form.widgets[spec.name]
            expect = (QComboBox if spec.choices is not None else QCheckBox if spec.type == "bool"
                      else QSpinBox if spec.type == "int" else QDoubleSpinBox
                      if spec.type == "float" else QLineEdit)
            assert isinstance(w, expect), (name, spec.name)
            assert spec.help in w.toolTip()
            if isinstance(w, (QSpinBox, QDoubleSpinBox)) and spec.min is not None:
                assert w.minimum() == pytest.approx(spec.min)
            if isinstance(w, (QSpinBox, QDoubleSpinBox)) and spec.max is not None:
                assert w.maximum() == pytest.approx(spec.max)


def test_advanced_settings_come_last_folded_away(qtbot):
    """The NMF engine's settings (divergence, tolerance, device...) are declared
    first but shown last, folded under a toggle, so a method's own (the hum's pitch
    and balance) are the first rows; unfolding shows them, and the values are the
    same either way."""
    specs = param_specs(get_method("nmf-hum").Params)
    advanced = [s.name for s in specs if s.advanced]
    assert {"beta", "tol", "device", "precision", "block_frames"} <= set(advanced)
    assert "max_iter" not in advanced and "transpose_search" not in advanced
    form = ParamForm(get_method("nmf-hum").Params)
    qtbot.addWidget(form)
    form.show()
    rows = form.layout()
    field = QFormLayout.ItemRole.FieldRole
    order = [rows.itemAt(r, field).widget() for r in range(rows.rowCount())
             if rows.itemAt(r, field) is not None]
    names = {id(w): n for n, w in form.widgets.items()}
    shown = [names[id(w)] for w in order if id(w) in names]
    assert shown[:len(specs) - len(advanced)] == [s.name for s in specs if not s.advanced]
    assert form.advanced_toggle.text() == f"Advanced ({len(advanced)})"
    assert not any(form.widgets[n].isVisible() for n in advanced)
    assert form.widgets["equalize"].isVisible()
    form.advanced_toggle.setChecked(True)
    assert all(form.widgets[n].isVisible() for n in advanced)
    form.widgets["tol"].setValue(0.001)
    form.advanced_toggle.setChecked(False)
    assert form.params().tol == pytest.approx(0.001)
    # A method without advanced settings has no toggle.
    plain = ParamForm(get_method("decorrelation").Params)
    qtbot.addWidget(plain)
    assert plain.layout().indexOf(plain.advanced_toggle) == -1


def test_form_values_reach_params_and_bad_tuples_are_refused(qtbot):
    form = ParamForm(get_method("decorrelation").Params)
    qtbot.addWidget(form)
    form.widgets["lags"].setText("1:4, 9")
    form.widgets["sources"].setValue(2)
    p = form.params()
    assert p.lags == (1, 2, 3, 9) and p.sources == 2
    form.widgets["lags"].setText("one")
    with pytest.raises(ParameterError, match="lags"):
        form.params()
    ica = ParamForm(get_method("ica").Params)
    qtbot.addWidget(ica)
    ica.set_values({"algorithm": "jade", "max_iter": 50})
    assert ica.params().algorithm == "jade" and ica.params().max_iter == 50


def test_method_panel_requests_runs_with_hints(qtbot, separated, tmp_path):
    s = _fresh(separated)
    panel = MethodPanel(default_method="decorrelation")
    qtbot.addWidget(panel)
    assert not panel.method.isEnabled()  # until the window has loaded the methods
    panel.refresh_methods()
    panel.set_session(s)
    assert panel.method_name() == "decorrelation"
    ex = tmp_path / "example.wav"
    import soundfile as sf

    sf.write(str(ex), s.mixture[0, :SR], SR)
    panel.target.setCurrentText("voice")
    panel.add_example_file(str(ex))
    panel.set_time_selection(0.5, 1.5)
    panel.use_selection.setChecked(True)
    panel.set_selected_layer(s.layers[0].id)
    panel.set_run_on_layer(True)
    with qtbot.waitSignal(panel.runRequested) as sig:
        qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
    method, params, hints, on = sig.args
    assert method == "decorrelation" and on == s.layers[0].id
    # A method is handed only the hints it reads: decorrelation reads none.
    assert hints.is_empty()
    panel.select_method("nmf-semisupervised")
    with qtbot.waitSignal(panel.runRequested) as sig:
        qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
    hints = sig.args[2]
    assert hints.examples["voice"][0].audio.shape == (1, SR)
    # No method reads a time range (its check box is hidden), but one that did would get it.
    assert not hints.time_ranges
    assert panel.hints(["time_ranges"]).time_ranges["voice"] == [(0.5, 1.5)]


def test_example_files_are_read_off_the_gui_thread_in_turn(qtbot, separated, tmp_path,
                                                          monkeypatch):
    """The file dialog's example files are decoded in a worker thread (an hour of
    stereo took 5-9 s, the window frozen), one after another, each for the target
    and kind chosen when it was asked for; an unreadable one is reported and adds
    nothing, and the next one still loads. A long one is sampled as it is read, and
    its entry says so."""
    import soundfile as sf

    from demixstudio.gui import method_panel

    s = _fresh(separated)
    panel = MethodPanel(default_method="nmf-supervised")
    qtbot.addWidget(panel)
    panel.refresh_methods()
    panel.set_session(s)
    panel.select_method("nmf-supervised")
    threads = []
    read = method_panel.load_recording

    def reading(path, *args, **kw):
        threads.append(threading.current_thread())
        return read(path, *args, **kw)

    monkeypatch.setattr(method_panel, "load_recording", reading)
    ex = tmp_path / "example.wav"
    sf.write(str(ex), s.mixture[0, :SR], SR)
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    errors = []
    panel.error.connect(errors.append)
    panel.target.setCurrentText("voice")
    panel.load_example_file(str(ex))
    panel.target.setCurrentText("noise")
    panel.load_example_file(str(bad))
    panel.load_example_file(str(ex))
    assert panel.loading_examples
    assert panel.loading_note.text() == "Reading example.wav… (2 more waiting)"
    qtbot.waitUntil(lambda: not panel.loading_examples, timeout=20000)
    assert threads and all(t is not threading.main_thread() for t in threads)
    assert [(k, t) for k, t, _r in panel.examples] == [("example", "voice"), ("example", "noise")]
    assert panel.examples[0][2].audio.shape[1] == SR
    assert len(errors) == 1 and "broken.wav" in errors[0], errors
    assert not panel.loading_note.isVisible()
    assert list(panel.hints().examples) == ["voice", "noise"]
    # A file longer than two minutes is sampled as it is read, and the list says so.
    long = tmp_path / "long.wav"
    sf.write(str(long), np.tile(s.mixture[0], int(150 * SR / s.mixture.shape[1]) + 1), SR)
    panel.load_example_file(str(long))
    qtbot.waitUntil(lambda: not panel.loading_examples, timeout=20000)
    hint = panel.examples[-1][2]
    assert hint.whole_s > 150 and hint.audio.shape[1] <= 120 * SR and hint.joins
    assert panel.example_list.item(2).text().startswith("noise ← example: long.wav (120 s "
                                                        "sampled from 2:3"), \
        panel.example_list.item(2).text()


def test_method_panel_shows_only_the_hints_the_method_reads(qtbot, separated, tmp_path):
    """A method without hints leaves the dock to its parameters; nmf-paint shows the
    paint controls only; nmf-hum takes an imported file as a hum (so it can be used
    without a microphone) and offers recording; nmf-supervised takes examples."""
    import soundfile as sf

    s = _fresh(separated)
    panel = MethodPanel(default_method="ica")
    qtbot.addWidget(panel)
    panel.refresh_methods()
    panel.set_session(s)
    panel.resize(320, 560)
    panel.show()
    panel.select_method("hpss")
    assert not panel.hints_box.isVisible()
    qtbot.waitUntil(lambda: panel.form_area.height() >= panel.form.sizeHint().height())
    panel.select_method("projet")
    assert not panel.hints_box.isVisible()
    qtbot.wait(50)
    roomy = panel.form_area.height()
    assert roomy < panel.form.sizeHint().height()  # PROJET's form does not fit at 560 px
    panel.hints_box.setVisible(True)  # as before: the hints box shown for every method
    qtbot.wait(50)
    assert panel.form_area.height() < roomy
    panel.select_method("nmf-paint")
    assert panel.hints_box.isVisible() and panel.paint_hints.isVisible()
    assert not panel.example_hints.isVisible() and not panel.target.isVisible()
    ex = tmp_path / "hum.wav"
    sf.write(str(ex), s.mixture[0, :SR], SR)
    panel.select_method("nmf-hum")
    assert panel.example_hints.isVisible() and not panel.paint_hints.isVisible()
    assert panel.record_button.isVisible() and panel.add_example.text() == "Hum file…"
    panel.target.setCurrentText("voice")
    panel.add_example_file(str(ex))
    hints = panel.hints()
    assert list(hints.hums) == ["voice"] and not hints.examples
    assert not panel.other_recordings.isVisible()
    panel.select_method("nmf-supervised")
    assert not panel.record_button.isVisible() and panel.add_example.text() == "Example file…"
    # A recording keeps its kind: the hum is neither listed nor handed to nmf-supervised
    # as an example (nor were examples to nmf-hum as hums, which then failed).
    assert panel.example_list.count() == 0 and panel.other_recordings.isVisible()
    assert "1 hum" in panel.other_recordings.text()
    panel.add_example_file(str(ex), target="noise")
    panel.add_example_file(str(ex), target="music")
    hints = panel.hints()
    assert list(hints.examples) == ["noise", "music"] and not hints.hums
    assert [k for k, _t, _r in panel.shown_recordings()] == ["example", "example"]
    panel.select_method("nmf-hum")
    assert [panel.example_list.item(i).text().split(" ←")[0]
            for i in range(panel.example_list.count())] == ["voice"]
    assert "2 examples" in panel.other_recordings.text()
    hints = panel.hints()
    assert list(hints.hums) == ["voice"] and not hints.examples
    panel.example_list.setCurrentRow(0)
    panel.remove_example.click()  # removes the hum shown, not the first recording kept
    assert panel.hints().is_empty()
    panel.select_method("nmf-supervised")
    assert list(panel.hints().examples) == ["noise", "music"]


def test_missing_hint_reasons_say_what_to_do_in_the_editor():
    """A method's reason for missing hints names the CLI's ``--hint KIND:NAME=FILE``
    (and keeps it, for the CLI); the editor's error dialogs say what to do in the
    editor instead."""
    from demixstudio.jobs.context import NullContext
    from demixstudio.separation.base import Hints

    mix, _ = speech_mixture(1.0)
    advice = {"nmf-paint": "paint over each source", "nmf-hum": "Hum file…",
              "nmf-supervised": "Example file…", "nmf-semisupervised": "Example file…",
              "repair": "Example file…"}
    for name, words in advice.items():
        m = get_method(name)
        with pytest.raises(ParameterError) as err:
            m.separate(mix, SR, m.Params(), Hints(), NullContext())
        assert "--hint" in str(err.value), name
        said = editor_reason(str(err.value))
        assert words in said and "--hint" not in said and "NAME=FILE" not in said, said
    assert editor_reason("nmf-hum needs a hum (--hint hum:NAME=FILE)") == (
        "nmf-hum needs a hum (import a hum file with “Hum file…” under Hints, or record one "
        "with “Record…”)")
    assert editor_reason("the input is silent") == "the input is silent"


def test_paint_refinement_is_offered_only_for_methods_that_read_paint(qtbot, separated,
                                                                       tmp_path):
    """The layer menu's "Paint what does not belong here" and the panel's "Re-run with
    paint" are enabled only for a layer whose run's method reads paint, and say why not
    otherwise (ICA's rerun would ignore the paint and change nothing, yet add an undo
    step). The correction target is the layer's name as the method knows it: nmf-paint's
    rest layer renamed, or shown as "source 1: rest" after a run on a layer, is
    "not:rest" (a display name would read as a new target). The rerun hands the run's
    method the hints it reads, whichever method is picked in the panel."""
    import soundfile as sf

    s = _fresh(separated)
    layers = LayerPanel()
    qtbot.addWidget(layers)
    layers.set_session(s)
    panel = MethodPanel(default_method="nmf-supervised")
    qtbot.addWidget(panel)
    panel.refresh_methods()
    panel.set_session(s)
    errors = []
    panel.error.connect(errors.append)

    def veto(layer):
        item = next(layers.list.item(i) for i in range(layers.list.count())
                    if layers.list.item(i).data(ID_ROLE) == layer.id)
        menu = layers.build_context_menu(item)
        return next(a for a in menu.actions() if a.text() == "Paint what does not belong here")

    ica = s.layers[0]
    assert not veto(ica).isEnabled() and "ica does not read paint" in veto(ica).toolTip()
    assert not veto(s.residual).isEnabled()
    panel.set_selected_layer(ica.id)
    assert not panel.rerun_button.isEnabled()
    assert "ica does not read paint" in panel.rerun_button.toolTip()
    with qtbot.assertNotEmitted(panel.rerunRequested):
        panel.request_rerun()
    assert "ica does not read paint" in errors[-1]

    voice, rest = _paint_run_layers(s, on=ica)
    assert rest.name == "source 1: rest"
    s.set(rest, name="background")
    for layer, known in ((voice, "voice"), (rest, "rest")):
        act = veto(layer)
        assert act.isEnabled() and f"not:{known}" in act.toolTip()
        with qtbot.waitSignal(layers.paintNotRequested) as sig:
            act.trigger()
        assert sig.args == [known]
    assert "nmf-paint knows it as: rest" in provenance_text(rest)

    s.paint_stroke("not:rest", slice(10, 20), slice(5, 15), np.ones((10, 10), np.float32))
    ex = tmp_path / "example.wav"
    sf.write(str(ex), s.mixture[0, :SR], SR)
    panel.add_example_file(str(ex), target="voice")
    panel.set_selected_layer(rest.id)
    assert panel.rerun_button.isEnabled()
    with qtbot.waitSignal(panel.rerunRequested) as sig:
        qtbot.mouseClick(panel.rerun_button, Qt.MouseButton.LeftButton)
    method, params, hints, layer_id = sig.args
    assert method == "nmf-paint" and layer_id == rest.id
    assert params == get_method("nmf-paint").Params()
    assert list(hints.paint) == ["not:rest"] and not hints.examples


# -- job runner --------------------------------------------------------------------------------
def test_runner_reports_progress_and_applies_on_the_gui_thread(qtbot):
    runner = JobRunner()
    seen = []
    gui_thread = threading.current_thread()

    def work(ctx):
        for i in range(5):
            time.sleep(0.03)
            ctx.progress(i + 1, 5, "step")
        return threading.current_thread()

    def apply(worker_thread):
        assert worker_thread is not gui_thread
        seen.append(threading.current_thread())
        return "applied"

    with qtbot.waitSignal(runner.succeeded, timeout=10000) as sig:
        assert runner.start("count", work, apply)
        assert not runner.start("second", work)  # one job at a time
    assert sig.args == ["count", "applied"] and seen == [gui_thread]
    assert runner.last_progress.fraction == pytest.approx(1.0)
    assert format_eta(75) == "1 min 15 s left"


def test_runner_cancel_and_failure(qtbot):
    runner = JobRunner()
    applied = []

    def slow(ctx):
        for i in range(1000):
            time.sleep(0.01)
            ctx.progress(i, 1000)
        return 1

    with qtbot.waitSignal(runner.cancelled, timeout=10000):
        runner.start("slow", slow, applied.append)
        runner.cancel()
    assert applied == [] and not runner.busy

    def bad(ctx):
        raise ParameterError("sources=9 is above the maximum 4")
    with qtbot.waitSignal(runner.failed, timeout=10000) as sig:
        runner.start("bad", bad)
    assert sig.args[1] == "sources=9 is above the maximum 4"
    assert "Traceback" in sig.args[2]


# -- export dialog -----------------------------------------------------------------------------
def test_export_dialog_choice(qtbot, separated, tmp_path):
    s = _fresh(separated)
    dlg = ExportDialog(s, preselect=[s.layers[1].id], folder=str(tmp_path), ext="flac", bits="24")
    qtbot.addWidget(dlg)
    c = dlg.choice()
    assert c.layers == [s.layers[1].id] and c.ext == "flac" and c.bits == "24"
    assert c.stems and not c.remix
    assert [dlg.bits.itemData(i) for i in range(dlg.bits.count())] == ["16", "24"]
    dlg.format.setCurrentIndex(dlg.format.findData("wav"))
    dlg.bits.setCurrentIndex(dlg.bits.findData("float"))
    dlg.remix.setChecked(True)
    c = dlg.choice()
    assert (c.ext, c.bits, c.remix) == ("wav", "float", True)


# -- autosave and recovery ---------------------------------------------------------------------
def test_autosave_then_recovery_after_a_crash(qtbot, env, separated):
    from demixstudio.gui.autosave import Autosaver, recoverable
    from demixstudio.session.project import load_project

    s = _fresh(separated)
    saver = Autosaver(interval_s=3600)
    saver.set_session(s)
    s.set(s.layers[0], gain_db=-4.0)
    saver.mark_edited()
    with qtbot.waitSignal(saver.saved, timeout=30000):
        saver.save_now()
    assert saver.project_path.is_file() and saver.record_path.is_file()
    assert recoverable() == []  # this process is alive: not a crash

    # A crash: the process that wrote it is gone.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    doc = json.loads(saver.record_path.read_text())
    doc["pid"] = dead.pid
    saver.record_path.write_text(json.dumps(doc))
    found = recoverable()
    assert len(found) == 1 and found[0].name == "speech"
    back = load_project(found[0].project)
    assert back.layers[0].gain_db == pytest.approx(-4.0)
    assert [x.name for x in back.layers] == [x.name for x in s.layers]

    # A clean close leaves nothing behind.
    saver.close()
    assert not found[0].project.exists() and recoverable() == []


def _dead_pid() -> int:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return dead.pid


def test_malformed_autosave_records_never_stop_the_editor(env, separated):
    """A record with a bad time, name or source is still offered (described by the
    project file's own); one without a usable process id is skipped; none raises."""
    from demixstudio.gui.autosave import autosave_dir, pid_alive, recoverable
    from demixstudio.session.project import save_project

    assert not pid_alive(10 ** 20) and not pid_alive(2 ** 31 + 5)  # no OverflowError
    d = autosave_dir()
    d.mkdir(parents=True)
    pid = _dead_pid()
    offered = {"t_null": {"saved_at": None}, "t_text": {"saved_at": "yesterday"},
               "t_inf": f'{{"pid": {pid}, "saved_at": Infinity}}',
               "t_huge": {"saved_at": 1e300}, "n_bad": {"name": None, "source": 5},
               "p_huge": {"pid": 10 ** 20}}
    skipped = {"p_inf": '{"pid": Infinity}', "p_text": {"pid": "12"}, "p_null": {"pid": None},
               "p_float": {"pid": 1.5}, "garbage": "\x00\x01garbage{", "a_list": [1, 2],
               "deep": "[" * 100000, "no_pid": '{"name": "x"}'}
    project = save_project(_fresh(separated), d / "template.dsproj").read_bytes()
    (d / "template.dsproj").unlink()
    for token, rec in {**offered, **skipped}.items():
        (d / f"{token}.dsproj").write_bytes(project)
        if isinstance(rec, dict):
            rec = json.dumps({"pid": pid, "name": token, "saved_at": 1.7e9, **rec})
        elif not isinstance(rec, str):
            rec = json.dumps(rec)
        (d / f"{token}.json").write_text(rec, encoding="utf-8")
    (d / "a_dir.json").mkdir()
    (d / "a_dir.dsproj").write_bytes(project)

    found = recoverable()
    assert sorted(e.project.stem for e in found) == sorted(offered)
    for e in found:
        e.describe()  # shows a time: the file's own where the record's is none
        assert e.name == e.project.stem and e.source is None
    assert all((d / f"{t}.dsproj").is_file() for t in skipped)  # nothing was deleted


def test_a_failed_autosave_is_tried_again_at_the_next_tick(qtbot, env, separated, monkeypatch):
    import demixstudio.gui.autosave as autosave

    s = _fresh(separated)
    saver = autosave.Autosaver(interval_s=3600)
    saver.set_session(s)
    s.set(s.layers[0], gain_db=-4.0)
    saver.mark_edited()
    real = autosave.save_project

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(autosave, "save_project", disk_full)
    saver.save_now()
    qtbot.waitUntil(lambda: not saver._task.busy, timeout=30000)
    assert saver.dirty and not saver.project_path.exists()  # still to be saved

    monkeypatch.setattr(autosave, "save_project", real)  # space was freed
    with qtbot.waitSignal(saver.saved, timeout=30000):
        saver.save_now()  # what the periodic timer does
    assert not saver.dirty and saver.project_path.is_file()
    # An edit made while a save runs is not marked saved by it.
    saver.mark_edited()
    saver.save_now()
    saver.mark_edited()
    qtbot.waitUntil(lambda: not saver._task.busy, timeout=30000)
    assert saver.dirty
    saver.close()


def test_a_damaged_autosave_falls_back_to_the_file_given(qtbot, env, monkeypatch, tmp_path):
    """Recovering a corrupt autosave shows its error and then opens FILE (or the
    demo), rather than leaving the window empty."""
    from gui_support import write_mixture

    import demixstudio.gui.app as app
    from demixstudio.gui.autosave import autosave_dir
    from demixstudio.gui.main_window import MainWindow

    song = tmp_path / "song.wav"
    write_mixture(song, seconds=2.0)
    d = autosave_dir()
    d.mkdir(parents=True)
    pid = _dead_pid()
    (d / f"{pid}-x.dsproj").write_bytes(b"PK\x03\x04 not a whole project")
    (d / f"{pid}-x.json").write_text(json.dumps({"pid": pid, "name": "lost", "saved_at": 1.7e9}))
    errors = []
    monkeypatch.setattr(MainWindow, "_ask_recovery", lambda self, e: "recover")
    monkeypatch.setattr(MainWindow, "_show_error", lambda self, *a: errors.append(a))
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # the editor installs its own
    for argv, name in (([str(song)], "song"), ([], "demo")):
        w = app.open_editor(argv)
        qtbot.addWidget(w)
        qtbot.waitUntil(lambda w=w: w.session is not None and not w.runner.busy, timeout=60000)
        assert w.session.name == name
        assert len(errors) == 1 and "not a zip archive" in errors.pop()[1]
        assert (d / f"{pid}-x.dsproj").is_file()  # kept: maybe a tool can save it
        w.shutdown()


def test_a_run_note_shows_in_the_status_bar(qtbot, monkeypatch, tmp_path):
    """What a method says about its run (nmf-hum: how far it moved the hum) is shown
    with the layer count when the run's layers arrive."""
    from gui_support import SR, open_editor, speech_mixture

    from demixstudio.separation import AudioHint, Hints, get_method, make_params
    from demixstudio.session.session import Session

    w = open_editor(qtbot, monkeypatch, tmp_path)
    mix, sr = speech_mixture(1.0)[0], SR
    w.set_session(Session(mix, sr))
    m = get_method("nmf-hum")
    hint = Hints(hums={"a": [AudioHint(mix[:1], sr)]})
    assert w.run_method("nmf-hum", make_params(m.Params, {"transpose": -1, "max_iter": 2,
                                                             "transpose_search": 0}),
                        hint)
    qtbot.waitUntil(lambda: not w.runner.busy
                    and w.statusBar().currentMessage().startswith("nmf-hum"), timeout=60000)
    assert w.statusBar().currentMessage() == (
        "nmf-hum: 2 layers — the hum of 'a' moved 1 semitone down"), w.errors
    w.shutdown()
