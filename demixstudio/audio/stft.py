"""The one STFT convention of the whole program.

- periodic Hann window of ``n_fft`` samples; hop = n_fft / 4;
- frames centred on ``t * hop`` (the signal is zero-padded by n_fft/2 on
  each side), so frame ``t`` is at time ``t * hop / sr`` seconds;
- no scaling of the forward transform (``rfft`` of the windowed frame);
- the inverse is weighted overlap-add with the same window, divided by the
  summed squared window, which reconstructs the input exactly (to float
  rounding) for any length.

Spectrograms are complex64 of shape (channels, bins, frames) with
``bins = n_fft // 2 + 1``. Both directions work through blocks of frames so
a long file never exists as a frame matrix in memory. For long files the
spectrogram need not exist either: :class:`AudioStft` gives any range of
frames computed from the audio (:func:`stft_frames`), and :class:`OverlapAdd`
inverts blocks of frames as they come.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Iterator, Optional, Tuple

import numpy as np
import scipy.fft

from demixstudio.errors import ParameterError

BLOCK = 2048  # frames per block: bounds the temporary frame matrix


@dataclass(frozen=True)
class StftConfig:
    """Window length and hop in samples; hop must divide n_fft."""

    n_fft: int = 2048
    hop: int = 512

    def __post_init__(self) -> None:
        if self.n_fft < 16 or self.n_fft % 2:
            raise ParameterError(f"n_fft={self.n_fft} must be an even number ≥ 16")
        if self.hop <= 0 or self.n_fft % self.hop:
            raise ParameterError(f"hop={self.hop} must divide n_fft={self.n_fft}")
        if self.n_fft // self.hop < 2:
            raise ParameterError("hop must be at most n_fft / 2 for overlap-add")

    @classmethod
    def for_rate(cls, sr: int) -> "StftConfig":
        """The program's default: a window of about 46 ms (2048 at 44.1/48 kHz, 1024 at 16-22 kHz)."""
        if not np.isfinite(sr) or sr <= 0:
            raise ParameterError(f"the sample rate must be a positive number of Hz; got {sr}")
        n = int(2 ** round(np.log2(0.0464 * sr)))
        n = min(max(n, 256), 8192)
        return cls(n_fft=n, hop=n // 4)

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    @cached_property
    def window(self) -> np.ndarray:
        """Periodic Hann, float32 (n_fft,)."""
        n = np.arange(self.n_fft)
        return (0.5 - 0.5 * np.cos(2 * np.pi * n / self.n_fft)).astype(np.float32)

    def frames(self, samples: int) -> int:
        """Number of frames for a signal of ``samples`` samples.

        The last frame is centred at or past the last sample, so every sample
        sits near the middle of some frame and the inverse never divides by a
        near-zero window sum.
        """
        return 1 + -(-samples // self.hop)

    def frame_times(self, samples: int, sr: int) -> np.ndarray:
        """Centre time of each frame in seconds, (frames,)."""
        return np.arange(self.frames(samples)) * (self.hop / sr)

    def bin_freqs(self, sr: int) -> np.ndarray:
        """Centre frequency of each bin in Hz, (bins,)."""
        return np.fft.rfftfreq(self.n_fft, 1.0 / sr)


def _segment(x: np.ndarray, start: int, stop: int) -> np.ndarray:
    """x[:, start:stop] with zeros where the range leaves the signal."""
    c, n = x.shape
    if start >= 0 and stop <= n:
        return x[:, start:stop]
    seg = np.zeros((c, stop - start), dtype=np.float32)
    lo, hi = max(start, 0), min(stop, n)
    if hi > lo:
        seg[:, lo - start:hi - start] = x[:, lo:hi]
    return seg


def stft_frames(x: np.ndarray, cfg: StftConfig, t0: int, t1: int) -> np.ndarray:
    """Frames ``[t0, t1)`` of ``stft(x, cfg)``, computed from the samples they cover.

    Parameters
    ----------
    x : np.ndarray [shape=(channels, samples), dtype=float32]
    t0, t1 : int, 0 ≤ t0 ≤ t1 (frames past the end are frames of zeros)

    Returns
    -------
    X : np.ndarray [shape=(channels, bins, t1 - t0), dtype=complex64]
    """
    half, hop = cfg.n_fft // 2, cfg.hop
    if t1 <= t0:
        return np.zeros((x.shape[0], cfg.bins, 0), dtype=np.complex64)
    seg = _segment(x, t0 * hop - half, (t1 - 1) * hop + half)
    fr = np.lib.stride_tricks.sliding_window_view(seg, cfg.n_fft, axis=-1)[:, ::hop]
    spec = scipy.fft.rfft(fr * cfg.window, axis=-1)  # (c, frames, bins), complex64
    return spec.transpose(0, 2, 1)


def spread_frames(x: np.ndarray, cfg: StftConfig, max_frames: int, stretches: int = 8
                  ) -> np.ndarray:
    """At most ``max_frames`` frames of ``stft(x, cfg)``: all of them if there are no
    more, else ``stretches`` evenly spread runs of consecutive frames.

    For fitting a model whose parameters do not change with time (demixing
    matrices, source directions) on a long recording without its whole STFT.

    Returns complex64 (channels, bins, ≤ max_frames).
    """
    x = _as_signal(x)
    total = cfg.frames(x.shape[1])
    if max_frames <= 0 or max_frames >= total:
        return stft_frames(x, cfg, 0, total)
    each = max(1, max_frames // stretches)
    starts = np.linspace(0, total - each, stretches).round().astype(int)
    return np.concatenate([stft_frames(x, cfg, int(t), int(t) + each) for t in starts], axis=2)


def _as_signal(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x[None] if x.ndim == 1 else x


def iter_stft_blocks(x: np.ndarray, cfg: StftConfig, block: int = BLOCK
                     ) -> Iterator[Tuple[int, np.ndarray]]:
    """Frames ``[t0, t0 + block)`` of ``stft(x, cfg)`` one block at a time.

    Yields ``(t0, X_block)`` with X_block complex64 (channels, bins, ≤ block),
    equal to the same frames of the whole-signal STFT.
    """
    x = _as_signal(x)
    nfr = cfg.frames(x.shape[1])
    for t0 in range(0, nfr, block):
        yield t0, stft_frames(x, cfg, t0, min(nfr, t0 + block))


#: Frames :func:`stft` transforms at a time. Its blocks are transposed into the
#: (channels, bins, frames) layout, and 128 frames of that stay in cache: 1.6× faster
#: than 2048 (a warm minute of 44.1 kHz stereo, 2026-11-25); the values are the same.
STFT_BLOCK = 128


def stft(x: np.ndarray, cfg: StftConfig = StftConfig(), *, block: int = STFT_BLOCK,
         out: Optional[np.ndarray] = None) -> np.ndarray:
    """Short-time Fourier transform.

    Parameters
    ----------
    x : np.ndarray [shape=(channels, samples)], real
    cfg : StftConfig
    out : complex64 (channels, bins, frames) to write into (a loop that transforms
        signals of one length again and again reuses it, rather than have a large
        array allocated and its pages faulted in each time)

    Returns
    -------
    X : np.ndarray [shape=(channels, bins, frames), dtype=complex64] (``out`` if given)
    """
    x = _as_signal(x)
    c, n = x.shape
    shape = (c, cfg.bins, cfg.frames(n))
    if out is None:
        out = np.empty(shape, dtype=np.complex64)
    elif out.shape != shape or out.dtype != np.complex64:
        raise ValueError(f"out is {out.dtype} {out.shape}; stft needs complex64 {shape}")
    for t0, X in iter_stft_blocks(x, cfg, block):
        out[:, :, t0:t0 + X.shape[2]] = X
    return out


class AudioStft:
    """The STFT of a signal, computed on request, frames ``[t0, t1)`` at a time.

    Stands in for the array ``stft(x, cfg)`` (complex64, ``shape`` (channels,
    bins, frames)) where holding it would cost too much: a long stereo file's
    STFT is 4× its samples. Recomputing a block is cheap next to what is done
    with it. Use :func:`stft_block` to read frames of either form.
    """

    def __init__(self, x: np.ndarray, cfg: StftConfig) -> None:
        self.x = _as_signal(x)
        self.cfg = cfg
        self.shape = (self.x.shape[0], cfg.bins, cfg.frames(self.x.shape[1]))
        self.dtype = np.dtype(np.complex64)
        self.ndim = 3

    def frames(self, t0: int, t1: int) -> np.ndarray:
        """complex64 (channels, bins, t1 − t0): the same values as ``stft(x)[:, :, t0:t1]``."""
        return stft_frames(self.x, self.cfg, t0, min(t1, self.shape[2]))


def stft_block(spec: "np.ndarray | AudioStft", t0: int, t1: int) -> np.ndarray:
    """``spec[:, :, t0:t1]`` of a spectrogram array or an :class:`AudioStft`."""
    return spec.frames(t0, t1) if isinstance(spec, AudioStft) else spec[:, :, t0:t1]


class OverlapAdd:
    """Incremental weighted overlap-add: the inverse STFT, block by block.

    Blocks of frames may come in any order and sizes (each frame once); only
    the output signal's accumulator is held. Frames are accumulated on a grid
    of hop-sized cells: frame t covers cells t .. t+r-1 (r = n_fft / hop), so
    each block is r vectorised slice-adds rather than a loop over frames.
    :meth:`result` divides by the summed squared window.

    Parameters
    ----------
    channels : int
    length : int, samples of the output
    cfg : StftConfig
    frames : int, frames of the spectrogram (default ``cfg.frames(length)``)
    """

    def __init__(self, channels: int, length: int, cfg: StftConfig,
                 frames: Optional[int] = None) -> None:
        self.cfg, self.length = cfg, length
        self.nfr = cfg.frames(length) if frames is None else frames
        r = cfg.n_fft // cfg.hop
        self._acc: Optional[np.ndarray] = np.zeros((channels, self.nfr + r - 1, cfg.hop),
                                                   dtype=np.float32)

    def add(self, t0: int, frames: np.ndarray) -> None:
        """Add synthesis frames float32 (channels, b, n_fft) (already windowed) at frame t0."""
        if self._acc is None:
            raise RuntimeError("OverlapAdd.add after result()")
        c, b = frames.shape[:2]
        r, hop = self.cfg.n_fft // self.cfg.hop, self.cfg.hop
        fr = frames.reshape(c, b, r, hop)
        for k in range(r):
            self._acc[:, t0 + k:t0 + b + k] += fr[:, :, k]

    def add_spectrum(self, t0: int, X: np.ndarray) -> None:
        """Add the frames of a spectrogram block, complex (channels, bins, b), at frame t0."""
        spec = np.ascontiguousarray(X.transpose(0, 2, 1))
        fr = scipy.fft.irfft(spec, n=self.cfg.n_fft, axis=-1).astype(np.float32, copy=False)
        fr *= self.cfg.window
        self.add(t0, fr)

    def result(self) -> np.ndarray:
        """The signal, float32 (channels, length); the accumulator is handed over, once."""
        if self._acc is None:
            raise RuntimeError("OverlapAdd.result called twice")
        acc, self._acc = self._acc, None
        cfg, nfr, length = self.cfg, self.nfr, self.length
        c, cells, hop = acc.shape
        r, half = cfg.n_fft // hop, cfg.n_fft // 2
        env = np.zeros((cells, hop), dtype=np.float32)
        w2 = (cfg.window * cfg.window).reshape(r, hop)
        for k in range(r):
            env[k:k + nfr] += w2[k]
        stop = min(half + length, cells * hop)
        out = acc.reshape(c, cells * hop)[:, half:stop]
        e = env.reshape(-1)[half:stop]
        # Where no frame overlaps (only past the end of a too-short X) leave zeros.
        np.divide(out, e, out=out, where=e > 1e-8)
        if out.shape[1] < length:
            out = np.concatenate([out, np.zeros((c, length - out.shape[1]), np.float32)], axis=1)
        return out


def istft(X: np.ndarray, length: int, cfg: StftConfig = StftConfig(), *,
          block: int = BLOCK) -> np.ndarray:
    """Inverse STFT by weighted overlap-add.

    Parameters
    ----------
    X : np.ndarray [shape=(channels, bins, frames)], complex
    length : int, number of samples to return (the original signal's length)

    Returns
    -------
    x : np.ndarray [shape=(channels, length), dtype=float32]
    """
    if X.ndim == 2:
        X = X[None]
    c, bins, nfr = X.shape
    if bins != cfg.bins:
        raise ParameterError(f"spectrogram has {bins} bins; the STFT config expects {cfg.bins}")
    ola = OverlapAdd(c, length, cfg, frames=nfr)
    for t0 in range(0, nfr, block):
        ola.add_spectrum(t0, X[:, :, t0:t0 + block])
    return ola.result()


def apply_mask(x: np.ndarray, mask: np.ndarray, cfg: StftConfig = StftConfig(), *,
               block: int = BLOCK) -> np.ndarray:
    """``istft(mask * stft(x))`` computed block by block, never holding the full STFT.

    Parameters
    ----------
    x : np.ndarray [shape=(channels, samples)]
    mask : np.ndarray [shape=(channels or 1, bins, frames)], real weights

    Returns
    -------
    y : np.ndarray [shape=(channels, samples), dtype=float32]
    """
    x = np.asarray(x, dtype=np.float32)
    c, n = x.shape
    nfr = cfg.frames(n)
    if mask.shape[1:] != (cfg.bins, nfr) or mask.shape[0] not in (1, c):
        raise ParameterError(
            f"mask shape {mask.shape} does not fit the STFT of this audio "
            f"({c} or 1, {cfg.bins}, {nfr})")
    ola = OverlapAdd(c, n, cfg, frames=nfr)
    for t0, spec in iter_stft_blocks(x, cfg, block):
        spec *= mask[:, :, t0:t0 + spec.shape[2]]  # a fresh block: safe to scale in place
        ola.add_spectrum(t0, spec)
    return ola.result()
