"""The real editor window, driven offscreen with pytest-qt.

A stereo instantaneous mixture of two real speech recordings (16 kHz) is
dropped on the window, separated through the method panel, remixed with the
layer rows' controls (checked against what the playback engine renders),
painted, extracted, undone, saved, reopened and exported.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import shared
from gui_support import SR, StallMeter, image_snr, isolated_env, open_editor, write_mixture

from PySide6.QtCore import QMimeData, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from demixstudio.gui.main_window import MainWindow

JOB_MS = 120000  # generous: the test machine is shared and slow


@pytest.fixture(scope="module")
def mixture_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("audio")
    path = d / "two voices.wav"
    mix, images = write_mixture(path, seconds=4.0)
    return path, mix, images


@pytest.fixture
def win(qtbot, monkeypatch, tmp_path):
    w = open_editor(qtbot, monkeypatch, tmp_path, autosave=False)
    yield w
    w.shutdown()


def drop(w, path: Path, target=None) -> None:
    """Drag a file from a file manager onto the window (``target``: the widget it is
    dropped on; default the spectrogram, from which the event travels up to the
    window) and drop it."""
    md = QMimeData()
    md.setUrls([QUrl.fromLocalFile(str(path))])
    target = target or w.childAt(w.width() // 2, w.height() // 2)
    pos = QPointF(target.width() / 2, target.height() / 2)
    with warnings.catch_warnings():  # PySide6 6.12 flags this (only) constructor deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        enter = QDragEnterEvent(pos.toPoint(), Qt.DropAction.CopyAction, md,
                                Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(target, enter)
    assert enter.isAccepted()
    ev = QDropEvent(pos, Qt.DropAction.CopyAction, md, Qt.MouseButton.LeftButton,
                    Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(target, ev)
    assert ev.isAccepted()


def open_by_drop(qtbot, w, path: Path) -> None:
    with qtbot.waitSignal(w.jobApplied, timeout=JOB_MS):
        drop(w, path)
    qtbot.waitUntil(lambda: w.view.image_ready(), timeout=JOB_MS)


def separate(qtbot, w, method: str = "ica", **fields) -> None:
    """Pick ``method`` in the panel, fill fields, press Separate, wait for the layers."""
    w.method_panel.select_method(method)
    for name, value in fields.items():
        widget = w.method_panel.form.widgets[name]
        widget.setText(value) if hasattr(widget, "setText") else widget.setValue(value)
    with qtbot.waitSignal(w.jobApplied, timeout=JOB_MS):
        qtbot.mouseClick(w.method_panel.run_button, Qt.MouseButton.LeftButton)
    assert not w.errors, w.errors


def engine_block(qtbot, w, start: int, frames: int = 1024) -> np.ndarray:
    """What the transport would play from ``start`` (the engine's render, no device)."""
    qtbot.waitUntil(lambda: w.transport.ready, timeout=JOB_MS)
    eng = w.transport.engine
    eng.seek(start)
    eng.play()  # no device here: play() says so and renders on request
    blocks, done = [], 0
    while done < frames:  # as consecutive audio callbacks would
        blocks.append(eng.render(min(eng.blocksize, frames - done)).copy())
        done += blocks[-1].shape[1]
    eng.pause()
    return np.concatenate(blocks, axis=1)


def test_drop_a_file_shows_its_spectrogram(qtbot, win, mixture_file):
    path, mix, _ = mixture_file
    assert win.windowTitle() == "DemixStudio"
    open_by_drop(qtbot, win, path)
    assert win.session.name == "two voices"
    np.testing.assert_array_equal(win.session.mixture, mix)
    assert "two voices.wav" in win.windowTitle()
    assert win.prefs.recent_files() == [str(path.resolve())]
    assert win.layer_panel.list.count() == 1  # the residual holds everything
    # Without a device the transport says why playback is off and disables its buttons.
    if not win.transport.engine.ok:
        assert win.transport.status.text().startswith("Playback is off")
        assert not win.transport.play_button.isEnabled()


def test_separate_through_the_ui_then_undo_redo(qtbot, win, mixture_file):
    path, mix, images = mixture_file
    open_by_drop(qtbot, win, path)
    separate(qtbot, win, "ica")
    s = win.session
    assert len(s.layers) == 3 and win.layer_panel.list.count() == 3
    est = [s.layer_audio(x) for x in s.layers[:2]]
    snr = image_snr(images, est)
    assert snr.min() > 25.0, snr  # a real separation, not just new rows
    assert s.balance_error() < 1e-4
    assert "•" in win.windowTitle()  # modified
    assert win.act_undo.text().startswith("&Undo separate")

    win.act_undo.trigger()
    assert len(s.layers) == 1 and win.layer_panel.list.count() == 1
    win.act_redo.trigger()
    assert len(s.layers) == 3 and win.layer_panel.list.count() == 3


def test_mute_solo_gain_pan_change_what_the_transport_plays(qtbot, win, mixture_file):
    path, mix, _ = mixture_file
    open_by_drop(qtbot, win, path)
    separate(qtbot, win, "ica")
    s = win.session
    a, b, res = s.layers
    start = 9000

    def check() -> np.ndarray:
        block = engine_block(qtbot, win, start)
        np.testing.assert_allclose(block, s.mixdown()[:, start:start + 1024], atol=2e-5)
        return block

    unity = check()
    np.testing.assert_allclose(unity, mix[:, start:start + 1024], atol=2e-5)
    rows = win.layer_panel
    qtbot.mouseClick(rows.row(a.id).mute, Qt.MouseButton.LeftButton)
    muted = check()
    assert np.abs(muted - unity).max() > 1e-3
    rows.row(b.id).gain.setValue(-12.0)
    quieter = check()
    assert np.abs(quieter).max() < np.abs(muted).max()
    rows.row(b.id).pan.setValue(80)
    check()
    qtbot.mouseClick(rows.row(a.id).solo, Qt.MouseButton.LeftButton)
    check()  # a is soloed but muted: mute wins, silence
    qtbot.mouseClick(rows.row(a.id).mute, Qt.MouseButton.LeftButton)
    soloed = check()
    np.testing.assert_allclose(soloed, s.layer_audio(a)[:, start:start + 1024], atol=2e-5)
    # Undo reaches the engine too.
    for _ in range(5):
        win.act_undo.trigger()
    np.testing.assert_allclose(check(), unity, atol=2e-5)


def test_paint_a_rectangle_extract_it_undo_redo_and_play_it(qtbot, win, mixture_file):
    path, mix, _ = mixture_file
    open_by_drop(qtbot, win, path)
    separate(qtbot, win, "ica")
    s = win.session
    win.new_paint_target("voice")
    assert win.current_target() == "voice" and win.view.paint_target() == "voice"
    n = len(s.layers)
    win.view.paint_rect_seconds(1.0, 2.5, 300.0, 3000.0)
    assert not s.paint.is_empty("voice")
    win.layer_panel.select_layer(s.layers[0].id)
    source = s.layers[0]
    win.act_extract.trigger()
    assert not win.errors, win.errors
    assert len(s.layers) == n + 1
    new_id = win.layer_panel.current_layer_id()
    new = s.layer(new_id)
    assert new.id != source.id and s.balance_error() < 1e-4
    # The extracted layer holds energy only where the rectangle was painted.
    audio = s.layer_audio(new)
    inside = audio[:, int(1.1 * SR):int(2.4 * SR)]
    outside = np.concatenate([audio[:, :int(0.9 * SR)], audio[:, int(2.6 * SR):]], axis=1)
    assert np.sqrt(np.mean(inside ** 2)) > 100 * np.sqrt(np.mean(outside ** 2))

    # "Painted only" playback: the remix masked by the paint, computed in the background.
    win.transport.set_paint_target("voice")
    with qtbot.waitSignal(win.transport.regionReady, timeout=JOB_MS) as sig:
        win.transport.region_button.setChecked(True)
    assert sig.args == [True]
    eng = win.transport.engine
    assert eng.region_active
    eng.play()
    assert eng.position <= int(1.0 * SR)
    region = np.concatenate([eng.render().copy() for _ in range(int(2 * SR) // eng.blocksize)],
                            axis=1)
    assert np.abs(region).max() > 1e-3
    win.transport.region_button.setChecked(False)
    assert not eng.region_active

    win.act_undo.trigger()  # the extraction
    assert len(s.layers) == n and s.layers[0].id == source.id
    win.act_undo.trigger()  # the rectangle
    assert s.paint.is_empty("voice")
    win.act_redo.trigger()
    win.act_redo.trigger()
    assert len(s.layers) == n + 1 and not s.paint.is_empty("voice")


def test_an_audio_file_dropped_on_the_example_list_becomes_an_example(qtbot, win,
                                                                     mixture_file, tmp_path):
    """Dropped on the list of example recordings, a file is added as an example of the
    chosen target (read in the background); it does not reach the window, which would
    open it as the mixture in place of the document."""
    path, mix, _ = mixture_file
    open_by_drop(qtbot, win, path)
    s = win.session
    mp = win.method_panel
    mp.select_method("nmf-supervised")
    mp.target.setCurrentText("voice")
    example = tmp_path / "voice example.wav"
    sf.write(str(example), mix[0, :SR], SR)
    with qtbot.waitSignal(mp.exampleLoaded, timeout=JOB_MS):
        drop(win, example, target=mp.example_list.viewport())
    assert win.session is s and not win.runner.busy  # the document stayed open
    assert [(k, t) for k, t, _r in mp.examples] == [("example", "voice")]
    assert mp.example_list.count() == 1 and "voice example.wav" in mp.example_list.item(0).text()


def test_rerun_with_paint_refines_the_selected_layer(qtbot, win, mixture_file, monkeypatch):
    """The refinement loop: separate by paint, paint what a layer should not hold
    (its menu's "Paint what does not belong here"), press Re-run with paint: the
    run's layers are replaced, keep their names and mix settings, the
    vetoed energy has left the layer, and the method was handed the run's model
    to continue from (Hints.previous). The same on the rest layer renamed: its
    correction target is "not:rest" (nmf-paint's name for it), and it stays one
    layer with its name and gain (before, a new layer was added for a target named
    after it and the renamed one was lost)."""
    from demixstudio.separation.nmf.paint import PaintNMF

    given = []
    separate_once = PaintNMF.separate

    def spy(self, mix, sr, params, hints, ctx):
        given.append(hints.previous)
        return separate_once(self, mix, sr, params, hints, ctx)

    monkeypatch.setattr(PaintNMF, "separate", spy)
    path, mix, _ = mixture_file
    open_by_drop(qtbot, win, path)
    s = win.session
    win.new_paint_target("voice")
    win.view.paint_rect_seconds(0.5, 1.5, 100.0, 1000.0)
    separate(qtbot, win, "nmf-paint", max_iter=40)
    voice = s.layer("voice")
    assert [x.name for x in s.layers] == ["voice", "rest", "residual"]
    s.set("rest", gain_db=-6.0)
    win.layer_panel.select_layer(voice.id)
    assert win.method_panel.rerun_button.isEnabled()
    item = win.layer_panel.list.item(0)
    menu = win.layer_panel.build_context_menu(item)
    act = next(a for a in menu.actions() if a.text() == "Paint what does not belong here")
    act.trigger()
    assert win.current_target() == "not:voice"
    win.view.paint_rect_seconds(2.0, 3.0, 0.0, 4000.0)
    old_ids = [x.id for x in s.layers]
    with qtbot.waitSignal(win.jobApplied, timeout=JOB_MS):
        qtbot.mouseClick(win.method_panel.rerun_button, Qt.MouseButton.LeftButton)
    assert not win.errors, win.errors
    assert given[0] == {} and given[1] is voice.provenance.analysis["state"]
    assert [x.name for x in s.layers] == ["voice", "rest", "residual"]
    assert voice.id not in [x.id for x in s.layers]
    assert s.layer("rest").gain_db == -6.0
    new = s.layer("voice")
    assert new.provenance.method == "nmf-paint" and new.provenance.target == "voice"
    times = s.stft.frame_times(s.samples, s.sr)
    sel = (times >= 2.05) & (times <= 2.95)
    freqs = s.stft.bin_freqs(s.sr)
    assert new.mask[0][np.ix_(freqs < 3900, sel)].mean() < 0.05
    assert s.balance_error() < 1e-4
    win.act_undo.trigger()
    assert [x.id for x in s.layers] == old_ids

    rest = s.layer("rest")
    s.set(rest, name="background")
    win.layer_panel.select_layer(rest.id)
    item = win.layer_panel.list.item(1)
    menu = win.layer_panel.build_context_menu(item)
    next(a for a in menu.actions() if a.text() == "Paint what does not belong here").trigger()
    assert win.current_target() == "not:rest"
    win.view.paint_rect_seconds(0.5, 1.5, 1500.0, 4000.0)
    win.layer_panel.select_layer(rest.id)
    with qtbot.waitSignal(win.jobApplied, timeout=JOB_MS):
        qtbot.mouseClick(win.method_panel.rerun_button, Qt.MouseButton.LeftButton)
    assert not win.errors, win.errors
    assert [x.name for x in s.layers] == ["voice", "background", "residual"]
    again = s.layer("background")
    assert again.id != rest.id and again.gain_db == -6.0 and again.colour == rest.colour
    assert given[2] is voice.provenance.analysis["state"]  # it continued from the run


def test_paint_refinement_is_refused_for_a_method_that_ignores_paint(qtbot, win, mixture_file,
                                                                     tmp_path):
    """ICA's layers: Re-run with paint is disabled, and asked anyway it is refused
    with the reason, starting no job and adding no undo step (before, it "refined"
    them, changing nothing). Examples imported for nmf-supervised are not handed
    to nmf-hum as hums, and its failure says what to do in the editor, not the CLI's
    --hint syntax."""
    from demixstudio.separation import Hints, get_method

    path, mix, _ = mixture_file
    open_by_drop(qtbot, win, path)
    separate(qtbot, win, "ica")
    s = win.session
    layer = s.layers[0]
    win.layer_panel.select_layer(layer.id)
    assert not win.method_panel.rerun_button.isEnabled()
    label = s.history.undo_label()
    assert not win.rerun_layer("ica", get_method("ica").Params(), Hints(), layer.id)
    assert not win.runner.busy and s.history.undo_label() == label
    assert win.errors[-1][0] == "Re-run" and "ica does not read paint" in win.errors[-1][1]

    mp = win.method_panel
    mp.select_method("nmf-supervised")
    example = tmp_path / "example.wav"
    sf.write(str(example), mix[0, :SR], SR)
    mp.add_example_file(str(example), target="voice")
    mp.add_example_file(str(example), target="noise")
    mp.select_method("nmf-hum")
    assert mp.example_list.count() == 0
    with qtbot.waitSignal(win.runner.failed, timeout=JOB_MS):
        qtbot.mouseClick(mp.run_button, Qt.MouseButton.LeftButton)
    title, reason, _ = win.errors[-1]
    assert title.startswith("nmf-hum") and "Hum file…" in reason, reason
    assert "--hint" not in reason and s.history.undo_label() == label


def test_keyboard_shortcuts(qtbot, win, mixture_file):
    path, _, _ = mixture_file
    open_by_drop(qtbot, win, path)
    win.activateWindow()
    win.view.setFocus()
    for key, tool in ((Qt.Key.Key_B, "brush"), (Qt.Key.Key_R, "rect"), (Qt.Key.Key_L, "lasso"),
                      (Qt.Key.Key_E, "eraser"), (Qt.Key.Key_H, "harmonic"),
                      (Qt.Key.Key_N, "none")):
        qtbot.keyClick(win, key)
        assert win.view.tool() == tool and win.tool_actions[tool].isChecked()
    win.view.paint_rect_seconds(0.2, 0.4, 100.0, 400.0)
    qtbot.keyClick(win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert win.session.paint.is_empty(win.current_target())
    qtbot.keyClick(win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier
                   | Qt.KeyboardModifier.ShiftModifier)
    assert not win.session.paint.is_empty(win.current_target())


def test_toolbar_limits_the_harmonic_brush(qtbot, win, mixture_file):
    """The toolbar's Harmonics box sets how many harmonics a harmonic stroke paints."""
    path, _, _ = mixture_file
    open_by_drop(qtbot, win, path)
    assert win.brush_harmonics.value() == 0 and win.brush_harmonics.text() == "all"
    win.brush_harmonics.setValue(2)
    win.view.set_tool("harmonic")
    f0 = 300.0
    win.view.paint_path_seconds([(1.0, f0), (1.5, f0)])
    s = win.session
    m = s.paint.mask(win.current_target())
    df = s.sr / s.stft.n_fft
    frame = round(1.25 * s.sr / s.stft.hop)
    assert m[round(f0 / df), frame] > 0 and m[round(2 * f0 / df), frame] > 0
    assert m[round(2.5 * f0 / df):, frame].max() == 0.0


def test_save_and_reopen_a_project(qtbot, win, mixture_file, tmp_path):
    path, mix, _ = mixture_file
    open_by_drop(qtbot, win, path)
    separate(qtbot, win, "ica")
    s = win.session
    s.set(s.layers[1], gain_db=-3.5, name="second voice")
    win.view.paint_rect_seconds(0.5, 1.0, 200.0, 800.0, strength=0.6)
    proj = tmp_path / "voices.dsproj"
    with qtbot.waitSignal(win.jobApplied, timeout=JOB_MS):
        win.save_to(proj)
    assert proj.is_file() and not win.modified
    assert win.windowTitle().startswith("voices.dsproj") and "•" not in win.windowTitle()
    target = win.current_target()
    painted = s.paint.mask(target)

    # Reopen in the same window, as File ▸ Open Recent would.
    assert win.prefs.recent_files()[0] == str(proj.resolve())
    with qtbot.waitSignal(win.jobApplied, timeout=JOB_MS):
        win.open_path(win.prefs.recent_files()[0])
    r = win.session
    assert r is not s and win.project_path == proj
    assert [(x.name, x.gain_db, x.kind) for x in r.layers] == \
        [(x.name, x.gain_db, x.kind) for x in s.layers]
    np.testing.assert_allclose(r.mixture, mix, atol=2 ** -22)
    np.testing.assert_array_equal(r.layers[0].mask, s.layers[0].mask)
    np.testing.assert_allclose(r.paint.mask(target), painted, atol=1 / 255)
    assert win.layer_panel.row(r.layers[1].id).name.text() == "second voice"

    # Opening another file with unsaved edits: "Save" writes the project first.
    r.set(r.layers[0], gain_db=-7.0)
    assert win.modified
    win.ask_save_changes = lambda: "save"
    with qtbot.waitSignal(win.jobApplied, timeout=JOB_MS):
        assert win.open_path(path)
    from demixstudio.session.project import load_project

    assert load_project(proj).layers[0].gain_db == pytest.approx(-7.0)
    assert win.session.name == "two voices" and not win.modified


def test_a_file_cut_short_opens_and_the_status_bar_says_so(qtbot, win, mixture_file,
                                                             tmp_path):
    path, mix, _ = mixture_file
    data = path.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[:len(data) // 2])
    open_by_drop(qtbot, win, cut)
    assert 0 < win.session.samples < mix.shape[1]
    said = win.statusBar().currentMessage()
    assert "cut.wav is cut short" in said and "announces 4.00 s" in said, said
    # So is an example recording cut short: it is added for what it holds.
    whole = tmp_path / "example.flac"
    sf.write(str(whole), mix[0, :SR], SR)
    data = whole.read_bytes()
    example = tmp_path / "cut.flac"
    example.write_bytes(data[:len(data) // 2])
    mp = win.method_panel
    mp.select_method("nmf-supervised")
    mp.add_example_file(str(example), target="voice")
    hint = mp.examples[-1][2]
    assert 0 < hint.audio.shape[1] < SR // 2
    said = win.statusBar().currentMessage()
    assert "cut.flac is cut short" in said and "announces 1.00 s" in said, said


def test_export_stems_and_remix_through_the_dialog(qtbot, win, mixture_file, tmp_path):
    path, mix, _ = mixture_file
    open_by_drop(qtbot, win, path)
    separate(qtbot, win, "ica")
    s = win.session
    s.set(s.layers[0], gain_db=-6.0)
    out = tmp_path / "stems"
    out.mkdir()

    def fill_and_accept():
        dlg = QApplication.activeModalWidget()
        dlg.folder.setText(str(out))
        dlg.format.setCurrentIndex(dlg.format.findData("wav"))
        dlg.bits.setCurrentIndex(dlg.bits.findData("float"))
        dlg.apply_settings.setChecked(False)
        dlg.remix.setChecked(True)
        dlg.accept()

    QTimer.singleShot(200, fill_and_accept)
    with qtbot.waitSignal(win.jobApplied, timeout=JOB_MS):
        win.act_export.trigger()  # Ctrl+E
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted([f"two voices - {x.name}.wav" for x in s.layers]
                           + ["two voices - remix.wav"])
    total = sum(sf.read(str(out / f"two voices - {x.name}.wav"), dtype="float32")[0].T
                for x in s.layers)
    np.testing.assert_allclose(total, mix, atol=1e-5)  # stems at unity sum to the mixture
    remix = sf.read(str(out / "two voices - remix.wav"), dtype="float32")[0].T
    np.testing.assert_allclose(remix, s.mixdown(), atol=1e-6)
    assert win.prefs.export_bits() == "float"


def test_export_refuses_what_it_cannot_do_and_writes_nothing(qtbot, win, mixture_file,
                                                             tmp_path):
    """No layer ticked for stems, a stem the remix would overwrite, a folder that cannot
    be made: each gives one clear line, and no file is written."""
    from demixstudio.gui.dialogs import ExportChoice

    path, _, _ = mixture_file
    open_by_drop(qtbot, win, path)
    separate(qtbot, win, "ica")
    s = win.session
    out = tmp_path / "out"
    out.mkdir()
    assert win.export(ExportChoice(folder=str(out), stems=True, remix=True, layers=[])) is False
    assert "no layer is ticked" in win.errors.pop()[1]

    s.set(s.layers[0], name="remix")
    with qtbot.waitSignal(win.runner.failed, timeout=JOB_MS):
        win.export(ExportChoice(folder=str(out), remix=True))
    assert "rename that layer" in win.errors.pop()[1]

    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    with qtbot.waitSignal(win.runner.failed, timeout=JOB_MS):
        win.export(ExportChoice(folder=str(blocker / "stems")))
    reason = win.errors.pop()[1]
    assert reason.startswith("cannot create the folder") and "\n" not in reason
    assert list(out.iterdir()) == [] and blocker.read_text() == "not a folder"


def test_a_new_document_starts_without_the_old_selection_and_run_target(qtbot, win,
                                                                         mixture_file):
    path, _, _ = mixture_file
    open_by_drop(qtbot, win, path)
    separate(qtbot, win, "ica")
    mp = win.method_panel
    win.layer_panel.select_layer(win.session.layers[0].id)
    mp.set_run_on_layer(True)
    assert mp.run_button.text() == "Separate layer"
    mp.run_on.setCurrentIndex(0)  # the user picks the mixture again
    assert mp.run_button.text() == "Separate"
    win.view.set_time_selection(1.0, 2.0)
    open_by_drop(qtbot, win, path)
    assert win.view.time_selection() == (0.0, 0.0)


def test_cancel_a_running_job_leaves_the_session_unchanged(qtbot, win, mixture_file):
    path, _, _ = mixture_file
    open_by_drop(qtbot, win, path)
    separate(qtbot, win, "ica")
    s = win.session
    before = [x.id for x in s.layers]
    undo_label = s.history.undo_label()
    # Minutes of work that reports progress (and so can stop) every iteration. (A
    # long lag list for decorrelation was used before, but on a fast machine its
    # covariances take a fraction of a second, and the job could end first.)
    win.method_panel.select_method("nmf")
    win.method_panel.form.widgets["max_iter"].setValue(100_000)
    win.method_panel.form.widgets["tol"].setValue(0.0)
    with qtbot.waitSignal(win.runner.progress, timeout=JOB_MS):
        qtbot.mouseClick(win.method_panel.run_button, Qt.MouseButton.LeftButton)
    assert win.job_bar.active and win.runner.busy
    with qtbot.waitSignal(win.runner.cancelled, timeout=JOB_MS):
        qtbot.mouseClick(win.job_bar.cancel_button, Qt.MouseButton.LeftButton)
    assert [x.id for x in s.layers] == before and s.history.undo_label() == undo_label
    assert not win.errors
    assert not win.job_bar.active and win.method_panel.run_button.isEnabled()


def test_errors_show_one_line_and_go_to_the_log(qtbot, win, tmp_path):
    mono = tmp_path / "mono.wav"
    x, _ = sf.read(str(shared("speech_sisec_dev1/dev1_female4_src_1.wav")), dtype="float32",
                   always_2d=True)
    sf.write(str(mono), x[:SR, :1], SR)
    open_by_drop(qtbot, win, mono)
    win.method_panel.select_method("ica")
    with qtbot.waitSignal(win.runner.failed, timeout=JOB_MS):
        qtbot.mouseClick(win.method_panel.run_button, Qt.MouseButton.LeftButton)
    (title, reason, details), = win.errors
    assert "\n" not in reason and "channels" in reason
    log = (tmp_path / "log" / "demixstudio.log").read_text()
    assert "Traceback" in log and reason in log
    assert len(win.session.layers) == 1


def test_event_loop_stays_responsive_during_a_job(qtbot, win, mixture_file):
    """The longest gap between 10 ms timer ticks from pressing Separate until the
    layers are in the panel, the playback audio is ready and the view is redrawn."""
    path, _, _ = mixture_file
    open_by_drop(qtbot, win, path)
    qtbot.waitUntil(lambda: win.transport.ready, timeout=JOB_MS)
    # About a second of work on a fast machine (2026), several on a slow one.
    win.method_panel.select_method("nmf")
    win.method_panel.form.widgets["max_iter"].setValue(2000)
    win.method_panel.form.widgets["tol"].setValue(0.0)
    meter = StallMeter(10)
    meter.start()
    with qtbot.waitSignal(win.jobApplied, timeout=JOB_MS):
        qtbot.mouseClick(win.method_panel.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: win.transport.ready and win.view.image_ready(), timeout=JOB_MS)
    worst = meter.stop()
    ticks = len(meter.gaps)
    assert not win.errors and len(win.session.layers) == 3
    print(f"\nlongest event-loop stall during the job: {worst * 1000:.1f} ms over {ticks} ticks")
    assert ticks > 20  # the job ran long enough to measure
    assert worst < 0.100, f"the GUI stalled for {worst * 1000:.0f} ms"


def test_cli_gui_command_reaches_the_editor(monkeypatch):
    import sys

    import demixstudio.gui.app as app
    from demixstudio import cli

    seen = []
    monkeypatch.setattr(sys, "argv", ["demixstudio"])
    monkeypatch.setattr(app, "main", lambda argv: seen.append(list(argv)) or 0)
    assert cli.main(["gui", "song.wav"]) == 0
    assert cli.main(["gui"]) == 0
    assert seen == [["song.wav"], []]


def test_started_without_a_file_the_editor_opens_the_demo(qtbot, monkeypatch, tmp_path):
    import sys

    import demixstudio.gui.app as app

    isolated_env(monkeypatch, tmp_path)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # the editor installs its own
    w = app.open_editor(["--no-recovery"])
    w.errors = []
    w.show_error = lambda title, reason, details: w.errors.append((title, reason, details))
    qtbot.addWidget(w)
    qtbot.waitUntil(lambda: w.session is not None and not w.runner.busy, timeout=JOB_MS)
    assert w.session.name == "demo" and w.windowTitle().startswith("demo")
    assert w.session.channels == 2 and w.session.duration_s == pytest.approx(12.0)
    assert QApplication.palette().window().color().lightness() < 60  # the dark theme
    assert sys.excepthook is app._excepthook
    w.shutdown()


def test_edits_are_autosaved_and_a_clean_exit_leaves_nothing(qtbot, monkeypatch, tmp_path,
                                                            mixture_file):
    from demixstudio.gui.autosave import recoverable

    isolated_env(monkeypatch, tmp_path)
    w = MainWindow(autosave=True)
    w.show_error = lambda *a: pytest.fail(f"unexpected error {a}")
    w.ask_save_changes = lambda: "discard"
    qtbot.addWidget(w)
    w.show()
    w.autosaver._debounce.setInterval(50)  # the test need not wait the usual few seconds
    open_by_drop(qtbot, w, mixture_file[0])
    assert not w.method_panel.record_button.isEnabled() or w.method_panel.record_note.text() == ""
    with qtbot.waitSignal(w.autosaver.saved, timeout=JOB_MS):
        w.view.paint_rect_seconds(0.5, 1.0, 200.0, 800.0)
    assert w.autosaver.project_path.is_file()
    w.shutdown()  # what closing the window does
    assert not w.autosaver.project_path.exists() and recoverable() == []
