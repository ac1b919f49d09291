"""The context a long-running operation reports to.

Iterative algorithms are plain loops that call ``ctx.progress(done, total)``
once per iteration. The same code then runs under the CLI's progress line, the
GUI's worker thread and a batch worker: each front end passes its own
``on_progress`` callback and sets the cancel flag from wherever the user's
"cancel" comes from.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

from demixstudio.errors import Cancelled


@dataclass(frozen=True)
class Progress:
    """One progress report.

    fraction : float in [0, 1], of the whole job (not of the current stage)
    message : str, what is being done now
    elapsed_s : float, seconds since the job started
    eta_s : float or None, estimated seconds left (None until it can be estimated)
    """

    fraction: float
    message: str
    elapsed_s: float
    eta_s: Optional[float]


ProgressCallback = Callable[[Progress], None]


class JobContext:
    """Progress, ETA and cancellation for one job.

    Parameters
    ----------
    on_progress : callable(Progress) or None
        Called from the working thread at most every ``min_interval_s``
        seconds (and always for the first and the last report).
    cancel_event : threading.Event or None
        Set it from any thread to ask the job to stop; the job notices at its
        next ``progress()`` or ``check()`` call and raises ``Cancelled``.
    min_interval_s : float
        Throttle for ``on_progress`` so tight loops don't flood a GUI.
    """

    def __init__(
        self,
        on_progress: Optional[ProgressCallback] = None,
        cancel_event: Optional[threading.Event] = None,
        min_interval_s: float = 0.05,
    ) -> None:
        self._on_progress = on_progress
        self.cancel_event = cancel_event if cancel_event is not None else threading.Event()
        self._min_interval_s = float(min_interval_s)
        self._t0 = time.monotonic()
        self._last_report = -1.0e9
        # A stage maps the local fraction [0, 1] onto [lo, hi] of the whole job.
        self._lo = 0.0
        self._hi = 1.0
        self.fraction = 0.0
        self.message = ""

    # -- cancellation -------------------------------------------------------
    def cancel(self) -> None:
        """Ask the job to stop at its next check (thread-safe)."""
        self.cancel_event.set()

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def check(self) -> None:
        """Raise ``Cancelled`` if the user asked to stop."""
        if self.cancel_event.is_set():
            raise Cancelled("cancelled by the user")

    # -- progress -----------------------------------------------------------
    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    def eta(self) -> Optional[float]:
        """Seconds left, from the mean rate so far (None before 1 % or 0.2 s)."""
        el = self.elapsed()
        if self.fraction < 0.01 or el < 0.2:
            return None
        return max(0.0, el * (1.0 - self.fraction) / self.fraction)

    def progress(self, done: float, total: float = 1.0, message: Optional[str] = None) -> None:
        """Report ``done`` of ``total`` units of the current stage, then check cancel."""
        local = 0.0 if total <= 0 else min(1.0, max(0.0, float(done) / float(total)))
        frac = self._lo + (self._hi - self._lo) * local
        # Progress never goes backwards, even if a stage re-estimates its work.
        self.fraction = max(self.fraction, frac)
        if message is not None:
            self.message = message
        now = time.monotonic()
        if self._on_progress is not None and (
            now - self._last_report >= self._min_interval_s or local >= 1.0
        ):
            self._last_report = now
            self._on_progress(Progress(self.fraction, self.message, self.elapsed(), self.eta()))
        self.check()

    def stage(self, lo: float, hi: float, message: Optional[str] = None) -> "JobContext":
        """Make the next reports cover [lo, hi] of the parent's current range.

        Returns self so it can be used as ``with ctx.stage(0.0, 0.5): ...``;
        the range is restored when the block ends.
        """
        span = self._hi - self._lo
        self._saved = getattr(self, "_saved", [])
        self._saved.append((self._lo, self._hi))
        self._lo, self._hi = self._lo + span * lo, self._lo + span * hi
        if message is not None:
            self.message = message
        return self

    def __enter__(self) -> "JobContext":
        return self

    def __exit__(self, *exc) -> None:
        if getattr(self, "_saved", None):
            self._lo, self._hi = self._saved.pop()


class NullContext(JobContext):
    """A context that reports nowhere and is never cancelled (for scripts and tests)."""

    def __init__(self) -> None:
        super().__init__(on_progress=None)
