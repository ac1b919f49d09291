"""The application icon (resources/icons: the SVG and PNGs rendered from it).

The icons live beside the package in a source checkout, and under
``resources/icons`` inside a frozen build's folder (PyInstaller's
``sys._MEIPASS``); a plain ``pip install`` has none and the window keeps
Qt's default icon.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from PySide6.QtGui import QIcon

#: The PNG sizes packaging/render_icons.py writes.
ICON_SIZES = (16, 32, 48, 64, 128, 256, 512)


def icons_dir() -> Optional[Path]:
    """The folder holding ``demixstudio.svg`` and ``demixstudio-<N>.png``, or None."""
    candidates = []
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        candidates.append(Path(frozen) / "resources" / "icons")
    candidates.append(Path(__file__).resolve().parents[2] / "resources" / "icons")
    for d in candidates:
        if (d / "demixstudio-256.png").is_file():
            return d
    return None


def app_icon() -> QIcon:
    """Every PNG size (crisp in title bars and docks alike); empty when none are found."""
    icon = QIcon()
    d = icons_dir()
    if d is None:
        return icon
    for n in ICON_SIZES:
        p = d / f"demixstudio-{n}.png"
        if p.is_file():
            icon.addFile(str(p))
    return icon
