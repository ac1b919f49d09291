"""Stereo test mixtures of real recordings with known source images.

Shared by the tests and benchmarks of the spatial methods (DUET, ADRess,
PROJET, ILRMA). Every mixture is the exact sum of its source images, so the
images are the references for BSS Eval.

- :func:`load_sources` — mono excerpts of recordings in ../shared/audio.
- :func:`pan_mixture` — constant-power panning at equal angular spacing
  (the protocol of FitzGerald, Liutkus & Badeau 2016), optionally with a
  per-source inter-channel delay.
- :func:`anechoic_mixture` — per-channel attenuation plus small fractional
  delays (the DUET model).
- :func:`instantaneous_mixture` — any real mixing matrix.

Benchmarks import this module after putting ``tests/`` on ``sys.path``.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from conftest import shared  # tests/ is on sys.path under pytest; benchmarks add it

from demixstudio.audio.io import load_audio, resample

# Distinct real recordings (instruments, singing, speech) for panned music-like mixtures.
MUSIC_SET = (
    "solo_instruments/cello-phrase.wav",
    "solo_instruments/sax-phrase.wav",
    "solo_voice/singing-female.wav",
    "solo_voice/speech-male.wav",
)
# Clean speech of different speakers, for anechoic / determined mixtures.
SPEECH_SET = (
    "speech_sisec_dev1/dev1_female4_src_1.wav",
    "speech_sisec_dev1/dev1_male4_src_2.wav",
    "speech_sisec_dev1/dev1_female4_src_3.wav",
    "speech_sisec_dev1/dev1_male4_src_4.wav",
)


def _active_start(x: np.ndarray, sr: int) -> int:
    """First sample of the first 50 ms block above -40 dB of the loudest block.

    Recordings often begin with silence; a test excerpt should start where
    the source plays, or it holds less signal than its length suggests.
    """
    blk = max(1, int(0.05 * sr))
    n = x.size // blk
    if n == 0:
        return 0
    e = (x[: n * blk].reshape(n, blk) ** 2).mean(1)
    above = np.flatnonzero(e > 1e-4 * e.max())
    return int(above[0] * blk) if above.size else 0


def load_sources(names: Sequence[str], sr: int, seconds: float) -> list:
    """Mono excerpts of recordings in ../shared/audio, at equal loudness.

    Parameters
    ----------
    names : paths relative to ../shared/audio (e.g. ``MUSIC_SET``)
    sr : sample rate to resample to, Hz
    seconds : excerpt length; shorter recordings are zero-padded

    Returns
    -------
    list of np.ndarray [shape=(N,), dtype=float32], N = round(sr * seconds),
    each scaled to an RMS of 0.05 (so a sum of 4 stays well below full scale).
    """
    n = int(round(sr * seconds))
    out = []
    for name in names:
        audio, file_sr = load_audio(shared(name))
        mono = audio.mean(axis=0, keepdims=True).astype(np.float32)
        mono = resample(mono, file_sr, sr)[0]
        start = _active_start(mono, sr)
        seg = mono[start:start + n]
        if seg.size < n:
            seg = np.concatenate([seg, np.zeros(n - seg.size, np.float32)])
        rms = float(np.sqrt(np.mean(seg.astype(np.float64) ** 2)))
        if rms <= 0:
            raise ValueError(f"{name}: excerpt is silent")
        out.append((seg * (0.05 / rms)).astype(np.float32))
    return out


def fractional_delay(x: np.ndarray, delay: float) -> np.ndarray:
    """``x`` delayed by ``delay`` samples (any real, ≥ 0), same length.

    Done as a linear phase in the frequency domain on a zero-padded copy, so
    the delay is exact for band-limited signals and nothing wraps around.

    x : np.ndarray [shape=(N,)] -> np.ndarray [shape=(N,), dtype=float32]
    """
    if delay == 0:
        return x.astype(np.float32, copy=True)
    n = x.size
    pad = int(np.ceil(abs(delay))) + 64
    nfft = 1 << int(np.ceil(np.log2(n + pad)))
    X = np.fft.rfft(x.astype(np.float64), nfft)
    f = np.arange(X.size) / nfft
    y = np.fft.irfft(X * np.exp(-2j * np.pi * f * delay), nfft)
    return y[:n].astype(np.float32)


def _delay_pair(left: np.ndarray, right: np.ndarray, delay: float) -> Tuple[np.ndarray, np.ndarray]:
    """Delay the right channel by ``delay`` samples if positive, the left one if negative."""
    if delay > 0:
        right = fractional_delay(right, delay)
    elif delay < 0:
        left = fractional_delay(left, -delay)
    return left, right


def pan_angles(n_sources: int, spacing_deg: float) -> np.ndarray:
    """Pan angles θ_j = 45° + (j − (J−1)/2)·spacing, in degrees, (J,).

    0° is hard left, 90° hard right, 45° the centre.
    """
    j = np.arange(n_sources)
    return 45.0 + (j - (n_sources - 1) / 2.0) * float(spacing_deg)


def pan_mixture(sources: Sequence[np.ndarray], spacing_deg: float,
                delays: Optional[Sequence[float]] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Constant-power panned stereo mixture at equal angular spacing.

    Source j gets the gains (cos θ_j, sin θ_j) with θ_j from :func:`pan_angles`.
    ``delays[j]`` (samples, int or fractional) delays the right channel of
    source j if positive, the left channel if negative.

    Parameters
    ----------
    sources : J arrays [shape=(N,)]
    spacing_deg : angle between neighbouring sources, degrees

    Returns
    -------
    mix : np.ndarray [shape=(2, N), dtype=float32], the sum of the images
    images : np.ndarray [shape=(J, 2, N), dtype=float32]
    """
    theta = np.deg2rad(pan_angles(len(sources), spacing_deg))
    if theta.min() < 0 or theta.max() > np.pi / 2:
        raise ValueError(f"{len(sources)} sources at {spacing_deg}° do not fit in 0°..90°")
    delays = [0.0] * len(sources) if delays is None else list(delays)
    imgs = []
    for s, th, d in zip(sources, theta, delays):
        left, right = _delay_pair(np.cos(th) * s, np.sin(th) * s, float(d))
        imgs.append(np.stack([left, right]))
    images = np.stack(imgs).astype(np.float32)
    return images.sum(0).astype(np.float32), images


def anechoic_mixture(sources: Sequence[np.ndarray], gains: Sequence[Sequence[float]],
                     delays: Sequence[float]) -> Tuple[np.ndarray, np.ndarray]:
    """Anechoic stereo mixture: per-channel attenuation plus a small delay.

    Parameters
    ----------
    sources : J arrays [shape=(N,)]
    gains : (J, 2) left and right gain of each source
    delays : (J,) samples, |delay| ≤ 3 (fractional allowed); positive delays
        the right channel, negative the left

    Returns
    -------
    mix : np.ndarray [shape=(2, N), dtype=float32]
    images : np.ndarray [shape=(J, 2, N), dtype=float32]
    """
    g = np.asarray(gains, dtype=np.float64)
    if g.shape != (len(sources), 2):
        raise ValueError(f"gains must have shape ({len(sources)}, 2), got {g.shape}")
    if any(abs(float(d)) > 3 for d in delays):
        raise ValueError(f"delays {list(delays)} exceed 3 samples")
    imgs = []
    for s, (gl, gr), d in zip(sources, g, delays):
        left, right = _delay_pair(gl * s, gr * s, float(d))
        imgs.append(np.stack([left, right]))
    images = np.stack(imgs).astype(np.float32)
    return images.sum(0).astype(np.float32), images


def instantaneous_mixture(sources: Sequence[np.ndarray],
                          matrix: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Instantaneous mixture x = A s with a real mixing matrix.

    Parameters
    ----------
    sources : J arrays [shape=(N,)]
    matrix : np.ndarray [shape=(C, J)]

    Returns
    -------
    mix : np.ndarray [shape=(C, N), dtype=float32]
    images : np.ndarray [shape=(J, C, N), dtype=float32], images[j, c] = A[c, j] s_j
    """
    a = np.asarray(matrix, dtype=np.float64)
    s = np.stack(sources).astype(np.float64)
    images = (a.T[:, :, None] * s[:, None, :]).astype(np.float32)
    return images.sum(0).astype(np.float32), images
