"""The transport bar: play/pause, stop, loop the selection, play the painted region.

It feeds the :class:`PlaybackEngine` (audio/, no Qt) from the session:

- when the layers change, the layers' audio is computed in a background
  thread (mask layers need an inverse STFT) and handed to the engine together
  with the live settings (``sourcesReady`` when done);
- when a layer setting changes (mute, solo, gain, pan), only the engine's
  gain matrix is replaced: the next audio block already uses it;
- "Painted region" plays ``apply_mask(current mixdown of the region, paint
  weights)`` for the chosen paint target, computed once per request in the
  background (``regionReady``).

With no PortAudio or no output device everything still works except the
sound; the bar says why.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QToolButton, QWidget

from demixstudio.audio.mixer import MixSettings, gain_matrix, mix_into
from demixstudio.audio.playback import PlaybackEngine
from demixstudio.audio.stft import apply_mask
from demixstudio.gui.worker import BackgroundTask

log = logging.getLogger("demixstudio.gui.transport")


def format_time(seconds: float) -> str:
    seconds = max(0.0, seconds)
    m, s = divmod(seconds, 60.0)
    return f"{int(m)}:{s:06.3f}"


def layer_audio_for_playback(mixture: np.ndarray, layers: Sequence, stft) -> List[np.ndarray]:
    """Each layer's audio at unity, the residual computed as the mixture minus the others.

    Runs in a worker thread, so it reads only the layers' own content (masks,
    waveforms, the mixture) and never the session's audio cache, whose
    entries an edit on the GUI thread may drop or replace meanwhile.
    """
    out: List[np.ndarray] = []
    residual_at = None
    for i, layer in enumerate(layers):
        if layer.is_residual:
            out.append(None)  # type: ignore[arg-type]
            residual_at = i
        elif layer.mask is not None:
            out.append(apply_mask(mixture, layer.mask, stft))
        else:
            out.append(layer.waveform)
    if residual_at is not None:
        res = mixture.copy()
        for a in out:
            if a is not None:
                res -= a
        out[residual_at] = res
    return out


def region_audio(stems: Sequence[np.ndarray], settings: Sequence[MixSettings], weights: np.ndarray,
                 frame0: int, stft, samples: int) -> Tuple[np.ndarray, int]:
    """The current remix of the painted region, masked by the paint weights.

    Parameters
    ----------
    weights : float32 (bins, frames) — the paint of frames ``frame0 .. frame0+frames``
    Returns (audio float32 (channels, n), first sample on the timeline).
    """
    hop, half = stft.hop, stft.n_fft // 2
    nfr = weights.shape[1]
    # A frame-aligned segment with half a window of margin each side, so the
    # edge frames see the same signal as in the whole file's STFT.
    margin = -(-half // hop)
    f_lo = max(0, frame0 - margin)
    start = f_lo * hop
    stop = min(samples, (frame0 + nfr + margin) * hop)
    channels = stems[0].shape[0]
    mix = np.empty((channels, stop - start), dtype=np.float32)
    g = gain_matrix(settings, channels)
    scratch = np.empty(1 << 16, dtype=np.float32)
    for a in range(0, mix.shape[1], scratch.size):
        mix_into(mix[:, a:a + scratch.size], stems, g, start + a, scratch)
    mask = np.zeros((1, stft.bins, stft.frames(mix.shape[1])), dtype=np.float32)
    k0 = frame0 - f_lo
    k1 = min(mask.shape[2], k0 + nfr)
    mask[0, :, k0:k1] = weights[:, :k1 - k0]
    return apply_mask(mix, mask, stft), start


class Transport(QWidget):
    """Transport controls bound to a session and a PlaybackEngine.

    Signals
    -------
    positionChanged(seconds) : while playing (about 30 times a second) and on seek
    sourcesReady() : the engine has the current layers' audio
    regionReady(bool) : the painted-region audio is ready (False: nothing painted)
    playingChanged(bool)
    """

    positionChanged = Signal(float)
    sourcesReady = Signal()
    regionReady = Signal(bool)
    playingChanged = Signal(bool)

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.session = None
        self.engine: Optional[PlaybackEngine] = None
        self._unsubscribe: Optional[Callable[[], None]] = None
        self._ids: List[str] = []  # layer ids in the engine's stem order
        self._generation = 0
        self._feeder = BackgroundTask(self)
        self._region_task = BackgroundTask(self)
        self._selection: Optional[Tuple[float, float]] = None
        self.paint_target: Optional[str] = None
        self._region_stale = True
        self._preview: dict = {}
        self._region_after_feed = (False, False)

        lay = QHBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 2)
        self.play_button = QToolButton()
        self.play_button.setText("▶ Play")
        self.play_button.setToolTip("Play / pause (Space)")
        self.play_button.clicked.connect(self.toggle)
        self.stop_button = QToolButton()
        self.stop_button.setText("■ Stop")
        self.stop_button.setToolTip("Stop and return to the start")
        self.stop_button.clicked.connect(self.stop)
        self.loop_button = QToolButton()
        self.loop_button.setText("⟲ Loop")
        self.loop_button.setCheckable(True)
        self.loop_button.setToolTip("Loop the time selected on the ruler")
        self.loop_button.toggled.connect(self._apply_loop)
        self.region_button = QToolButton()
        self.region_button.setText("Painted only")
        self.region_button.setCheckable(True)
        self.region_button.setToolTip("Play only what is painted for the current paint target "
                                      "(the remix masked by the paint)")
        self.region_button.toggled.connect(self._region_toggled)
        self.time_label = QLabel(format_time(0.0))
        self.time_label.setObjectName("timeLabel")
        self.status = QLabel()
        self.status.setObjectName("warningLabel")
        # A long reason must not set the window's minimum width: it is clipped, and
        # its tooltip has it in full.
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        for w in (self.play_button, self.stop_button, self.loop_button, self.region_button,
                  self.time_label):
            lay.addWidget(w)
        lay.addWidget(self.status, 1)

        self._tips = {b: b.toolTip() for b in (self.play_button, self.stop_button,
                                                self.loop_button, self.region_button)}
        self._timer = QTimer(self)
        self._timer.setInterval(33)
        self._timer.timeout.connect(self._tick)
        self._feeder.done.connect(self._sources_computed)
        self._region_task.done.connect(self._region_computed)
        self._update_status()

    # -- session ------------------------------------------------------------------------
    def set_session(self, session) -> None:
        if self._unsubscribe:
            self._unsubscribe()
            self._unsubscribe = None
        if self.engine is not None:
            self.engine.close()
            self.engine = None
        self.session = session
        self._ids = []
        self._selection = None
        self.loop_button.setChecked(False)
        self.region_button.setChecked(False)
        if session is not None:
            self.engine = PlaybackEngine(session.sr, session.channels)
            self._unsubscribe = session.subscribe(self._on_event)
            self._refeed()
        self._update_status()
        self.positionChanged.emit(0.0)
        self.time_label.setText(format_time(0.0))

    def close_audio(self) -> None:
        self._timer.stop()
        if self.engine is not None:
            self.engine.close()
        self._feeder.cancel()
        self._region_task.cancel()
        self._feeder.wait()
        self._region_task.wait()

    def _on_event(self, kind: str, payload: dict) -> None:
        if kind == "layers":
            self._refeed()
            self._region_stale = True
        elif kind == "layer":
            self._push_settings()
            self._region_stale = True
        elif kind == "paint":
            self._region_stale = True

    def _settings_by_id(self) -> dict:
        return {x.id: MixSettings(x.gain_db, x.pan, x.mute, x.solo) for x in self.session.layers}

    def _push_settings(self) -> None:
        """The live settings of the layers the engine holds (in its order)."""
        if self.engine is None or not self._ids:
            return
        by_id = self._settings_by_id()
        settings = []
        for lid in self._ids:
            s = by_id.get(lid, MixSettings(mute=True))  # a layer deleted since: silent
            if lid in self._preview:
                s = dataclasses.replace(s, **self._preview[lid])
            settings.append(s)
        self.engine.set_settings(settings)

    def preview(self, layer_id: str, settings: dict) -> None:
        """Hear a setting being dragged before it is committed to the session."""
        self._preview = {layer_id: dict(settings)}
        self._push_settings()
        self._preview = {}

    def _refeed(self) -> None:
        self._generation += 1
        gen = self._generation
        s = self.session
        layers = list(s.layers)
        mixture, stft = s.mixture, s.stft

        def work(ctx):
            return gen, [x.id for x in layers], layer_audio_for_playback(mixture, layers, stft)
        self._feeder.submit("prepare playback", work)

    def _sources_computed(self, result) -> None:
        gen, ids, stems = result
        if gen != self._generation or self.engine is None:
            return  # the layers changed again meanwhile; a newer feed follows
        by_id = self._settings_by_id()
        self._ids = ids
        self.engine.set_sources(stems, [by_id.get(i, MixSettings(mute=True)) for i in ids])
        self.sourcesReady.emit()
        wanted, then_play = self._region_after_feed
        if wanted:
            self._region_after_feed = False, False
            if self.region_button.isChecked():
                self.request_region(then_play)

    @property
    def ready(self) -> bool:
        """The engine holds the current layers' audio."""
        return (self.engine is not None and not self._feeder.busy and self.session is not None
                and self._ids == [x.id for x in self.session.layers])

    # -- transport ---------------------------------------------------------------------------
    def toggle(self) -> None:
        if self.engine is None:
            return
        if self.engine.playing:
            self.pause()
        else:
            self.play()

    def play(self) -> None:
        if self.engine is None or not self.engine.ok:
            return
        if self.region_button.isChecked() and self._region_stale:
            self.request_region(then_play=True)
            return
        self.engine.play()
        self._timer.start()
        self._update_status()
        self.playingChanged.emit(True)

    def pause(self) -> None:
        if self.engine is None:
            return
        self.engine.pause()
        self._timer.stop()
        self._tick()
        self._update_status()
        self.playingChanged.emit(False)

    def stop(self) -> None:
        if self.engine is None:
            return
        self.engine.stop()
        self._timer.stop()
        self._tick()
        self._update_status()
        self.playingChanged.emit(False)

    def seek(self, seconds: float) -> None:
        if self.engine is None:
            return
        self.engine.seek(int(round(seconds * self.engine.sr)))
        self.positionChanged.emit(seconds)
        self.time_label.setText(format_time(seconds))

    def set_selection(self, t0: float, t1: float) -> None:
        """The time selection on the ruler: what Loop loops ((0, 0) = none)."""
        self._selection = (t0, t1) if t1 > t0 else None
        self._tips[self.loop_button] = ("Loop the time selected on the ruler" if self._selection
                                        is None else f"Loop {t0:.2f}–{t1:.2f} s")
        self._update_status()
        self._apply_loop()

    def _apply_loop(self, *_args) -> None:
        if self.engine is None:
            return
        if self.loop_button.isChecked() and self._selection is not None:
            sr = self.engine.sr
            self.engine.set_loop(int(self._selection[0] * sr), int(self._selection[1] * sr))
        else:
            self.engine.set_loop(None)

    def set_paint_target(self, name: Optional[str]) -> None:
        if name != self.paint_target:
            self.paint_target = name
            self._region_stale = True

    def _region_toggled(self, on: bool) -> None:
        if self.engine is None:
            return
        if on:
            self.request_region(then_play=self.engine.playing)
        else:
            self.engine.set_region(None)

    def request_region(self, then_play: bool = False) -> None:
        """Compute the painted region's audio in the background, then use it."""
        s = self.session
        target = self.paint_target
        paint = getattr(s, "paint", None)
        if s is None or paint is None:
            return
        if target is None or target not in paint.targets() or paint.is_empty(target):
            self.status.setText(f"Nothing is painted for “{target}”")
            self.regionReady.emit(False)
            return
        if not self.ready:  # the layers' audio is being prepared: continue when it lands
            self._region_after_feed = True, then_play
            return
        bounds = paint.bounds(target) if hasattr(paint, "bounds") else None
        if bounds is None:
            full = paint.mask(target)
            cols = np.flatnonzero(full.any(axis=0))
            t0, t1 = int(cols[0]), int(cols[-1]) + 1
        else:
            _f0, _f1, t0, t1 = bounds
        weights = paint.region(target, 0, s.stft.bins, t0, t1)
        stems = list(self.engine._main.stems)
        settings = list(self.engine.settings)
        stft, samples = s.stft, s.samples
        self._region_stale = False

        def work(ctx):
            return region_audio(stems, settings, weights, t0, stft, samples), then_play
        self._region_task.submit("prepare painted region", work)

    def _region_computed(self, result) -> None:
        (audio, start), then_play = result
        if self.engine is None or not self.region_button.isChecked():
            return
        self.engine.set_region(audio, start)
        self.engine.seek(start)
        self.regionReady.emit(True)
        if then_play:
            self.play()

    # -- display ---------------------------------------------------------------------------------
    def _tick(self) -> None:
        if self.engine is None:
            return
        secs = self.engine.position / self.engine.sr
        self.time_label.setText(format_time(secs))
        self.positionChanged.emit(secs)
        if not self.engine.playing and self._timer.isActive():
            self._timer.stop()
            self._update_status()
            self.playingChanged.emit(False)

    def _update_status(self) -> None:
        e = self.engine
        playing = e is not None and e.playing
        self.play_button.setText("❚❚ Pause" if playing else "▶ Play")
        if e is None:
            self.status.setText("")
            ok = False
        else:
            ok = e.ok
            self.status.setText("" if ok else e.reason)
            self.status.setToolTip(e.reason)
        for b in (self.play_button, self.stop_button, self.loop_button, self.region_button):
            b.setEnabled(ok)
            b.setToolTip(self._tips[b] if ok or e is None else e.reason)
