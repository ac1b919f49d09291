"""The document model (no Qt): Session, Layer, undoable commands, project files, export."""

from demixstudio.session.layer import Layer, Provenance
from demixstudio.session.session import Session

__all__ = ["Layer", "Provenance", "Session"]
