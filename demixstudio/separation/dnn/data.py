"""Training data from a MUSDB18-style folder: one folder per track, one audio file per stem.

    DATA/
      Some Artist - Song/   vocals.wav  drums.wav  bass.wav  other.wav  [piano.wav ...]
      Another - Track/      ...

The mixture is the sum of every stem in a track folder (a ``mixture.*`` file,
if present, is ignored so the books always balance). Stems that are not
training targets still go into the mixture, as interference.

:class:`ChunkSampler` draws training examples the way Open-Unmix and most
music separation trainers do (Uhlich et al. 2017): a random chunk of each
source, each from an independently chosen track and offset ("random
re-mixing" across tracks), each scaled by a random gain in [0.25, 1.25] and
with its two channels swapped half of the time. Audio is read chunk by
chunk from the files, so the data set never has to fit in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf

from demixstudio.errors import AudioFormatError, ParameterError

AUDIO_EXT = (".wav", ".flac", ".ogg", ".aiff", ".aif")
#: Stems of one track may differ in length by this much (seconds; exports often
#: differ by a few samples) and are cut to the shortest; a larger difference is refused.
LENGTH_TOLERANCE_S = 0.1
#: The most channels a model takes; stems with more are fed one channel at a time.
MODEL_CHANNELS = 2
REST = "__rest__"  # the non-target stems of a track, summed


@dataclass(frozen=True)
class Track:
    """One track folder: ``stems`` maps stem name -> file; all share rate, channels, length."""

    name: str
    stems: Dict[str, Path]
    sr: int
    channels: int
    frames: int


def scan_tracks(root: Path) -> List[Track]:
    """Every track folder under ``root`` (sorted by name), with its stems checked for agreement."""
    root = Path(root)
    if not root.is_dir():
        raise ParameterError(f"--data {root}: not a folder of track folders")
    tracks = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        stems = {f.stem: f for f in sorted(d.iterdir())
                 if f.suffix.lower() in AUDIO_EXT and f.stem.lower() != "mixture"}
        if not stems:
            continue
        infos = {}
        for name, f in stems.items():
            try:
                infos[name] = sf.info(str(f))
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise AudioFormatError(f"{f}: cannot read ({exc})") from None
        rates = {i.samplerate for i in infos.values()}
        chans = {i.channels for i in infos.values()}
        if len(rates) != 1 or len(chans) != 1:
            raise AudioFormatError(f"{d}: stems differ in sample rate {sorted(rates)} or "
                                   f"channels {sorted(chans)}")
        rate = rates.pop()
        frames = min(i.frames for i in infos.values())
        longest = max(i.frames for i in infos.values())
        if longest - frames > LENGTH_TOLERANCE_S * rate:
            lengths = ", ".join(f"{n} {i.frames / rate:.2f} s" for n, i in sorted(infos.items()))
            raise AudioFormatError(f"{d}: the stems of one track must have one length, "
                                   f"but they differ by {(longest - frames) / rate:.2f} s "
                                   f"({lengths}); trim or pad them to one length")
        tracks.append(Track(d.name, stems, rate, chans.pop(), int(frames)))
    if not tracks:
        raise ParameterError(f"--data {root}: no track folders with audio stems inside")
    rates = {t.sr for t in tracks}
    chans = {t.channels for t in tracks}
    if len(rates) != 1 or len(chans) != 1:
        raise AudioFormatError(f"{root}: tracks differ in sample rate {sorted(rates)} or "
                               f"channels {sorted(chans)}; convert them to one format first")
    return tracks


def read_segment(path: Path, start: int, length: int, channels: int) -> np.ndarray:
    """float32 (channels, length) from ``path`` at ``start``; zeros past the end."""
    out = np.zeros((channels, length), dtype=np.float32)
    with sf.SoundFile(str(path)) as f:
        if start < f.frames:
            f.seek(start)
            x = f.read(min(length, f.frames - start), dtype="float32", always_2d=True)
            out[:, :x.shape[0]] = x.T
    return out


def load_track(track: Track, targets: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
    """A whole track: mixture (C, N) and target stems (J, C, N) (zeros for absent targets)."""
    n, c = track.frames, track.channels
    stems = np.zeros((len(targets), c, n), dtype=np.float32)
    mix = np.zeros((c, n), dtype=np.float32)
    for name, f in track.stems.items():
        x = read_segment(f, 0, n, c)
        mix += x
        if name in targets:
            stems[list(targets).index(name)] = x
    return mix, stems


class ChunkSampler:
    """Random training examples (see the module notes).

    Parameters
    ----------
    tracks : training tracks
    targets : target stem names, in model output order
    chunk : samples per example
    rng : np.random.Generator
    augment : random gains and channel swaps
    remix : draw each source from its own random track (else all from one)

    Examples have at most :data:`MODEL_CHANNELS` channels, as the models take:
    stems with more channels give, per source, one randomly chosen channel on
    both model channels — what inference feeds a stereo model for each channel
    of such a recording (``inference._channel_groups``).
    """

    def __init__(self, tracks: Sequence[Track], targets: Sequence[str], chunk: int,
                 rng: np.random.Generator, *, augment: bool = True, remix: bool = True) -> None:
        self.tracks = list(tracks)
        self.targets = list(targets)
        self.chunk = int(chunk)
        self.rng = rng
        self.augment = augment
        self.remix = remix
        self.file_channels = self.tracks[0].channels
        #: channels of each example (what the model is built for)
        self.channels = min(self.file_channels, MODEL_CHANNELS)
        self.has = {t: [tr for tr in self.tracks if t in tr.stems] for t in self.targets}
        missing = [t for t, trs in self.has.items() if not trs]
        if missing:
            raise ParameterError(f"targets {missing} are not a stem of any training track "
                                 f"(stems found: {sorted({s for tr in self.tracks for s in tr.stems})})")

    def _offset(self, track: Track) -> int:
        return int(self.rng.integers(0, max(1, track.frames - self.chunk + 1)))

    def _source(self, track: Track, names: Sequence[str], start: int) -> np.ndarray:
        x = np.zeros((self.file_channels, self.chunk), dtype=np.float32)
        for n in names:
            x += read_segment(track.stems[n], start, self.chunk, self.file_channels)
        if self.file_channels > self.channels:
            k = int(self.rng.integers(self.file_channels))
            x = np.repeat(x[k:k + 1], self.channels, axis=0)
        if self.augment:
            x *= self.rng.uniform(0.25, 1.25)
            if self.channels == 2 and self.rng.random() < 0.5:
                x = x[::-1].copy()
        return x

    def sample(self) -> Tuple[np.ndarray, np.ndarray]:
        """One example: mixture (C, L) and target stems (J, C, L), float32."""
        base = self.tracks[int(self.rng.integers(len(self.tracks)))]
        base_start = self._offset(base)
        stems = np.zeros((len(self.targets), self.channels, self.chunk), dtype=np.float32)
        for j, t in enumerate(self.targets):
            if self.remix:
                pool = self.has[t]
                tr = pool[int(self.rng.integers(len(pool)))]
                stems[j] = self._source(tr, [t], self._offset(tr))
            elif t in base.stems:
                stems[j] = self._source(base, [t], base_start)
        rest_track = (self.tracks[int(self.rng.integers(len(self.tracks)))]
                      if self.remix else base)
        rest_names = [s for s in rest_track.stems if s not in self.targets]
        mix = stems.sum(0)
        if rest_names:
            start = self._offset(rest_track) if self.remix else base_start
            mix += self._source(rest_track, rest_names, start)
        return mix, stems

    def batch(self, size: int) -> Tuple[np.ndarray, np.ndarray]:
        """``size`` examples: (B, C, L) and (B, J, C, L)."""
        pairs = [self.sample() for _ in range(size)]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def split_tracks(tracks: Sequence[Track], valid: Optional[Sequence[str]] = None
                 ) -> Tuple[List[Track], List[Track]]:
    """(train, valid): ``valid`` names the held-out tracks; by default the last one (if ≥ 2)."""
    names = [t.name for t in tracks]
    if valid:
        unknown = [v for v in valid if v not in names]
        if unknown:
            raise ParameterError(f"validation tracks {unknown} not found; tracks: {names}")
        held = [t for t in tracks if t.name in valid]
    else:
        held = [tracks[-1]] if len(tracks) > 1 else []
    train = [t for t in tracks if t not in held]
    if not train:
        raise ParameterError("no training tracks left after holding out the validation tracks")
    return train, held
