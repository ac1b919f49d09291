"""Files dragged from a file manager: what the window and the example list accept."""

from __future__ import annotations

from typing import List


def local_files(event) -> List[str]:
    """The local file paths a drag or drop event carries (none for other data)."""
    md = event.mimeData()
    if md is None or not md.hasUrls():
        return []
    return [u.toLocalFile() for u in md.urls() if u.isLocalFile()]


def accept_files(event) -> None:
    """A drag-enter or drag-move handler: take the drag when it carries local files."""
    if local_files(event):
        event.acceptProposedAction()
    else:
        event.ignore()
