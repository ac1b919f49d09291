"""The error hierarchy shared by every part of DemixStudio.

Messages name the bad value and what would be accepted, so the CLI can print
them as one line and the GUI can show them in a dialog unchanged.
"""


class DemixError(Exception):
    """Root of every error DemixStudio raises on purpose."""


class ParameterError(DemixError, ValueError):
    """A parameter, option or hint has a value the operation cannot take."""


class AudioFormatError(DemixError):
    """Audio that cannot be read, or that holds no usable samples."""


class ProjectFileError(DemixError):
    """A project file that is malformed, unsafe or from an unknown schema."""


class Cancelled(DemixError):
    """The user cancelled a running job; raised from ``JobContext.check()``."""


class InsufficientMemoryError(DemixError, MemoryError):
    """An output that would not fit in the memory free now; refused before allocating it."""


class OutputError(DemixError):
    """Writing a file failed (no permission, disk full, ...); nothing was left half-written."""
