"""Long work off the GUI thread: a QThread running a function with a JobContext.

``JobRunner.start(label, work, apply)`` runs ``work(ctx)`` in a worker thread;
``ctx.progress`` reports become the ``progress`` signal (fraction, message,
ETA) delivered on the GUI thread; ``cancel()`` sets the context's cancel flag
so the work stops at its next ``ctx.progress`` with ``Cancelled``. When the
work returns, ``apply(result)`` runs on the GUI thread: that is where a
session is changed (as one undoable step), so widgets are only ever touched
from the GUI thread. Failures reach ``failed`` with a one-line reason and the
traceback for the log.

``JobBar`` is the status-bar widget that shows a runner: label, progress,
ETA and a Cancel button.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import traceback
from typing import Any, Callable, Optional

from PySide6.QtCore import QObject, QThread, Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from demixstudio.errors import Cancelled, DemixError
from demixstudio.jobs.context import JobContext, Progress

log = logging.getLogger("demixstudio.gui.jobs")

Work = Callable[[JobContext], Any]
Apply = Callable[[Any], Any]


def one_line_reason(exc: BaseException) -> str:
    """The sentence a user sees: our errors' own message, else the type and message."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, DemixError):
        return text or type(exc).__name__
    if isinstance(exc, MemoryError):
        return "not enough memory for this operation"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


#: Niceness added to worker threads: the GUI thread wins the CPU (and so the
#: GIL) whenever both want it, so long numeric work does not stall the window.
WORKER_NICENESS = 5


def lower_thread_priority() -> None:
    """Make the calling thread nicer (Linux: per-thread niceness; elsewhere no-op)."""
    if sys.platform.startswith("linux"):
        try:
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid,
                           min(19, os.getpriority(os.PRIO_PROCESS, tid) + WORKER_NICENESS))
        except OSError:  # not permitted in some sandboxes: run at normal priority
            pass


class _WorkerThread(QThread):
    """Runs ``work(ctx)`` once; the outcome is read by the runner when it finishes."""

    progressed = Signal(object)  # Progress, queued to the GUI thread

    def __init__(self, work: Work, ctx_cancel: threading.Event, parent: QObject) -> None:
        super().__init__(parent)
        self._work = work
        self.ctx = JobContext(on_progress=self.progressed.emit, cancel_event=ctx_cancel,
                              min_interval_s=0.05)
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.details = ""
        self.was_cancelled = False

    def run(self) -> None:  # the worker thread
        lower_thread_priority()
        try:
            self.result = self._work(self.ctx)
        except Cancelled:
            self.was_cancelled = True
        except BaseException as exc:  # reported to the GUI thread, never lost
            self.error = exc
            self.details = traceback.format_exc()


class JobRunner(QObject):
    """One job at a time in a worker thread, with progress, ETA and cancel.

    Signals (all on the GUI thread):
    started(label); progress(fraction, message, eta_s or None);
    succeeded(label, value of apply); failed(label, reason, details);
    cancelled(label); busyChanged(busy); finished(label) after any outcome.
    """

    started = Signal(str)
    progress = Signal(float, str, object)
    succeeded = Signal(str, object)
    failed = Signal(str, str, str)
    cancelled = Signal(str)
    busyChanged = Signal(bool)
    finished = Signal(str)

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self._thread: Optional[_WorkerThread] = None
        self._label = ""
        self._apply: Optional[Apply] = None
        self._cancel = threading.Event()
        self.last_progress: Optional[Progress] = None

    @property
    def busy(self) -> bool:
        return self._thread is not None

    @property
    def label(self) -> str:
        return self._label

    def start(self, label: str, work: Work, apply: Optional[Apply] = None) -> bool:
        """Run ``work(ctx)`` in the background, then ``apply(result)`` here.

        Returns False (and starts nothing) while another job runs.
        """
        if self._thread is not None:
            return False
        self._label = label
        self._apply = apply
        self._cancel = threading.Event()
        self.last_progress = None
        t = _WorkerThread(work, self._cancel, self)
        t.progressed.connect(self._on_progress, Qt.ConnectionType.QueuedConnection)
        t.finished.connect(self._on_finished, Qt.ConnectionType.QueuedConnection)
        self._thread = t
        log.info("job started: %s", label)
        self.busyChanged.emit(True)
        self.started.emit(label)
        t.start(QThread.Priority.LowPriority)
        return True

    def cancel(self) -> None:
        """Ask the running job to stop at its next progress report."""
        if self._thread is not None:
            self._cancel.set()

    def wait(self, ms: int = 60000) -> bool:
        """Block until the worker thread ends (for shutdown and scripts)."""
        t = self._thread
        return True if t is None else bool(t.wait(ms))

    def _on_progress(self, p: Progress) -> None:
        if self._thread is None:
            return
        self.last_progress = p
        self.progress.emit(float(p.fraction), p.message or "", p.eta_s)

    def _on_finished(self) -> None:
        t = self._thread
        if t is None:
            return
        self._thread = None
        label, apply = self._label, self._apply
        self._apply = None
        try:
            if t.was_cancelled or (self._cancel.is_set() and t.error is None):
                log.info("job cancelled: %s", label)
                self.cancelled.emit(label)
            elif t.error is not None:
                self._fail(label, t.error, t.details)
            else:
                try:
                    value = apply(t.result) if apply is not None else t.result
                except Exception as exc:  # applying failed: the session is left as it was
                    self._fail(label, exc, traceback.format_exc())
                else:
                    log.info("job done: %s (%.2f s)", label, t.ctx.elapsed())
                    self.succeeded.emit(label, value)
        finally:
            t.deleteLater()
            self.busyChanged.emit(False)
            self.finished.emit(label)

    def _fail(self, label: str, exc: BaseException, details: str) -> None:
        reason = one_line_reason(exc)
        log.error("job failed: %s: %s\n%s", label, reason, details)
        self.failed.emit(label, reason, details)


class BackgroundTask(QObject):
    """Fire-and-forget work for the editor's own needs (audio for playback,
    autosave): no progress bar, newest request wins. Errors are logged and
    reported by ``failed(label, reason)``, for the owner to show where it fits
    (the autosave's in the status bar)."""

    done = Signal(object)
    failed = Signal(str, str)  # label, one-line reason

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self._runner = JobRunner(self)
        self._pending: Optional[tuple] = None
        self._runner.finished.connect(self._next)
        self._runner.failed.connect(self._failed)

    def _failed(self, label: str, reason: str, _details: str) -> None:
        log.warning("%s failed: %s", label, reason)
        self.failed.emit(label, reason)

    @property
    def busy(self) -> bool:
        return self._runner.busy or self._pending is not None

    def submit(self, label: str, work: Work, apply: Optional[Apply] = None) -> None:
        """Run ``work`` after the current one (a newer request replaces a pending one)."""
        def apply_and_signal(result: Any) -> Any:
            value = apply(result) if apply is not None else result
            self.done.emit(value)
            return value
        if not self._runner.start(label, work, apply_and_signal):
            self._pending = (label, work, apply_and_signal)

    def cancel(self) -> None:
        self._pending = None
        self._runner.cancel()

    def wait(self, ms: int = 60000) -> bool:
        return self._runner.wait(ms)

    def _next(self, _label: str) -> None:
        if self._pending is not None:
            label, work, apply = self._pending
            self._pending = None
            self._runner.start(label, work, apply)


def format_eta(seconds: Optional[float]) -> str:
    if seconds is None:
        return ""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min left"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s left"
    return f"{s} s left"


class JobBar(QWidget):
    """Label, progress bar, ETA and Cancel for a JobRunner.

    The bar keeps its size when idle (its parts are hidden, their space kept),
    so a job starting or ending never re-lays out the window: a relayout
    would redraw the whole spectrogram while the job needs the CPU.
    """

    def __init__(self, runner: JobRunner, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.runner = runner
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel()
        self.label.setMinimumWidth(140)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(True)
        self.bar.setFixedWidth(180)
        self.eta = QLabel()
        self.eta.setMinimumWidth(80)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running job; the document stays as it was")
        self.cancel_button.clicked.connect(self._cancel)
        for w in (self.label, self.bar, self.eta, self.cancel_button):
            policy = w.sizePolicy()
            policy.setRetainSizeWhenHidden(True)
            w.setSizePolicy(policy)
            lay.addWidget(w)
        runner.started.connect(self._started)
        runner.progress.connect(self._progress)
        runner.finished.connect(lambda _l: self._show(False))
        self._show(False)

    @property
    def active(self) -> bool:
        """Whether a job is shown."""
        return self.bar.isVisible()

    def _show(self, on: bool) -> None:
        for w in (self.label, self.bar, self.eta, self.cancel_button):
            w.setVisible(on)

    def _started(self, label: str) -> None:
        self.label.setText(label)
        self.bar.setValue(0)
        self.bar.setFormat("%p%")
        self.eta.setText("")
        self.cancel_button.setEnabled(True)
        self._show(True)

    def _progress(self, fraction: float, message: str, eta: Any) -> None:
        self.bar.setValue(int(round(fraction * 1000)))
        text = f"{self.runner.label}: {message}" if message else self.runner.label
        self.label.setText(text if len(text) < 60 else text[:57] + "…")
        self.eta.setText(format_eta(eta))

    def _cancel(self) -> None:
        self.cancel_button.setEnabled(False)
        self.label.setText(f"{self.runner.label}: cancelling…")
        self.runner.cancel()
