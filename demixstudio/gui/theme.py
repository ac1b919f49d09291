"""The dark theme: Fusion style with a dark palette, and pyqtgraph to match."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

BACKGROUND = "#1e1f22"
BASE = "#17181a"
PANEL = "#26282c"
TEXT = "#dcdde0"
DIM_TEXT = "#8b8e94"
ACCENT = "#3d8fd6"
WARNING = "#e0a040"

STYLE_SHEET = f"""
QToolTip {{ color: {TEXT}; background-color: {PANEL}; border: 1px solid #44474d; padding: 4px; }}
QDockWidget::title {{ background: {PANEL}; padding: 4px 6px; }}
QStatusBar QLabel {{ padding: 0 6px; }}
QLabel#dimLabel {{ color: {DIM_TEXT}; }}
QLabel#warningLabel {{ color: {WARNING}; }}
QLabel#timeLabel {{ font-family: monospace; font-size: 13px; padding: 0 8px; }}
QToolButton:checked, QPushButton:checked {{ background-color: #34506b; border: 1px solid {ACCENT};
    border-radius: 3px; padding: 3px 8px; }}
QListWidget#layerList::item {{ border-bottom: 1px solid #2e3035; }}
QListWidget#layerList::item:selected {{ background-color: #2d3d50; }}
QLineEdit#layerName {{ background: transparent; border: 1px solid transparent; padding: 1px 3px; }}
QLineEdit#layerName:focus {{ background: {BASE}; border: 1px solid {ACCENT}; }}
QToolButton#muteButton:checked {{ background-color: #8a3b3b; border-color: #c05050; }}
QToolButton#soloButton:checked {{ background-color: #8a7a2b; border-color: #d0b040; }}
QPushButton#primaryButton {{ background-color: #2f6ea8; border: 1px solid {ACCENT};
    border-radius: 3px; padding: 5px 12px; font-weight: bold; }}
QPushButton#primaryButton:disabled {{ background-color: #33363b; border-color: #44474d; }}
"""


def dark_palette() -> QPalette:
    p = QPalette()
    bg, base, text = QColor(BACKGROUND), QColor(BASE), QColor(TEXT)
    dim = QColor(DIM_TEXT)
    p.setColor(QPalette.ColorRole.Window, bg)
    p.setColor(QPalette.ColorRole.WindowText, text)
    p.setColor(QPalette.ColorRole.Base, base)
    p.setColor(QPalette.ColorRole.AlternateBase, QColor(PANEL))
    p.setColor(QPalette.ColorRole.ToolTipBase, QColor(PANEL))
    p.setColor(QPalette.ColorRole.ToolTipText, text)
    p.setColor(QPalette.ColorRole.PlaceholderText, dim)
    p.setColor(QPalette.ColorRole.Text, text)
    p.setColor(QPalette.ColorRole.Button, QColor(PANEL))
    p.setColor(QPalette.ColorRole.ButtonText, text)
    p.setColor(QPalette.ColorRole.BrightText, QColor("#ff6060"))
    p.setColor(QPalette.ColorRole.Link, QColor(ACCENT))
    p.setColor(QPalette.ColorRole.Highlight, QColor(ACCENT))
    p.setColor(QPalette.ColorRole.HighlightedText, QColor("#ffffff"))
    p.setColor(QPalette.ColorRole.Light, QColor("#3a3d42"))
    p.setColor(QPalette.ColorRole.Midlight, QColor("#303237"))
    p.setColor(QPalette.ColorRole.Mid, QColor("#2a2c30"))
    p.setColor(QPalette.ColorRole.Dark, QColor("#111214"))
    p.setColor(QPalette.ColorRole.Shadow, QColor("#000000"))
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text,
                 QPalette.ColorRole.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor("#6b6e74"))
    p.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Highlight, QColor("#3a3d42"))
    return p


def apply_dark_theme(app: QApplication) -> None:
    """Fusion style, dark palette, our style sheet; pyqtgraph's defaults to match."""
    app.setStyle("Fusion")
    app.setPalette(dark_palette())
    app.setStyleSheet(STYLE_SHEET)
    try:
        import pyqtgraph as pg

        pg.setConfigOptions(background=BASE, foreground=TEXT, antialias=False)
    except ImportError:  # pragma: no cover - pyqtgraph is a dependency
        pass


# The light theme: Fusion's own light palette; the spectrogram keeps its dark
# background (the colour maps are made to be read on it).
LIGHT_STYLE_SHEET = """
QToolTip { color: #202124; background-color: #f4f5f7; border: 1px solid #b8bcc4; padding: 4px; }
QDockWidget::title { background: #e4e6ea; padding: 4px 6px; }
QStatusBar QLabel { padding: 0 6px; }
QLabel#dimLabel { color: #60646b; }
QLabel#warningLabel { color: #a0600a; }
QLabel#timeLabel { font-family: monospace; font-size: 13px; padding: 0 8px; }
QToolButton:checked, QPushButton:checked { background-color: #cfe2f6; border: 1px solid #3d8fd6;
    border-radius: 3px; padding: 3px 8px; }
QListWidget#layerList::item { border-bottom: 1px solid #dcdfe4; }
QListWidget#layerList::item:selected { background-color: #cfe2f6; color: #202124; }
QLineEdit#layerName { background: transparent; border: 1px solid transparent; padding: 1px 3px; }
QLineEdit#layerName:focus { background: #ffffff; border: 1px solid #3d8fd6; }
QToolButton#muteButton:checked { background-color: #f0b8b8; border-color: #c05050; }
QToolButton#soloButton:checked { background-color: #f0e0a0; border-color: #d0b040; }
QPushButton#primaryButton { background-color: #3d8fd6; color: #ffffff; border: 1px solid #2f6ea8;
    border-radius: 3px; padding: 5px 12px; font-weight: bold; }
QPushButton#primaryButton:disabled { background-color: #d4d6da; color: #8b8e94; }
"""

def apply_theme(app: QApplication, name: str = "dark") -> None:
    """``"dark"`` (the default) or ``"light"``; anything else means dark."""
    if name != "light":
        apply_dark_theme(app)
        return
    app.setStyle("Fusion")
    app.setPalette(app.style().standardPalette())
    app.setStyleSheet(LIGHT_STYLE_SHEET)
