"""Job context: progress, ETA and cooperative cancellation, with no Qt."""

from demixstudio.jobs.context import JobContext, NullContext

__all__ = ["JobContext", "NullContext"]
