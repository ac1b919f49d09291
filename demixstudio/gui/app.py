"""The editor's entry point: ``demixstudio gui [FILE]`` and the ``demixstudio-gui`` script.

Creates the QApplication (HiDPI, dark theme), sends the log to the user log
folder, shows the window with FILE (an audio file or a ``.dsproj``) or, with
no file, the built-in demo; after a crash it first offers to recover the
autosave.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import traceback
from typing import List, Optional, Sequence

from demixstudio import __version__

log = logging.getLogger("demixstudio.gui")


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="demixstudio gui", description="Open the editor window.")
    p.add_argument("file", nargs="?", help="an audio file or a .dsproj project")
    p.add_argument("--no-recovery", action="store_true",
                   help="do not offer to recover autosaves from a crash")
    p.add_argument("--version", action="version", version=f"demixstudio {__version__}")
    from demixstudio.gui.automation import add_arguments

    add_arguments(p)  # --smoke-test FILE --method M --export DIR (a scripted run)
    return p.parse_args(list(argv))


def create_application(argv: Optional[List[str]] = None):
    """The QApplication with HiDPI, the icon and the chosen theme (reuses a running one)."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    from demixstudio.gui.settings import Preferences
    from demixstudio.gui.theme import apply_theme

    app = QApplication.instance()
    if app is None:
        # Qt 6 scales by the screen's device pixel ratio by itself; pass
        # fractional factors (150 %) through instead of rounding them.
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(
            Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        app = QApplication(argv or [sys.argv[0]])
    app.setApplicationName("DemixStudio")
    app.setOrganizationName("DemixStudio")
    app.setApplicationVersion(__version__)
    app.setDesktopFileName("demixstudio")  # packaging/demixstudio.desktop (Wayland icons)
    from demixstudio.gui.icons import app_icon

    app.setWindowIcon(app_icon())
    apply_theme(app, Preferences().theme())  # dark unless the user chose light
    return app


def _excepthook(exc_type, exc, tb) -> None:
    """Uncaught errors in slots: logged with the traceback, shown in one line."""
    details = "".join(traceback.format_exception(exc_type, exc, tb))
    log.error("uncaught error\n%s", details)
    sys.__stderr__.write(details)
    try:
        from PySide6.QtWidgets import QApplication

        from demixstudio.gui.dialogs import error_dialog
        from demixstudio.gui.worker import one_line_reason

        if QApplication.instance() is not None:
            error_dialog(QApplication.activeWindow(), "Something went wrong",
                         one_line_reason(exc), details)
    except Exception:  # never let the hook itself fail
        pass


def open_editor(argv: Sequence[str] = ()):
    """Everything ``main`` does before running the event loop; returns the window.

    FILE (an audio file or a ``.dsproj``) is opened, or the demo without one;
    after a crash the autosave is offered first.
    """
    t0 = time.perf_counter()
    args = _parse(argv)
    from demixstudio.gui.automation import install as install_scripted_run
    from demixstudio.gui.autosave import recoverable
    from demixstudio.gui.main_window import MainWindow
    from demixstudio.gui.settings import setup_logging

    path = setup_logging()
    log.info("DemixStudio %s starting; log at %s", __version__, path)
    create_application()
    sys.excepthook = _excepthook
    win = MainWindow()
    win.show()
    # A scripted run (--smoke-test) opens its own file and asks nothing.
    win.scripted_run = install_scripted_run(win, args, t0)
    if win.scripted_run is not None:
        return win
    recovering = None if args.no_recovery else win.offer_recovery(recoverable())
    if recovering is not None and win.runner.busy:
        # A recovery that fails (a damaged autosave: its error is shown) or is
        # cancelled must not leave the window empty: FILE or the demo opens after it.
        label = win.runner.label

        def after_recovery(finished: str) -> None:
            if finished != label:
                return
            win.runner.finished.disconnect(after_recovery)
            if win.session is None:
                _open_file_or_demo(win, args.file)
        win.runner.finished.connect(after_recovery)
    elif win.session is None:
        _open_file_or_demo(win, args.file)
    return win


def _open_file_or_demo(win, file: Optional[str]) -> None:
    """Open FILE in ``win`` (an audio file or a ``.dsproj``), or the demo without one."""
    if file:
        win.open_path(file, ask=False)
    else:
        win.open_demo()


def no_display_reason() -> Optional[str]:
    """Why no window can open here (Linux without X11/Wayland), or None."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return None
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    return "no display (neither DISPLAY nor WAYLAND_DISPLAY is set)"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Open the editor and run until its window closes; returns the exit code."""
    why = no_display_reason()
    if why is not None:  # Qt would abort; say it in one line instead
        print(f"demixstudio: cannot open the editor window: {why}; "
              "use the command line instead: demixstudio --help", file=sys.stderr)
        return 1
    from PySide6.QtWidgets import QApplication

    win = open_editor(sys.argv[1:] if argv is None else argv)
    code = int(QApplication.instance().exec())
    run = getattr(win, "scripted_run", None)
    if run is not None and run.code is not None:
        code = run.code
    del win
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
