"""A scripted run of the real editor, for smoke tests of installed or frozen builds.

``demixstudio-gui --smoke-test FILE --method hpss --export DIR`` opens the
window as a user would (FILE ``demo``: the built-in demo song), then drives
it through the same code paths the mouse does: FILE is opened with the
window's job machinery, the method is picked in the method panel and its
Separate button pressed, every layer is exported as a stem (32-bit float
WAV, gain and pan not applied, so the stems sum to the input), playback
is tried (or its reason for being off is reported) and the window is
closed. Nothing blocks in a modal dialog: errors and the "save changes?"
question are answered by the script.

Progress goes to stdout as ``SMOKE <step> <seconds since start>`` lines (the
parent process times the start-up from them); ``--smoke-report PATH`` also
writes a JSON summary. The exit status is 0 on success, 1 when a step
failed and 2 when the run took longer than ``--smoke-timeout`` seconds.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QApplication

from demixstudio.gui.dialogs import ExportChoice

log = logging.getLogger("demixstudio.gui.automation")

#: ``--smoke-test demo`` opens the built-in demo song instead of a file.
DEMO = "demo"

#: How often the script polls for a condition (the method list, playback audio).
POLL_MS = 50


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The scripted-run options, added to the GUI's command line."""
    g = p.add_argument_group("scripted run (smoke test of a build)")
    g.add_argument("--smoke-test", metavar="FILE",
                   help="open FILE (or 'demo'), separate it, export stems, quit; "
                        "exit status 0 = passed")
    g.add_argument("--method", default="hpss", help="method for --smoke-test (default: hpss)")
    g.add_argument("--export", metavar="DIR", help="folder for the stems of --smoke-test")
    g.add_argument("--smoke-timeout", type=float, default=600.0, metavar="S",
                   help="give up after S seconds (exit status 2)")
    g.add_argument("--smoke-report", metavar="PATH", help="write a JSON summary to PATH")


class ScriptedRun(QObject):
    """Drives ``win`` through open → separate → play → export → close.

    Each step starts when the previous job was applied (``win.jobApplied``);
    ``code`` is the exit status once the run ended (None before).
    """

    def __init__(self, win, file: str, method: str, export_dir: str, *,
                 timeout_s: float = 600.0, report: Optional[str] = None,
                 t0: Optional[float] = None) -> None:
        super().__init__(win)
        self.win = win
        self.file = str(file)
        self.method = method
        self.export_dir = str(export_dir)
        self.report_path = report
        self.t0 = time.perf_counter() if t0 is None else t0
        self.code: Optional[int] = None
        self.times: Dict[str, float] = {}
        self.info: Dict[str, Any] = {"file": self.file, "method": method,
                                     "export": self.export_dir, "pid": os.getpid()}
        self._next: Optional[Callable[[], None]] = None
        self._expect = ""
        # Questions a user would answer; the script must never wait on a dialog.
        win.ask_save_changes = lambda: "discard"
        win.show_error = self._error  # job failures arrive here too
        win.jobApplied.connect(self._applied)
        self._deadline = QTimer(self)
        self._deadline.setSingleShot(True)
        self._deadline.timeout.connect(lambda: self._finish(2, f"timed out after {timeout_s:g} s"))
        self._deadline.start(int(timeout_s * 1000))

    # -- steps -------------------------------------------------------------------------
    def start(self) -> None:
        """Call right after ``win.show()``: steps begin once the event loop runs."""
        QTimer.singleShot(0, self._shown)

    def _mark(self, step: str) -> None:
        t = time.perf_counter() - self.t0
        self.times[step] = round(t, 3)
        print(f"SMOKE {step} {t:.3f}", flush=True)
        log.info("smoke test: %s at %.3f s", step, t)

    def _shown(self) -> None:
        self._mark("window-shown")
        self._wait_job("Open ", self._opened)
        demo = self.file == DEMO and not Path(self.file).exists()
        if not (self.win.open_demo() if demo else self.win.open_path(self.file, ask=False)):
            self._finish(1, f"could not start opening {self.file}")

    def _opened(self) -> None:
        s = self.win.session
        self.info["input"] = {"channels": s.channels, "sr": s.sr, "seconds": s.duration_s}
        self._mark("file-opened")
        self._poll(self._methods_listed, self._methods_ready)

    def _methods_listed(self) -> bool:
        """The method list is in the panel (it loads in the background)."""
        if self.win.method_panel.method.isEnabled():
            return True
        if not self.win._method_loader.busy:  # loading ended without a list: it failed
            self._finish(1, "the separation methods failed to load (the log says why)")
        return False

    def _methods_ready(self) -> None:
        panel = self.win.method_panel
        panel.select_method(self.method)
        if panel.method_name() != self.method:
            self._finish(1, f"no method {self.method!r}; the panel lists "
                            f"{[panel.method.itemText(i) for i in range(panel.method.count())]}")
            return
        self._mark("methods-loaded")
        self._wait_job(f"{self.method} on ", self._separated)
        panel.run_button.click()  # as the user presses Separate
        if not self.win.runner.busy and self.code is None:
            self._finish(1, "pressing Separate started no job")

    def _separated(self) -> None:
        self.info["layers"] = [x.name for x in self.win.session.layers]
        self._mark("separated")
        self._poll(lambda: self.win.transport.ready, self._try_playback)

    def _try_playback(self) -> None:
        tr = self.win.transport
        tr.play()
        eng = tr.engine
        self.info["playback"] = "playing" if eng.playing else (eng.reason or "off")
        tr.stop()
        self._mark("playback-tried")
        Path(self.export_dir).mkdir(parents=True, exist_ok=True)
        ids = [x.id for x in self.win.session.layers]
        self._wait_job("Export", self._exported)
        choice = ExportChoice(folder=self.export_dir, stems=True, remix=False, layers=ids,
                              ext="wav", bits="float", apply_settings=False)
        if not self.win.export(choice):
            self._finish(1, "export did not start")

    def _exported(self) -> None:
        self.info["files"] = sorted(p.name for p in Path(self.export_dir).iterdir())
        self._mark("exported")
        self._finish(0, "")

    # -- plumbing ----------------------------------------------------------------------
    def _wait_job(self, label_prefix: str, then: Callable[[], None]) -> None:
        self._expect, self._next = label_prefix, then

    def _applied(self, label: str) -> None:
        if self._next is not None and label.startswith(self._expect):
            then, self._next = self._next, None
            QTimer.singleShot(0, then)

    def _poll(self, cond: Callable[[], bool], then: Callable[[], None]) -> None:
        if self.code is not None:
            return
        if cond():
            then()
        else:
            QTimer.singleShot(POLL_MS, lambda: self._poll(cond, then))

    def _error(self, title: str, reason: str, details: str = "") -> None:
        log.error("smoke test: %s: %s\n%s", title, reason, details)
        self._finish(1, f"{title}: {reason}")

    def fail_with(self, exc: BaseException) -> None:
        """For the exception hook: an uncaught error ends the run as failed."""
        log.error("smoke test: uncaught\n%s", "".join(traceback.format_exception(exc)))
        self._finish(1, f"uncaught {type(exc).__name__}: {exc}")

    def _finish(self, code: int, why: str) -> None:
        if self.code is not None:
            return
        self.code = code
        self._deadline.stop()
        self.info.update(ok=code == 0, code=code, reason=why, times=self.times)
        if self.report_path:
            Path(self.report_path).write_text(json.dumps(self.info, indent=2), encoding="utf-8")
        print(f"SMOKE {'passed' if code == 0 else 'FAILED'} {why}".rstrip(), flush=True)
        if code != 0:
            self.win.runner.cancel()
        self.win.close()
        self._mark("closed")
        QApplication.instance().exit(code)


def install(win, args: argparse.Namespace, t0: Optional[float] = None) -> Optional[ScriptedRun]:
    """Start the scripted run asked for on the command line (None when not asked)."""
    if not args.smoke_test:
        return None
    if not args.export:
        raise SystemExit("--smoke-test needs --export DIR")
    run = ScriptedRun(win, args.smoke_test, args.method, args.export,
                      timeout_s=args.smoke_timeout, report=args.smoke_report, t0=t0)

    def hook(exc_type, exc, tb) -> None:
        _log_uncaught(exc_type, exc, tb)
        run.fail_with(exc)
    # The editor's hook shows a modal dialog; a scripted run must fail instead.
    sys.excepthook = hook
    run.start()
    return run


def _log_uncaught(exc_type, exc, tb) -> None:
    details = "".join(traceback.format_exception(exc_type, exc, tb))
    log.error("uncaught error\n%s", details)
    sys.__stderr__.write(details)
