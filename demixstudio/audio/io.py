"""Reading and writing audio files.

Everything libsndfile reads (WAV, FLAC, OGG/Vorbis/Opus, MP3, AIFF, CAF...)
loads as float32 of shape (channels, samples), whatever the channel count,
sample format or rate. Writes are atomic (see ``atomic.py``).
"""

from __future__ import annotations

import math
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Tuple

import numpy as np
import soundfile as sf
import soxr

from demixstudio.audio import caf
from demixstudio.audio.atomic import atomic_path
from demixstudio.errors import AudioFormatError, OutputError, ParameterError
from demixstudio.values import whole

# Blocks of this many frames keep temporary arrays small on long files.
BLOCK_FRAMES = 1 << 20
# More channels than this is a (samples, channels) array given the wrong way
# round (7th-order ambisonics has 64).
MAX_CHANNELS = 256

# Output subtypes by the name used in the CLI and the export dialog.
SUBTYPES = {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT"}
FORMATS = {".wav": "WAV", ".flac": "FLAC"}


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read without decoding it."""

    path: str
    sr: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration_s(self) -> float:
        return self.frames / self.sr if self.sr else 0.0


def _open_error(path: Path, exc: Exception) -> AudioFormatError:
    if not path.exists():
        return AudioFormatError(f"{path}: no such file")
    if path.is_dir():
        return AudioFormatError(f"{path}: is a folder, not an audio file")
    reason = str(exc).split(":")[-1].strip() or "unknown format"
    layout = caf.caf_layout(path)
    if ogg_unterminated(path) or (layout is not None and layout.cut_short):
        return AudioFormatError(f"{path}: the file is cut short before any audio can be "
                                f"read ({reason})")
    return AudioFormatError(
        f"{path}: not an audio file that can be read ({reason}); "
        "WAV, FLAC, OGG, MP3 and AIFF are supported")


class _ViewSoundFile(sf.SoundFile):
    """A SoundFile on a view of a file (:func:`caf.readable_view`) that closes the
    view with itself."""

    def __init__(self, view):
        self._view = view
        try:
            super().__init__(view)
        except BaseException:
            view.close()
            raise

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._view.close()


def open_sound(path: os.PathLike | str) -> sf.SoundFile:
    """``path`` opened for reading with libsndfile; raises ``AudioFormatError`` if
    it cannot be. A CAF file cut short, which libsndfile refuses, is opened on a
    view that ends its data at the last whole packet (see :mod:`caf`)."""
    path = Path(path)
    try:
        return sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        failure = exc
    view = caf.readable_view(path) if path.is_file() else None
    if view is not None:
        try:
            return _ViewSoundFile(view)
        except (sf.LibsndfileError, RuntimeError, OSError):
            pass
    raise _open_error(path, failure) from failure


def audio_info(path: os.PathLike | str) -> AudioInfo:
    """Header information of an audio file; raises ``AudioFormatError`` if unreadable.
    ``frames`` are those that can be read (of a file cut short, fewer than its
    header announces)."""
    with open_sound(path) as i:
        return AudioInfo(str(path), int(i.samplerate), int(i.channels), int(i.frames),
                         i.format, i.subtype)


# A RIFF header's data size that streaming writers leave when they cannot seek back
# (and RF64's placeholder for the 64-bit size in its ds64 chunk).
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)
# Chunks read before giving up on finding the one wanted (real files have a handful).
_MAX_CHUNKS = 64
# Sony Wave64's GUIDs: the file's, its form type's, and the fmt and data chunks'.
_W64_GUID_TAIL = bytes.fromhex("f3acd3118cd100c04f8edb8a")
_W64_RIFF = bytes.fromhex("726966662e91cf11a5d628db04c10000")
_W64_WAVE = b"wave" + _W64_GUID_TAIL
_W64_FMT = b"fmt " + _W64_GUID_TAIL
_W64_DATA = b"data" + _W64_GUID_TAIL


def declared_frames(path: os.PathLike | str) -> Optional[int]:
    """The frames a file's header announces, or None when it announces none (Ogg,
    MP3, a size left unknown by a streaming writer) or cannot be walked.

    Read from the data chunk's size over the frame size in RIFF WAV, RF64 (the
    ds64 chunk's 64-bit size) and Sony Wave64, and from the COMM chunk in AIFF and
    AIFF-C, and from CAF's packet table or data size (see :mod:`caf`). libsndfile
    reports the frames such a file *holds*: one cut short by an interrupted copy or
    recording reads as a shorter, whole recording. This is how it is noticed
    (FLAC's frames are its header's, so libsndfile's count says it)."""
    try:
        with open(path, "rb") as f:
            head = f.read(40)
            if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
                f.seek(12)
                return _riff_frames(f)
            if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
                f.seek(12)
                return _aiff_frames(f)
            if head[:16] == _W64_RIFF and head[24:40] == _W64_WAVE:
                f.seek(40)
                return _w64_frames(f)
            if head[:4] == b"caff":
                layout = caf.read_layout(f)
                return layout.declared_frames() if layout is not None else None
    except (OSError, struct.error):
        return None
    return None


def _iff_chunks(f, order: str):
    """(id, size) of each chunk of a RIFF (``order`` "<") or IFF (">") file from its
    position: when one is yielded the file is at its body, and the next is found from
    the body's start (plus RIFF's pad byte after an odd size) whatever was read."""
    for _ in range(_MAX_CHUNKS):
        head = f.read(8)
        if len(head) < 8:
            return
        size = struct.unpack(order + "I", head[4:])[0]
        body = f.tell()
        yield head[:4], size
        f.seek(body + size + (size & 1))


def _riff_frames(f) -> Optional[int]:
    frame_bytes = data64 = None
    for cid, size in _iff_chunks(f, "<"):
        if cid == b"fmt ":
            fmt = f.read(16)
            if len(fmt) < 16:
                return None
            frame_bytes = struct.unpack("<H", fmt[12:14])[0]  # nBlockAlign
        elif cid == b"ds64":
            ds64 = f.read(16)
            if len(ds64) < 16:
                return None
            data64 = struct.unpack("<Q", ds64[8:16])[0]  # the data chunk's size
        elif cid == b"data":
            if size == 0xFFFFFFFF and data64:
                size = data64
            if not frame_bytes or size in _UNKNOWN_SIZES:
                return None
            return size // frame_bytes
    return None


def _aiff_frames(f) -> Optional[int]:
    for cid, _ in _iff_chunks(f, ">"):
        if cid == b"COMM":
            comm = f.read(6)
            return struct.unpack(">I", comm[2:6])[0] if len(comm) == 6 else None
    return None


def _w64_frames(f) -> Optional[int]:
    frame_bytes = None
    for _ in range(_MAX_CHUNKS):
        chunk = f.read(24)
        if len(chunk) < 24:
            return None
        guid, size = chunk[:16], struct.unpack("<Q", chunk[16:])[0]  # size with its header
        if size < 24:
            return None
        if guid == _W64_FMT:
            fmt = f.read(size - 24)
            if len(fmt) < 16:
                return None
            frame_bytes = struct.unpack("<H", fmt[12:14])[0]
            f.seek((-size) % 8, os.SEEK_CUR)
        elif guid == _W64_DATA:
            return (size - 24) // frame_bytes if frame_bytes else None
        else:
            f.seek(size - 24 + (-size) % 8, os.SEEK_CUR)
    return None


#: The largest Ogg page: a 27-byte header, 255 lacing values and 255 segments of
#: 255 bytes.
OGG_MAX_PAGE = 27 + 255 + 255 * 255


def ogg_unterminated(path: os.PathLike | str) -> bool:
    """True when ``path`` is an Ogg file (Vorbis, Opus, FLAC in Ogg) cut short: its
    last page ends past the end of the file, or is whole but lacks the end-of-stream
    flag every Ogg stream's last page carries (RFC 3533). False for anything else,
    including a file with other bytes after its last page.

    An Ogg header announces no length: libsndfile reads up to the last whole
    page, so a cut file reads as a shorter, whole recording. This is how it is
    noticed. The last page is found as the last capture pattern ``OggS`` in the
    file's tail (a pattern inside packet data would be a 1-in-2³² coincidence)."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"OggS":
                return False
            end = f.seek(0, os.SEEK_END)
            f.seek(max(0, end - OGG_MAX_PAGE - 4))
            tail = f.read()
    except OSError:
        return False
    k = tail.rfind(b"OggS")
    while k >= 0 and k + 5 <= len(tail) and tail[k + 4] != 0:  # version 0 only
        k = tail.rfind(b"OggS", 0, k)
    if k < 0:
        return False
    if k + 27 > len(tail) or k + 27 + tail[k + 26] > len(tail):
        return True  # the header itself is cut
    nseg = tail[k + 26]
    page_end = k + 27 + nseg + sum(tail[k + 27:k + 27 + nseg])
    if page_end > len(tail):
        return True
    return page_end == len(tail) and not tail[k + 5] & 0x04


#: Frames per read when salvaging the start of a file that stopped decoding.
SALVAGE_FRAMES = 4096


def _read_into(f: sf.SoundFile, audio: np.ndarray, pos: int, step: int, path: Path) -> int:
    """Read ``f`` from its position into ``audio`` (channels, frames) at ``pos``,
    ``step`` frames at a time, until the buffer is full or the file ends; returns the
    position reached. NaN or infinite samples are an ``AudioFormatError``; a decoding
    fault raises libsndfile's error."""
    nframes = audio.shape[1]
    while pos < nframes:
        block = f.read(min(step, nframes - pos), dtype="float32", always_2d=True)
        if block.shape[0] == 0:
            break
        _check_finite(block, pos, f.samplerate, path)
        audio[:, pos:pos + block.shape[0]] = block.T
        pos += block.shape[0]
    return pos


def _check_finite(block: np.ndarray, pos: int, sr: int, path: Path) -> None:
    """An ``AudioFormatError`` when ``block`` (frames, channels), read at frame ``pos``
    of ``path``, holds a NaN or infinite sample."""
    if np.isfinite(block).all():  # the usual case, a hundred times faster than per frame
        return
    finite = np.isfinite(block).all(axis=1)
    if not finite.all():
        first = pos + int(np.flatnonzero(~finite)[0])
        raise AudioFormatError(f"{path}: contains NaN or infinite samples (the first "
                               f"at {first / sr:.3f} s)")


#: The smallest step tried when salvaging.
MIN_SALVAGE_FRAMES = 256


def _salvage(path: Path, audio: np.ndarray) -> int:
    """Read ``path`` again from the start into ``audio`` in small steps, up to the
    first decoding fault; returns the frames read (0 when none can be).

    libsndfile's FLAC reader can fail on a read that only *ends* near the fault
    (it decodes a frame ahead), even the very first: when a pass gets nothing,
    the next takes steps half as long, down to :data:`MIN_SALVAGE_FRAMES`."""
    step, pos = SALVAGE_FRAMES, 0
    while pos == 0 and step >= MIN_SALVAGE_FRAMES:
        try:
            with open_sound(path) as f:
                while pos < audio.shape[1]:
                    # One step per call, so that a fault keeps the steps before it.
                    view = audio[:, :min(pos + step, audio.shape[1])]
                    reached = _read_into(f, view, pos, step, path)
                    if reached == pos:
                        break
                    pos = reached
        except (sf.LibsndfileError, RuntimeError, AudioFormatError):
            pass
        step //= 2
    return pos


def cut_short_warning(path: os.PathLike | str, sr: int, frames_read: int,
                      frames_announced: int) -> Optional[str]:
    """The sentence telling the user that ``path`` holds less than its header
    announces (``frames_*`` at the file's rate ``sr``), or None when it does not."""
    if frames_announced <= frames_read:
        return None
    return (f"{Path(path).name} is cut short: its header announces "
            f"{frames_announced / sr:.2f} s, {frames_read / sr:.2f} s can be read (an "
            "interrupted copy or recording, or damage there?); that part is used")


def ogg_cut_short_warning(path: os.PathLike | str, sr: int, frames_read: int) -> str:
    """The sentence telling the user that the Ogg file ``path`` is cut short after
    ``frames_read`` frames at ``sr`` (an Ogg header announces no length to compare)."""
    return (f"{Path(path).name} is cut short: it stops before the end of its Ogg stream "
            f"(an interrupted copy or recording?); the {frames_read / sr:.2f} s that can "
            "be read are used")


def load_audio(path: os.PathLike | str, *, sr: Optional[int] = None,
               on_warning: Optional[Callable[[str], None]] = None) -> Tuple[np.ndarray, int]:
    """Load an audio file.

    Parameters
    ----------
    path : the file
    sr : int or None
        Resample to this rate (:func:`resample`); None keeps the file's rate.
    on_warning : called with a sentence for the user when the file is read but
        not whole: it holds fewer samples than its header announces (a WAV,
        RF64, Wave64 or AIFF file whose data is cut short, see
        :func:`declared_frames`; an MP3 or FLAC that stops decoding), or it is an
        Ogg file whose last page is cut or lacks the end-of-stream mark. The part
        that can be read is returned, as other editors do. Without it, a stream
        that stops decoding with an error (a FLAC cut short) is an
        ``AudioFormatError``, since nobody would hear of the missing part.

    Returns
    -------
    audio : np.ndarray [shape=(channels, samples), dtype=float32]
    sr : int, the rate of ``audio``

    Raises
    ------
    AudioFormatError
        Missing or unreadable file, zero samples, or NaN/infinite samples.
    """
    path = Path(path)
    with open_sound(path) as f:
        file_sr, channels, container = int(f.samplerate), int(f.channels), f.format
        nframes = int(f.frames)
        _check_has_frames(f, path)
        # One float32 buffer of the final size, filled block by block, so a long
        # file never exists as a float64 or interleaved second copy.
        audio = np.empty((channels, nframes), dtype=np.float32)
        try:
            pos = _read_into(f, audio, 0, BLOCK_FRAMES, path)
            failure = None
        except (sf.LibsndfileError, RuntimeError) as exc:
            failure = exc
    if failure is not None:
        # A stream that stops decoding (a FLAC cut short loses sync): a caller that
        # can tell the user gets the part before the fault, read again in small
        # steps, since the block it failed in is lost; others get the error.
        pos = _salvage(path, audio) if on_warning is not None else 0
        if pos == 0:
            raise AudioFormatError(f"{path}: the file is damaged ({failure})") from failure
    if pos == 0:
        raise AudioFormatError(f"{path}: the file holds no audio samples")
    if pos < nframes:  # a truncated file: keep what decodes, as other editors do
        audio = audio[:, :pos]
    if on_warning is not None:
        _tell_cut_short(path, container, file_sr, pos, nframes, on_warning)
    if sr is not None and int(sr) != file_sr:
        audio = resample(audio, file_sr, int(sr))
        file_sr = int(sr)
    return audio, file_sr


def _check_has_frames(f: sf.SoundFile, path: Path) -> None:
    """An ``AudioFormatError`` when the open file ``f`` has no frames to read."""
    if int(f.frames) <= 0:
        if ogg_unterminated(path) or isinstance(f, _ViewSoundFile):
            raise AudioFormatError(f"{path}: the file is cut short before any audio "
                                   "can be read; nothing in it can be used")
        raise AudioFormatError(f"{path}: the file holds no audio samples")


def _tell_cut_short(path: Path, container: str, sr: int, frames_read: int,
                    frames_open: int, on_warning: Callable[[str], None]) -> None:
    """Tell ``on_warning`` when ``path`` held fewer frames than it announces (its
    header, or libsndfile's count on opening it, ``frames_open``), or is an Ogg
    stream cut before its end."""
    announced = max(frames_open, declared_frames(path) or 0)
    warning = cut_short_warning(path, sr, frames_read, announced)
    if warning is None and container == "OGG" and ogg_unterminated(path):
        warning = ogg_cut_short_warning(path, sr, frames_read)
    if warning is not None:
        on_warning(warning)


#: Frames per block of :func:`scan_energies` (93 ms at 44.1 kHz): how finely a
#: recording sampled as it is read tells its stretches with sound.
ENERGY_STEP = 4096


@dataclass(frozen=True)
class EnergyScan:
    """A file's energy, block by block, from one pass that keeps none of its audio."""

    sr: int
    channels: int
    frames: int  # the frames that could be read
    step: int
    energies: np.ndarray  # float64 (ceil(frames / step),): Σ x² of each step-frame block

    def stretches(self, size: int, slots: int) -> np.ndarray:
        """The energy of each of ``slots`` consecutive ``size``-frame stretches from
        the start, float64 (slots,), from the blocks that lie wholly inside it: a
        block across two stretches counts in neither, so a silent stretch that ends
        where sound starts does not pass for one with sound."""
        k = np.arange(self.energies.size, dtype=np.int64)
        owner = k * self.step // max(1, size)
        keep = (owner < slots) & (((k + 1) * self.step - 1) // max(1, size) == owner)
        return np.bincount(owner[keep], self.energies[keep], minlength=slots)[:slots]


def scan_energies(path: os.PathLike | str, *, step: int = ENERGY_STEP,
                  on_warning: Optional[Callable[[str], None]] = None
                  ) -> Optional[EnergyScan]:
    """Read ``path`` through once, a block at a time, for the energy of each ``step``
    frames, keeping none of the audio (an hour of stereo needs a few MB).

    Raises ``AudioFormatError`` as :func:`load_audio` does (unreadable, no samples,
    NaN or infinite ones), and tells ``on_warning`` of a file cut short in the same
    words. Returns None when the stream stops decoding with an error before its
    end: :func:`load_audio` salvages such a file's start."""
    path = Path(path)
    parts = []
    with open_sound(path) as f:
        file_sr, channels, container = int(f.samplerate), int(f.channels), f.format
        nframes = int(f.frames)
        _check_has_frames(f, path)
        pos, chunk = 0, max(1, BLOCK_FRAMES // step) * step  # whole blocks per read
        try:
            while True:
                block = f.read(chunk, dtype="float32", always_2d=True)
                if block.shape[0] == 0:
                    break
                sums = _step_energies(block, step)
                if not np.isfinite(sums).all():  # NaN or inf there (or a sum overflowed)
                    _check_finite(block, pos, file_sr, path)
                parts.append(sums)
                pos += block.shape[0]
        except (sf.LibsndfileError, RuntimeError):
            return None
    if pos == 0:
        raise AudioFormatError(f"{path}: the file holds no audio samples")
    if on_warning is not None:
        _tell_cut_short(path, container, file_sr, pos, nframes, on_warning)
    return EnergyScan(file_sr, channels, pos, step, np.concatenate(parts))


def _step_energies(block: np.ndarray, step: int) -> np.ndarray:
    """Σ x² of each ``step`` frames of ``block`` (frames, channels), float64. Summed in
    float32 within a step (a relative error near 1e-4, nothing for telling sound
    from silence): five times faster than per-frame sums in float64, which with a
    full check for NaN took most of the time of a pass over an hour of WAV."""
    whole = block.shape[0] // step * step
    rows = block[:whole].reshape(-1, step * block.shape[1])
    sums = np.einsum("ij,ij->i", rows, rows).astype(np.float64)
    if whole < block.shape[0]:
        tail = block[whole:]
        sums = np.append(sums, np.einsum("ij,ij->", tail, tail, dtype=np.float64))
    return sums


def read_spans(path: os.PathLike | str, spans: list[Tuple[int, int]]) -> list[np.ndarray]:
    """The ``(start, stop)`` frame spans of ``path``, each float32 (channels, frames)
    read on its own (a seek, then a read: the rest of the file is not decoded).
    Spans past the readable end come back shorter, or are left out when empty."""
    path = Path(path)
    out = []
    try:
        with open_sound(path) as f:
            for t0, t1 in spans:
                f.seek(int(t0))
                block = f.read(int(t1) - int(t0), dtype="float32", always_2d=True)
                if block.shape[0]:
                    _check_finite(block, int(t0), int(f.samplerate), path)
                    out.append(np.ascontiguousarray(block.T))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioFormatError(f"{path}: the file is damaged ({exc})") from exc
    return out


#: libsoxr's quality for every rate change: linear phase, flat to 91 % of the lower
#: rate's Nyquist frequency, everything above it 140 dB or more down.
RESAMPLE_QUALITY = "HQ"


def resample(audio: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    """``audio`` float32 (channels, samples) at ``sr_from`` Hz, brought to ``sr_to`` Hz:
    float32 (channels, ceil(samples · sr_to / sr_from)), aligned in time.

    libsoxr (the resampler librosa and most audio editors use), not a short
    polyphase filter: scipy's ``resample_poly`` with its default filter, used
    before 2026-11-25, cut off at the new Nyquist frequency itself with about
    55 dB of stop band. From 44.1 to 16 kHz a tone at 8.5 kHz came back at
    7.5 kHz, 14 dB down (9 kHz at 7 kHz, 31 dB down), and 7.8 kHz lost 4 dB; with
    libsoxr those images are more than 140 dB down, 7.5 kHz loses 0.4 dB, and
    the conversion takes half the time. Channels are converted one at a time,
    so only the output is full size.
    """
    if sr_from <= 0 or sr_to <= 0:
        raise ParameterError(f"sample rates must be positive, got {sr_from} and {sr_to}")
    if sr_from == sr_to:
        return audio
    g = math.gcd(int(sr_from), int(sr_to))
    up, down = sr_to // g, sr_from // g
    n_out = int(math.ceil(audio.shape[1] * up / down))
    out = np.zeros((audio.shape[0], n_out), dtype=np.float32)
    for c in range(audio.shape[0]):
        y = soxr.resample(np.ascontiguousarray(audio[c], dtype=np.float32), float(sr_from),
                          float(sr_to), quality=RESAMPLE_QUALITY)
        out[c, :min(n_out, y.shape[0])] = y[:n_out]
    return out


def check_audio(audio: np.ndarray, name: str = "audio") -> np.ndarray:
    """Validate in-memory audio and return it as float32 (channels, samples)."""
    a = np.asarray(audio)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise ParameterError(f"{name} must have shape (channels, samples); got {a.shape}")
    if a.shape[1] == 0 or a.shape[0] == 0:
        raise AudioFormatError(f"{name} holds no samples")
    if not np.issubdtype(a.dtype, np.floating):
        raise ParameterError(f"{name} must be floating point; got {a.dtype}")
    if a.shape[0] > MAX_CHANNELS:
        raise ParameterError(f"{name} has shape {a.shape}: {a.shape[0]} channels? It must be "
                             "(channels, samples); transpose it")
    a = a.astype(np.float32, copy=False)
    for start in range(0, a.shape[1], BLOCK_FRAMES):
        if not np.isfinite(a[:, start:start + BLOCK_FRAMES]).all():
            raise AudioFormatError(f"{name} contains NaN or infinite samples")
    return a


def output_format(path: os.PathLike | str, bits: str = "24") -> Tuple[str, str]:
    """(format, subtype) for writing ``path``: WAV 16/24/float or FLAC 16/24."""
    ext = Path(path).suffix.lower()
    if ext not in FORMATS:
        raise ParameterError(f"cannot write {ext or 'files without extension'}; use .wav or .flac")
    if bits not in SUBTYPES:
        raise ParameterError(f"bit depth {bits!r} is not one of 16, 24, float")
    fmt = FORMATS[ext]
    if fmt == "FLAC" and bits == "float":
        raise ParameterError("FLAC stores integer samples only; use 16 or 24 bits, or WAV for float")
    return fmt, SUBTYPES[bits]


def write_audio(path: os.PathLike | str, audio: np.ndarray, sr: int, fmt: str,
                subtype: str, *, shown: Optional[os.PathLike | str] = None) -> None:
    """Write float32 (channels, samples) to ``path`` as it is (not atomic; see ``save_audio``).

    ``shown``: the name to give in errors (the final name, when ``path`` is a
    temporary file beside it).
    """
    try:
        with sf.SoundFile(str(path), "w", samplerate=int(sr), channels=audio.shape[0],
                          format=fmt, subtype=subtype) as f:
            for start in range(0, audio.shape[1], BLOCK_FRAMES):
                f.write(audio[:, start:start + BLOCK_FRAMES].T)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise OutputError(f"cannot write {shown or path}: {_write_failure(path, audio, exc)}"
                          ) from exc


def _write_failure(path: os.PathLike | str, audio: np.ndarray, exc: Exception) -> str:
    """Why libsndfile could not write: it reports a full disk as a bare "System
    error", so the free space is checked against what the file needs."""
    try:
        free = shutil.disk_usage(Path(path).parent).free
    except OSError:
        free = None
    if free is not None and free < audio.shape[0] * audio.shape[1] * 4 + (1 << 20):
        return "no space left on the disk"
    return str(exc).strip().rstrip(".") or type(exc).__name__


def sample_rate(sr: Any) -> int:
    """``sr`` as an int, or ``ParameterError`` unless it is a positive whole number of Hz
    (a fractional rate is refused rather than truncated)."""
    n = whole(sr)
    if n is None or n <= 0:
        raise ParameterError(f"sample rate {sr!r} must be a positive whole number of Hz")
    return n


def save_audio(path: os.PathLike | str, audio: np.ndarray, sr: int, *, bits: str = "24") -> Path:
    """Write float32 (channels, samples) to a WAV or FLAC file atomically.

    Integer formats clip at full scale (libsndfile's behaviour, stated here
    because a remix with gain can exceed it; callers check :func:`peak` to say
    so). Returns the final path.
    """
    path = Path(path)
    fmt, subtype = output_format(path, bits)
    sr = sample_rate(sr)
    audio = check_audio(audio)
    with atomic_path(path) as tmp:
        write_audio(tmp, audio, sr, fmt, subtype, shown=path)
    return path


def peak(audio: np.ndarray) -> float:
    """Largest absolute sample of (channels, samples) audio, a block at a time
    (no full-size temporary)."""
    return max((float(np.abs(block).max()) for _, block in iter_blocks(audio)), default=0.0)


def energy(audio: np.ndarray) -> float:
    """Σ x² of (channels, samples) audio in float64, a block at a time (no full-size
    float64 copy)."""
    return float(sum(np.einsum("ij,ij->", b, b, dtype=np.float64)
                     for _, b in iter_blocks(audio)))


def iter_blocks(audio: np.ndarray, block: int = BLOCK_FRAMES) -> Iterator[Tuple[int, np.ndarray]]:
    """(start, view) pairs over the samples axis of (channels, samples) audio."""
    for start in range(0, audio.shape[1], block):
        yield start, audio[:, start:start + block]
