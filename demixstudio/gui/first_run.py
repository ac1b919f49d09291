"""The first-run hint: a banner over the demo saying what to do, shown once.

The first time the editor opens (with the demo song), a strip above the
spectrogram says: drop a file, paint, run a method. Closing it, or simply
having seen it, is remembered in the preferences (``ui/first_run_hint_shown``),
so it never comes back; the banner is not modal, so it never blocks anything.
"""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QWidget

HINT_KEY = "ui/first_run_hint_shown"
HINT_TEXT = ("<b>Welcome to DemixStudio.</b> This is a demo song. "
             "<b>Drop</b> an audio file on the window to open your own; "
             "<b>paint</b> over a sound with the brush (B) or the rectangle (R); "
             "pick a <b>method</b> on the right and press <b>Separate</b>: "
             "each source becomes a layer you can mute, solo and export.")


def _truthy(v) -> bool:
    # INI files give booleans back as the strings "true"/"false".
    return v is True or str(v).strip().lower() in ("true", "1", "yes")


class FirstRunHint(QFrame):
    """The banner: the hint text and a close button."""

    dismissed = Signal()

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("firstRunHint")
        # Palette roles, so the banner follows the light and dark themes.
        self.setStyleSheet("QFrame#firstRunHint { background: palette(alternate-base); "
                           "border-bottom: 2px solid palette(highlight); }")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 6, 6, 6)
        self.label = QLabel(HINT_TEXT)
        self.label.setWordWrap(True)
        lay.addWidget(self.label, 1)
        self.close_button = QToolButton()
        self.close_button.setText("Got it")
        self.close_button.setToolTip("Hide this hint (it is shown only once)")
        self.close_button.clicked.connect(self.dismiss)
        lay.addWidget(self.close_button)

    def dismiss(self) -> None:
        self.hide()
        self.dismissed.emit()
        self.deleteLater()


def hint_seen(prefs) -> bool:
    return _truthy(prefs.value(HINT_KEY, False))


def show_first_run_hint(win) -> Optional[FirstRunHint]:
    """Put the banner above ``win``'s spectrogram unless it was shown before.

    Marks it as shown at once (a crash must not bring it back every time);
    returns the banner, or None when it had been seen already.
    """
    prefs = win.prefs
    if hint_seen(prefs):
        return None
    prefs.set_value(HINT_KEY, True)
    prefs.sync()
    hint = FirstRunHint(win.centralWidget())
    win.centralWidget().layout().insertWidget(0, hint)
    hint.show()  # the window is already visible: a new child must be shown
    return hint
