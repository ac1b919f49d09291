"""The installable application: first run, settings, crash handling and recovery, icons.

The build itself (packaging/build.sh, PyInstaller) is too slow for the suite;
packaging/smoke.py builds it and drives the frozen app. Here: the parts of
the app that do not need a build, on the real window (pytest-qt, offscreen)
and, for crash recovery, a real editor process killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from gui_support import isolated_env, make_editor, write_mixture

from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication, QMessageBox

from demixstudio.gui.dialogs import ExportChoice
from demixstudio.gui.main_window import MainWindow

REPO = Path(__file__).resolve().parents[1]
JOB_MS = 120000


def wait_job(qtbot, w, start) -> None:
    with qtbot.waitSignal(w.jobApplied, timeout=JOB_MS):
        assert start()
    assert not w.errors, w.errors


def test_first_run_hint_is_shown_once(qtbot, monkeypatch, tmp_path):
    isolated_env(monkeypatch, tmp_path)
    w = make_editor(qtbot)
    wait_job(qtbot, w, w.open_demo)
    hint = w.first_run_hint
    assert hint is not None and hint.isVisible()
    text = hint.label.text()
    for what in ("Drop", "paint", "Separate"):
        assert what in text
    # Above the spectrogram, not in a modal dialog.
    assert w.centralWidget().layout().indexOf(hint) == 0
    assert QApplication.activeModalWidget() is None
    hint.close_button.click()
    assert not hint.isVisible()
    w.shutdown()

    again = make_editor(qtbot)  # the next start: demo again, no hint
    wait_job(qtbot, again, again.open_demo)
    assert again.first_run_hint is None and again.session.name == "demo"
    again.shutdown()


def test_settings_persist_between_starts(qtbot, monkeypatch, tmp_path):
    from demixstudio.audio import playback
    from demixstudio.gui.settings import Preferences

    isolated_env(monkeypatch, tmp_path)
    song = tmp_path / "song.wav"
    write_mixture(song, seconds=2.0)

    w = make_editor(qtbot)
    wait_job(qtbot, w, lambda: w.open_path(song, ask=False))
    qtbot.waitUntil(lambda: w.method_panel.method.isEnabled(), timeout=JOB_MS)
    w.method_panel.select_method("hpss")
    w.method_panel.form.widgets["margin"].setValue(2.5)
    wait_job(qtbot, w, lambda: w.method_panel.run_button.click() or w.runner.busy)
    w.set_theme("light")
    assert QApplication.palette().window().color().lightness() > 160
    w.set_audio_device("Studio Monitors")  # not present here: playback says so
    reason = w.transport.engine.reason
    if playback._import_sounddevice()[0] is None:
        # No PortAudio on this machine: that is the reason, whatever the device.
        assert reason.startswith("Playback is off: the ") and "installed" in reason, reason
    else:
        assert "Studio Monitors" in reason, reason
    out = tmp_path / "stems"
    wait_job(qtbot, w, lambda: w.export(ExportChoice(folder=str(out), ext="flac", bits="16",
                                                     layers=[x.id for x in w.session.layers])))
    assert len(list(out.glob("*.flac"))) == len(w.session.layers) >= 3
    w.shutdown()

    p = Preferences()  # a fresh read of the store, as on the next start
    assert p.recent_files() == [str(song.resolve())]
    assert p.default_method() == "hpss"
    assert p.method_params("hpss")["margin"] == pytest.approx(2.5)
    assert p.theme() == "light"
    assert p.audio_device() == "Studio Monitors"
    assert (p.export_format(), p.export_bits(), p.export_folder()) == ("flac", "16", str(out))

    again = make_editor(qtbot)
    assert again.method_panel.default_method == "hpss"
    qtbot.waitUntil(lambda: again.method_panel.method.isEnabled(), timeout=JOB_MS)
    assert again.method_panel.method_name() == "hpss"
    assert again.method_panel.form.widgets["margin"].value() == pytest.approx(2.5)
    assert again.theme_actions["light"].isChecked()
    assert str(song.resolve()) in [a.text() for a in again.recent_menu.actions()]
    again.set_theme("dark")
    again.set_audio_device(None)
    assert playback._output_device is None
    assert QApplication.palette().window().color().lightness() < 60
    again.shutdown()


def test_version_flag_prints_the_version():
    from demixstudio import __version__

    r = subprocess.run([sys.executable, "-m", "demixstudio.cli", "--version"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == f"demixstudio {__version__}"


def test_uncaught_exception_shows_one_line_and_the_log_path(qtbot, monkeypatch, tmp_path):
    import demixstudio.gui.app as app

    log_dir = isolated_env(monkeypatch, tmp_path)
    w = make_editor(qtbot)
    seen = {}

    def read_and_close():
        box = QApplication.activeModalWidget()
        assert isinstance(box, QMessageBox)
        seen["text"], seen["info"] = box.text(), box.informativeText()
        box.accept()
    from PySide6.QtCore import QTimer
    QTimer.singleShot(200, read_and_close)
    try:
        {}["missing layer"]
    except KeyError as exc:
        app._excepthook(type(exc), exc, exc.__traceback__)
    assert seen, "no dialog was shown"
    assert "\n" not in seen["text"] and "missing layer" in seen["text"]
    log_file = log_dir / "demixstudio.log"
    assert str(log_file) in seen["info"]
    log = log_file.read_text(encoding="utf-8")
    assert "Traceback" in log and "missing layer" in log
    w.shutdown()


def test_window_uses_the_application_icon(qtbot, monkeypatch, tmp_path):
    import demixstudio.gui.app as app
    from demixstudio.gui.icons import ICON_SIZES, icons_dir

    isolated_env(monkeypatch, tmp_path)
    assert (icons_dir() / "demixstudio.svg").is_file()
    for n in ICON_SIZES:
        img = QImage(str(icons_dir() / f"demixstudio-{n}.png"))
        assert (img.width(), img.height()) == (n, n)
        assert img.hasAlphaChannel()
    app.create_application()
    w = make_editor(qtbot)
    icon = w.windowIcon()
    assert not icon.isNull() and 256 in [s.width() for s in icon.availableSizes()]
    w.shutdown()


# -- crash recovery with a real process ------------------------------------------------

CHILD = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import demixstudio.gui.autosave as autosave
    autosave.EDIT_DELAY_S = 0.05  # autosave right after each edit (normally 3 s)
    from demixstudio.gui import app

    song, expected = sys.argv[1], sys.argv[2]
    win = app.open_editor(["--no-recovery", song])
    win.ask_save_changes = lambda: "discard"
    win.show_error = lambda *a: (print("ERROR", a, flush=True), os._exit(3))
    state = {}

    def applied(label):
        if label.startswith("Open "):
            win.run_method("hpss")  # the window's job machinery, one undoable step
        elif label.startswith("hpss"):
            win.set_tool("rect")
            win.view.paint_rect_seconds(0.4, 1.2, 250.0, 1800.0, strength=0.75)
            state["painted"] = True

    def saved(path):
        a, s = win.autosaver, win.session
        if not state.get("painted") or a.dirty or a._task.busy or state.get("done"):
            return
        state["done"] = True
        target = win.current_target()
        np.savez(expected, names=np.array([x.name for x in s.layers]),
                 paint=s.paint.mask(target),
                 **{f"layer{i}": s.layer_audio(x) for i, x in enumerate(s.layers)})
        # Mid-edit: a brush stroke is being dragged (not finished) when the kill comes.
        stroke = s.begin_stroke(target)
        stroke.write(10, 5, np.ones((20, 30), np.float32))
        print("AUTOSAVED", json.dumps({"path": path, "target": target}), flush=True)

    win.jobApplied.connect(applied)
    win.autosaver.saved.connect(saved)
    from PySide6.QtWidgets import QApplication
    QApplication.instance().exec()
""")


def test_killed_during_an_edit_the_next_start_recovers_layers_and_paint(qtbot, monkeypatch,
                                                                        tmp_path):
    import demixstudio.gui.app as app
    from demixstudio.gui.autosave import recoverable

    isolated_env(monkeypatch, tmp_path)
    song = tmp_path / "two voices.wav"
    write_mixture(song, seconds=3.0)
    script = tmp_path / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    expected = tmp_path / "expected.npz"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", OMP_NUM_THREADS="1")
    t0 = time.monotonic()
    child = subprocess.Popen([sys.executable, str(script), str(song), str(expected)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=env, cwd=str(REPO))
    lines = []
    try:
        for line in child.stdout:  # until the edit is autosaved
            lines.append(line)
            if line.startswith(("AUTOSAVED", "ERROR")) or time.monotonic() - t0 > 90:
                break
        assert lines and lines[-1].startswith("AUTOSAVED"), "".join(lines[-30:])
        info = json.loads(lines[-1].split(" ", 1)[1])
        assert child.poll() is None  # still running, mid-edit
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    entries = recoverable()
    assert [str(e.project) for e in entries] == [info["path"]]

    # The next start offers the autosave; the user accepts.
    offered = []
    monkeypatch.setattr(MainWindow, "_ask_recovery",
                        lambda self, entry: offered.append(entry.describe()) or "recover")
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # the editor installs its own
    w = app.open_editor([])
    w.errors = []
    w.show_error = lambda title, reason, details: w.errors.append((title, reason, details))
    w.ask_save_changes = lambda: "discard"
    qtbot.addWidget(w)
    assert len(offered) == 1 and "two voices" in offered[0]
    qtbot.waitUntil(lambda: w.session is not None and not w.runner.busy, timeout=JOB_MS)
    assert not w.errors, w.errors
    ref = np.load(expected)
    s = w.session
    assert [x.name for x in s.layers] == list(ref["names"])
    assert len(s.layers) >= 3  # hpss: harmonic, percussive (noise) and the residual
    for i, layer in enumerate(s.layers):
        np.testing.assert_allclose(s.layer_audio(layer), ref[f"layer{i}"], atol=1e-5)
    assert info["target"] in s.paint.targets()
    paint = s.paint.mask(info["target"])
    assert paint.max() > 0.5
    # What was autosaved (quantised paint tolerated); the unfinished stroke is not there.
    np.testing.assert_allclose(paint, ref["paint"], atol=1 / 255 + 1e-6)
    assert w.modified and w.windowTitle().startswith("two voices")
    assert w.first_run_hint is None  # recovery, not the demo
    # The recovered document is autosaved anew; the crash's files are gone.
    assert recoverable() == []
    w.shutdown()
