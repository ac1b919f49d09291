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
a long file never exists as a frame matrix in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

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


def stft(x: np.ndarray, cfg: StftConfig = StftConfig(), *, block: int = BLOCK) -> np.ndarray:
    """Short-time Fourier transform.

    Parameters
    ----------
    x : np.ndarray [shape=(channels, samples)], real
    cfg : StftConfig

    Returns
    -------
    X : np.ndarray [shape=(channels, bins, frames), dtype=complex64]
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    c, n = x.shape
    nfr = cfg.frames(n)
    out = np.empty((c, cfg.bins, nfr), dtype=np.complex64)
    half, hop, win = cfg.n_fft // 2, cfg.hop, cfg.window
    for t0 in range(0, nfr, block):
        t1 = min(nfr, t0 + block)
        seg = _segment(x, t0 * hop - half, (t1 - 1) * hop + half)
        fr = np.lib.stride_tricks.sliding_window_view(seg, cfg.n_fft, axis=-1)[:, ::hop]
        spec = scipy.fft.rfft(fr * win, axis=-1)  # (c, frames, bins), complex64
        out[:, :, t0:t1] = spec.transpose(0, 2, 1)
    return out


def _overlap_add(blocks, c: int, nfr: int, length: int, cfg: StftConfig) -> np.ndarray:
    """Weighted overlap-add of synthesis frames, normalised by the summed squared window.

    ``blocks`` yields ``(t0, frames)`` with frames float32 (c, b, n_fft), already
    multiplied by the synthesis window. Frames are accumulated on a grid of
    hop-sized cells: frame t covers cells t .. t+r-1 (r = n_fft / hop), so the
    overlap-add is r vectorised slice-adds per block rather than a loop over frames.
    Returns float32 (c, length).
    """
    n, hop = cfg.n_fft, cfg.hop
    r, half = n // hop, n // 2
    cells = nfr + r - 1
    acc = np.zeros((c, cells, hop), dtype=np.float32)
    for t0, fr in blocks:
        b = fr.shape[1]
        fr = fr.reshape(c, b, r, hop)
        for k in range(r):
            acc[:, t0 + k:t0 + b + k] += fr[:, :, k]
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

    def blocks():
        for t0 in range(0, nfr, block):
            t1 = min(nfr, t0 + block)
            spec = np.ascontiguousarray(X[:, :, t0:t1].transpose(0, 2, 1))
            fr = scipy.fft.irfft(spec, n=cfg.n_fft, axis=-1).astype(np.float32, copy=False)
            fr *= cfg.window
            yield t0, fr

    return _overlap_add(blocks(), c, nfr, length, cfg)


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
    half, hop = cfg.n_fft // 2, cfg.hop

    def blocks():
        for t0 in range(0, nfr, block):
            t1 = min(nfr, t0 + block)
            seg = _segment(x, t0 * hop - half, (t1 - 1) * hop + half)
            fr = np.lib.stride_tricks.sliding_window_view(seg, cfg.n_fft, axis=-1)[:, ::hop]
            spec = scipy.fft.rfft(fr * cfg.window, axis=-1)  # (c, b, bins)
            spec *= mask[:, :, t0:t1].transpose(0, 2, 1)
            y = scipy.fft.irfft(spec, n=cfg.n_fft, axis=-1).astype(np.float32, copy=False)
            y *= cfg.window
            yield t0, y

    return _overlap_add(blocks(), c, nfr, n, cfg)
