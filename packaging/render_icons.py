"""Render resources/icons/demixstudio.svg to the PNG sizes desktops ask for.

Usage (from the repository root)::

    QT_QPA_PLATFORM=offscreen .venv/bin/python packaging/render_icons.py

Writes ``resources/icons/demixstudio-<N>.png`` for N in 16, 32, 48, 64, 128,
256 and 512, drawn by QSvgRenderer into a transparent QImage (antialiased).
``packaging/install_linux.sh`` copies them into the freedesktop hicolor theme.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ICONS = REPO / "resources" / "icons"
SIZES = (16, 32, 48, 64, 128, 256, 512)


def render(svg: Path, out_dir: Path, sizes=SIZES) -> list[Path]:
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    # A Qt application must exist while the images are painted.
    app = QGuiApplication.instance() or QGuiApplication([sys.argv[0]])
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"cannot read the SVG {svg}")
    written = []
    for n in sizes:
        img = QImage(n, n, QImage.Format.Format_ARGB32_Premultiplied)
        img.fill(Qt.GlobalColor.transparent)
        p = QPainter(img)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        renderer.render(p)
        p.end()
        path = out_dir / f"demixstudio-{n}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not img.save(str(path), "PNG"):
            raise SystemExit(f"cannot write {path}")
        written.append(path)
    del app  # held until every size is written
    return written


if __name__ == "__main__":
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    for p in render(ICONS / "demixstudio.svg", ICONS):
        print(p.relative_to(REPO))
