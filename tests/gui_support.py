"""Helpers for the pytest-qt tests of the editor (tests/test_gui_*.py).

``isolated_env`` points settings, log and autosave folders at a temporary
directory; ``speech_mixture`` builds a stereo instantaneous mixture of two
real recordings (16 kHz) with its true source images.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from conftest import shared

SR = 16000
FILES = ("speech_sisec_dev1/dev1_female4_src_1.wav", "speech_sisec_dev1/dev1_male4_src_2.wav")
MIXING = np.array([[0.9, 0.45], [0.43, 0.9]])


def isolated_env(monkeypatch, tmp_path: Path) -> Path:
    """Settings, log and data folders under ``tmp_path``; returns the log folder."""
    monkeypatch.setenv("DEMIXSTUDIO_SETTINGS", str(tmp_path / "settings.ini"))
    monkeypatch.setenv("DEMIXSTUDIO_LOG_DIR", str(tmp_path / "log"))
    monkeypatch.setenv("DEMIXSTUDIO_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "log"


def open_editor(qtbot, monkeypatch, tmp_path: Path, *, autosave: bool = False):
    """:func:`make_editor` in an isolated environment (settings, log, data under
    ``tmp_path``); the caller calls ``w.shutdown()``."""
    isolated_env(monkeypatch, tmp_path)
    return make_editor(qtbot, autosave=autosave)


def make_editor(qtbot, **kw):
    """A shown MainWindow(**kw) (autosave off unless asked) whose error dialogs and
    save-changes question are recorded or answered instead of shown (``w.errors``
    collects (title, reason, details))."""
    from demixstudio.gui.main_window import MainWindow

    w = MainWindow(autosave=kw.pop("autosave", False), **kw)
    w.errors = []
    w.show_error = lambda title, reason, details: w.errors.append((title, reason, details))
    w.ask_save_changes = lambda: "discard"
    qtbot.addWidget(w)
    w.show()
    return w


def speech_mixture(seconds: float = 4.0):
    """(mixture float32 (2, n), images float64 (2 sources, 2 channels, n))."""
    srcs = []
    for rel in FILES:
        x, sr = sf.read(str(shared(rel)), dtype="float64", always_2d=True)
        assert sr == SR
        srcs.append(x[:, 0])
    n = min(int(seconds * SR), *(len(s) for s in srcs))
    s = np.stack([v[:n] for v in srcs])
    s /= np.sqrt(np.mean(s ** 2, axis=1, keepdims=True)) * 8.0
    images = MIXING.T[:, :, None] * s[:, None, :]
    return images.sum(axis=0).astype(np.float32), images


@functools.cache
def ica_separation():
    """The 3-s speech mixture float32 (2, n) and ICA's proposals for it, computed once
    per process (the proposals are read, never changed)."""
    from demixstudio.jobs.context import NullContext
    from demixstudio.separation import get_method
    from demixstudio.separation.base import Hints

    mix, _images = speech_mixture(3.0)
    m = get_method("ica")
    return mix, m.separate(mix, SR, m.Params(), Hints(), NullContext())


def ica_session(**kw):
    """A new Session("speech", **kw) of :func:`ica_separation`'s mixture with its ICA
    layers (2 layers + residual) and an empty history."""
    from demixstudio.session.session import Session

    mix, proposals = ica_separation()
    s = Session(mix, SR, name="speech", **kw)
    s.apply_proposals(proposals)
    s.history.clear()
    return s


def write_mixture(path: Path, seconds: float = 4.0):
    mix, images = speech_mixture(seconds)
    sf.write(str(path), mix.T, SR, subtype="FLOAT")
    return mix, images


def image_snr(images: np.ndarray, estimates) -> np.ndarray:
    """Per-source image SNR (dB) under the better of the two orders (2 sources)."""
    est = [np.asarray(e, dtype=np.float64) for e in estimates]
    best = None
    for order in ((0, 1), (1, 0)):
        snr = []
        for k, j in enumerate(order):
            err = images[k] - est[j]
            snr.append(10 * np.log10(np.sum(images[k] ** 2) / max(np.sum(err ** 2), 1e-30)))
        if best is None or np.median(snr) > np.median(best):
            best = snr
    return np.array(best)


class StallMeter:
    """Longest gap between ticks of a 10 ms QTimer: how long the event loop stalled."""

    def __init__(self, interval_ms: int = 10) -> None:
        from PySide6.QtCore import QTimer

        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.gaps = []
        self._last = None

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.gaps.append(now - self._last)
        self._last = now

    def start(self) -> None:
        self._last = time.perf_counter()
        self.timer.start()

    def stop(self) -> float:
        self.timer.stop()
        self._tick()
        return max(self.gaps) if self.gaps else 0.0
