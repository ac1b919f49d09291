"""Live playback of the remix: the block mixer run inside the audio callback.

The engine is fed the layers' audio (float32 (channels, samples) arrays, one
per stem) and their live :class:`MixSettings`; it never sees a session. Each
audio callback mixes one block with :func:`audio.mixer.mix_into` into
buffers allocated once, so the callback allocates no array memory.

Thread model: the GUI thread calls ``set_sources``/``set_settings``/``play``
etc.; the audio thread runs ``_callback``. What the callback reads is one
immutable :class:`_Program` (stems, gain matrix, where they sit on the
timeline) replaced by a single attribute assignment, which is atomic in
CPython, so a settings change is heard from the next block on (one block is
``blocksize / sr`` seconds, at most 25 ms by default).

``render(frames)`` is the callback's work without a device: tests and the
"no device" case use it directly.

When there is no PortAudio library or no output device, :func:`output_status`
says why in one sentence and the engine simply never opens a stream.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np

from demixstudio.audio.mixer import MixSettings, gain_matrix, mix_into
from demixstudio.errors import ParameterError

#: Longest audio callback block: a change of a setting is heard from the next
#: block, so two blocks (what the device buffers) stay under 50 ms.
MAX_BLOCK_S = 0.025


def block_for_rate(sr: int) -> int:
    """The largest power of two of at most ``MAX_BLOCK_S`` seconds (1024 at 44.1/48 kHz,
    256 at 16 kHz), at least 64 frames."""
    n = 64
    while n * 2 <= MAX_BLOCK_S * sr:
        n *= 2
    return n


def _import_sounddevice() -> Tuple[Any, str]:
    """(module or None, reason it is unusable)."""
    try:
        import sounddevice as sd
    except OSError as exc:  # the module imports, but libportaudio is missing
        return None, f"the PortAudio library is not installed ({exc})"
    except ImportError:
        return None, "the sounddevice package is not installed"
    return sd, ""


#: The output device engines open (a name as ``output_devices`` lists it);
#: None is the system default. Set with :func:`set_output_device`.
_output_device: Optional[str] = None


def set_output_device(name: Optional[str]) -> None:
    """Play through ``name`` (None or "" = the system default) from the next stream on."""
    global _output_device
    _output_device = name or None


def output_devices() -> List[str]:
    """Names of the output devices PortAudio sees (empty without PortAudio or devices)."""
    sd, _why = _import_sounddevice()
    if sd is None:
        return []
    try:
        return [str(d["name"]) for d in sd.query_devices() if d["max_output_channels"] > 0]
    except Exception:  # PortAudio failing to enumerate: no devices to offer
        return []


def output_status() -> Tuple[bool, str]:
    """Whether audio can be played here: (ok, a sentence for the user)."""
    sd, why = _import_sounddevice()
    if sd is None:
        return False, f"Playback is off: {why}."
    try:
        dev = sd.query_devices(device=_output_device, kind="output")
    except Exception:  # PortAudioError when the default device is -1 (none)
        if _output_device is not None:
            return False, f"Playback is off: the output device {_output_device!r} was not found."
        return False, "Playback is off: no audio output device was found."
    return True, f"Output: {dev['name']}"


def input_status() -> Tuple[bool, str]:
    """Whether a microphone can be recorded: (ok, a sentence for the user)."""
    sd, why = _import_sounddevice()
    if sd is None:
        return False, f"Recording is off: {why}."
    try:
        dev = sd.query_devices(kind="input")
    except Exception:
        return False, "Recording is off: no microphone (audio input device) was found."
    return True, f"Input: {dev['name']}"


def record(seconds: float, sr: int, *, channels: int = 1,
           should_stop: Optional[Callable[[], bool]] = None,
           on_level: Optional[Callable[[float, float], None]] = None) -> np.ndarray:
    """Record from the default input device.

    Parameters
    ----------
    seconds : the longest recording; ``should_stop()`` returning True ends it early
    on_level : called with (seconds recorded, peak level) after each block

    Returns
    -------
    audio : np.ndarray [shape=(channels, samples), dtype=float32]
    """
    sd, why = _import_sounddevice()
    if sd is None:
        raise ParameterError(f"cannot record: {why}")
    if seconds <= 0:
        raise ParameterError(f"recording length {seconds} s must be positive")
    total = int(round(seconds * sr))
    out = np.zeros((channels, total), dtype=np.float32)
    pos = 0
    block = max(256, sr // 20)
    with sd.InputStream(samplerate=sr, channels=channels, dtype="float32") as stream:
        while pos < total and not (should_stop and should_stop()):
            data, _overflow = stream.read(min(block, total - pos))
            n = data.shape[0]
            out[:, pos:pos + n] = data.T
            pos += n
            if on_level:
                on_level(pos / sr, float(np.abs(data).max()) if n else 0.0)
    return out[:, :pos]


@dataclass(frozen=True)
class _Program:
    """What the callback plays: stems starting at ``offset`` on the timeline.

    stems : tuple of float32 (channels, length) arrays
    gains : float32 (stems, channels), from ``gain_matrix``
    offset : timeline sample where the stems' sample 0 sits
    length : samples of the stems (the longest)
    """

    stems: Tuple[np.ndarray, ...]
    gains: np.ndarray
    offset: int
    length: int


class PlaybackEngine:
    """Plays stems × live settings through sounddevice; renders without a device too.

    Parameters
    ----------
    sr : sample rate of the stems
    channels : channels of the stems (and of ``render``'s output)
    blocksize : frames per callback, default ``block_for_rate(sr)`` (buffers are
        preallocated for it; longer callbacks are rendered in several pieces)
    """

    def __init__(self, sr: int, channels: int, *, blocksize: Optional[int] = None) -> None:
        blocksize = block_for_rate(sr) if blocksize is None and sr > 0 else blocksize or 0
        if sr <= 0 or channels <= 0 or blocksize <= 0:
            raise ParameterError(f"playback needs positive sr, channels and blocksize "
                                 f"(got {sr}, {channels}, {blocksize})")
        self.sr = int(sr)
        self.channels = int(channels)
        self.blocksize = int(blocksize)
        self._buf = np.zeros((self.channels, self.blocksize), dtype=np.float32)
        self._scratch = np.empty(self.blocksize, dtype=np.float32)
        self._main = _Program((), np.zeros((0, self.channels), np.float32), 0, 0)
        self._region: Optional[_Program] = None
        self._settings: Tuple[MixSettings, ...] = ()
        self._pos = 0
        self._seek_to: Optional[int] = None
        self._playing = False
        self._loop: Optional[Tuple[int, int]] = None
        self._stream = None
        self._lock = threading.Lock()  # guards stream open/close only, never the callback
        self.ok, self.reason = output_status()
        self.on_stopped: Optional[Callable[[], None]] = None  # called from the audio thread

    # -- feeding ------------------------------------------------------------------
    def set_sources(self, stems: Sequence[np.ndarray], settings: Sequence[MixSettings]) -> None:
        """Replace the stems (float32 (channels, samples) each) and their settings."""
        stems = tuple(np.asarray(s, dtype=np.float32) for s in stems)
        for s in stems:
            if s.ndim != 2 or s.shape[0] != self.channels:
                raise ParameterError(f"a stem of shape {s.shape} does not have "
                                     f"{self.channels} channels")
        if len(settings) != len(stems):
            raise ParameterError(f"{len(settings)} settings for {len(stems)} stems")
        length = max((s.shape[1] for s in stems), default=0)
        self._settings = tuple(settings)
        self._main = _Program(stems, gain_matrix(self._settings, self.channels), 0, length)

    def set_settings(self, settings: Sequence[MixSettings]) -> None:
        """New live settings for the current stems; heard from the next block."""
        if len(settings) != len(self._main.stems):
            raise ParameterError(f"{len(settings)} settings for {len(self._main.stems)} stems")
        self._settings = tuple(settings)
        main = self._main
        # One assignment: the callback sees the old program or the new, never a mix.
        self._main = _Program(main.stems, gain_matrix(self._settings, self.channels),
                              main.offset, main.length)

    @property
    def settings(self) -> Tuple[MixSettings, ...]:
        return self._settings

    def set_region(self, audio: Optional[np.ndarray], start: int = 0) -> None:
        """Play only ``audio`` (float32 (channels, n)) placed at timeline sample ``start``;
        None returns to the remix."""
        if audio is None:
            self._region = None
            return
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 2 or audio.shape[0] != self.channels:
            raise ParameterError(f"region audio of shape {audio.shape} does not have "
                                 f"{self.channels} channels")
        unity = np.ones((1, self.channels), dtype=np.float32)
        self._region = _Program((audio,), unity, int(start), audio.shape[1])

    @property
    def region_active(self) -> bool:
        return self._region is not None

    # -- transport --------------------------------------------------------------------
    @property
    def position(self) -> int:
        """The timeline sample that plays next."""
        return self._seek_to if self._seek_to is not None else self._pos

    @property
    def playing(self) -> bool:
        return self._playing

    @property
    def duration(self) -> int:
        """Samples of the remix's timeline."""
        return self._main.length

    def seek(self, sample: int) -> None:
        self._seek_to = max(0, int(sample))

    def set_loop(self, start: Optional[int], stop: Optional[int] = None) -> None:
        """Loop ``start:stop`` (samples) while playing; None turns looping off."""
        if start is None or stop is None or int(stop) <= int(start):
            self._loop = None
        else:
            self._loop = (max(0, int(start)), int(stop))

    @property
    def loop(self) -> Optional[Tuple[int, int]]:
        return self._loop

    def play(self) -> bool:
        """Start or resume; returns False (and plays nothing) when there is no device."""
        prog = self._program()
        pos = self.position
        if pos < prog.offset or pos >= prog.offset + prog.length:
            self.seek(self._range(prog)[0])
        self._playing = True
        if not self.ok:
            return False
        return self._ensure_stream()

    def pause(self) -> None:
        self._playing = False

    def stop(self) -> None:
        """Pause and return to the start (of the loop or region when there is one)."""
        self._playing = False
        self.seek(self._range(self._program())[0])

    def close(self) -> None:
        self._playing = False
        with self._lock:
            if self._stream is not None:
                try:
                    self._stream.stop()
                    self._stream.close()
                finally:
                    self._stream = None

    def _ensure_stream(self) -> bool:
        with self._lock:
            if self._stream is not None:
                return True
            sd, why = _import_sounddevice()
            if sd is None:
                self.ok, self.reason = False, f"Playback is off: {why}."
                return False
            try:
                dev = sd.query_devices(device=_output_device, kind="output")
                out_ch = max(1, min(int(dev["max_output_channels"]), max(self.channels, 2)))
                self._device_channels = out_ch
                self._stream = sd.OutputStream(device=_output_device, samplerate=self.sr,
                                               channels=out_ch,
                                               dtype="float32", blocksize=self.blocksize,
                                               latency="low", callback=self._callback)
                self._stream.start()
            except Exception as exc:  # a device that vanished or refuses the format
                self._stream = None
                self.ok, self.reason = False, f"Playback is off: the output device failed ({exc})."
                self._playing = False
                return False
            return True

    # -- the audio thread ---------------------------------------------------------------
    def _program(self) -> _Program:
        region = self._region
        return region if region is not None else self._main

    def _range(self, prog: _Program) -> Tuple[int, int]:
        """Where playback runs: the loop (clipped to the program) or the whole program."""
        lo, hi = prog.offset, prog.offset + prog.length
        loop = self._loop
        if loop is not None:
            a, b = max(lo, loop[0]), min(hi, loop[1])
            if b > a:
                return a, b
        return lo, hi

    def render(self, frames: Optional[int] = None) -> np.ndarray:
        """Mix the next ``frames`` samples (≤ blocksize) and advance the position.

        Returns a view of the engine's own buffer, float32 (channels, frames),
        valid until the next call. Silence when paused.
        """
        n = self.blocksize if frames is None else int(frames)
        if n > self.blocksize or n < 0:
            raise ParameterError(f"render takes at most {self.blocksize} frames, not {frames}")
        out = self._buf[:, :n]
        if not self._playing:
            out.fill(0.0)
            return out
        seek = self._seek_to
        if seek is not None:
            self._seek_to = None
            self._pos = seek
        prog = self._program()  # read once: the whole block uses one program
        lo, hi = self._range(prog)
        looping = self._loop is not None
        done = 0
        pos = self._pos
        while done < n:
            if pos < lo:
                pos = lo
            if pos >= hi:
                if looping and hi > lo:
                    pos = lo
                else:
                    out[:, done:].fill(0.0)
                    self._playing = False
                    pos = lo
                    if self.on_stopped is not None:
                        self.on_stopped()
                    break
            take = min(n - done, hi - pos)
            mix_into(out[:, done:done + take], prog.stems, prog.gains, pos - prog.offset,
                     self._scratch)
            done += take
            pos += take
        self._pos = pos
        return out

    def _callback(self, outdata: np.ndarray, frames: int, time: Any, status: Any) -> None:
        """sounddevice's callback: ``outdata`` is float32 (frames, device channels)."""
        done = 0
        dev_ch = outdata.shape[1]
        while done < frames:
            take = min(self.blocksize, frames - done)
            block = self.render(take)
            dst = outdata[done:done + take]
            if dev_ch == self.channels:
                np.copyto(dst, block.T)
            elif self.channels == 1:  # mono on every speaker
                np.copyto(dst, block[0][:, None])
            else:  # more channels than the device: the first ones; fewer: silence the rest
                k = min(dev_ch, self.channels)
                np.copyto(dst[:, :k], block[:k].T)
                if dev_ch > k:
                    dst[:, k:] = 0.0
            done += take
