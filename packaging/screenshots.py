"""Render the editor window with a real separation on it and save PNG screenshots.

Usage (from the repository root)::

    xvfb-run -a .venv/bin/python packaging/screenshots.py [--out resources/screenshots]

It opens the built-in demo song (synthesised in code, so the pictures carry
no third-party audio), separates it with ``ica``, splits the first layer
again with ``hpss``, paints hints for two targets, sets a few mixer controls,
picks ``nmf-paint`` and grabs the window. A second window then repairs the demo
cut to a telephone's 300–3400 Hz from an example (another take of the song, seed
1), with the repaired layer shown. Under ``xvfb-run`` Qt uses the X server when its xcb
plugin can load and falls back to the offscreen platform otherwise (both
render the same widgets with the same fonts).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("QT_QPA_PLATFORM", "xcb;offscreen")
# Screenshots must not touch the user's settings, log or autosaves.
_TMP = tempfile.mkdtemp(prefix="demixstudio-shots-")
os.environ.setdefault("DEMIXSTUDIO_SETTINGS", os.path.join(_TMP, "settings.ini"))
os.environ.setdefault("DEMIXSTUDIO_LOG_DIR", _TMP)
os.environ.setdefault("DEMIXSTUDIO_DATA_DIR", _TMP)


def _wait(app, cond, timeout_s: float = 300.0, what: str = "") -> None:
    from PySide6.QtCore import QEventLoop

    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            raise SystemExit(f"timed out waiting for {what}")
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
        time.sleep(0.01)


def _settle(app, win, seconds: float = 0.5) -> None:
    """Let the view draw everything it has queued."""
    _wait(app, lambda: not win.runner.busy and win.view.image_ready()
          and win.transport.ready, what="the view and the playback audio")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


def _run(app, win, method: str, on=None, **values) -> None:
    win.method_panel.select_method(method)
    if values:
        win.method_panel.form.set_values(values)
    if on is not None:
        win.layer_panel.select_layer(on)
        win.method_panel.set_run_on_layer(True)
    else:
        win.method_panel.set_run_on_layer(False)
    win.method_panel.request_run()
    _wait(app, lambda: not win.runner.busy, what=method)
    if win.errors:
        raise SystemExit(f"{method} failed: {win.errors[-1]}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "resources" / "screenshots"))
    p.add_argument("--width", type=int, default=1600)
    p.add_argument("--height", type=int, default=960)
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from demixstudio.gui.app import create_application
    from demixstudio.gui.main_window import MainWindow

    app = create_application()
    win = MainWindow(autosave=False)
    win.errors = []
    win.show_error = lambda title, reason, details: win.errors.append((title, reason))
    win.ask_save_changes = lambda: "discard"
    win.resize(args.width, args.height)
    win.show()
    print(f"platform: {app.platformName()}")

    win.open_demo()
    _wait(app, lambda: win.session is not None and not win.runner.busy, what="the demo")
    s = win.session
    win.freq_scale.setCurrentText("log")
    _run(app, win, "ica")
    first = s.layers[0]
    _run(app, win, "hpss", on=first.id)
    s.set(s.layers[0], gain_db=-3.0)
    s.set(s.layers[1], pan=-0.3)
    s.set(s.layers[2], solo=False, gain_db=1.5)

    # Paint hints for two targets: a bass line (low band) and a lead phrase.
    # Hint colours chosen to stand out on the inferno colour map.
    win.new_paint_target("bass")
    s.paint.add_target("bass", "#00e5ff")
    if "target 1" in s.paint.targets() and s.paint.is_empty("target 1"):
        s.paint.remove_target("target 1")
        win._fill_targets(keep="bass")
    win.view.paint_rect_seconds(0.6, 5.4, 40.0, 180.0, strength=0.9)
    win.new_paint_target("lead")
    s.paint.add_target("lead", "#76ff03")
    win.set_tool("brush")
    win.brush_size.setValue(28)
    win.view.paint_path_seconds([(6.2, 900.0), (7.0, 1100.0), (7.8, 1000.0), (8.6, 1300.0),
                                 (9.4, 1200.0)])
    win.view.paint_rect_seconds(2.5, 4.6, 2500.0, 5200.0, strength=0.5)
    win.view.set_time_selection(2.4, 4.8)
    # What comes next for the painted targets: the method that reads paint, whose
    # hint controls the panel then shows.
    win.method_panel.select_method("nmf-paint")
    win.transport.seek(3.1)
    win.layer_panel.show_mixture()
    _settle(app, win, 1.0)
    shots = []
    path = out / "main-window.png"
    win.grab().save(str(path))
    shots.append(path)

    # A layer shown on its own, with the harmonic brush chosen.
    win.layer_panel.select_layer(s.layers[2].id)
    win.set_tool("harmonic")
    win.view.zoom_to(1.0, 7.0, 30.0, 8000.0)
    _settle(app, win, 1.0)
    path = out / "layer-view.png"
    win.grab().save(str(path))
    shots.append(path)

    # The export dialog over the window.
    from demixstudio.gui.dialogs import ExportDialog

    dlg = ExportDialog(s, win, folder=str(Path.home() / "Music" / "demo stems"))
    dlg.show()
    _settle(app, win, 0.5)
    path = out / "export-dialog.png"
    dlg.grab().save(str(path))
    shots.append(path)
    dlg.close()

    win.shutdown()
    win.close()
    shots.append(_repair_shot(app, out, args.width, args.height))
    for p_ in shots:
        print(p_)
    return 0


def _repair_shot(app, out: Path, width: int, height: int) -> Path:
    """``repair`` in the editor: the demo song band-limited to 300–3400 Hz, its
    example another take of it, the repaired layer selected and shown."""
    from scipy.signal import butter, sosfiltfilt

    from demixstudio.audio.io import save_audio
    from demixstudio.demo import DEMO_SR, demo_mixture
    from demixstudio.gui.main_window import MainWindow

    sr = DEMO_SR
    mix, _ = demo_mixture(sr, 12.0, seed=0)
    sos = butter(10, [300.0, 3400.0], btype="band", fs=sr, output="sos")
    phone = save_audio(Path(_TMP) / "demo, 300-3400 Hz.wav",
                       sosfiltfilt(sos, mix).astype("float32"), sr)
    example = save_audio(Path(_TMP) / "demo, another take.wav",
                         demo_mixture(sr, 12.0, seed=1)[0], sr)

    win = MainWindow(autosave=False)
    win.errors = []
    win.show_error = lambda title, reason, details: win.errors.append((title, reason))
    win.ask_save_changes = lambda: "discard"
    win.resize(width, height)
    win.show()
    win.open_path(str(phone), ask=False)
    _wait(app, lambda: win.session is not None and not win.runner.busy, what="the file")
    win.freq_scale.setCurrentText("log")
    win.method_panel.select_method("repair")
    win.method_panel.form.set_values({"band_lo_hz": 300.0, "band_hi_hz": 3400.0})
    win.method_panel.add_example_file(str(example), "song")
    _run(app, win, "repair", band_lo_hz=300.0, band_hi_hz=3400.0)
    repaired = next(layer for layer in win.session.layers if layer.name == "repaired")
    win.layer_panel.select_layer(repaired.id)
    _settle(app, win, 1.0)
    path = out / "repair.png"
    win.grab().save(str(path))
    win.shutdown()
    win.close()
    return path


if __name__ == "__main__":
    sys.exit(main())
