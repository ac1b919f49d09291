"""A recording's long-term spectrum with the dynamic range to show a cut next to a
loud band, for the band search's low edge (:func:`.missing.found_run`)."""

from __future__ import annotations

from typing import Iterable

import numpy as np

#: The window is this many times the program's ``n_fft``; its fine bins are averaged
#: back onto the program's.
WELCH_FACTOR = 4
#: At most this many frames of a recording are read (evenly spread).
WELCH_MAX_FRAMES = 8192
#: Frames read at a time (a block of 64 frames of 8192 samples: 4 MB per channel).
_BATCH = 64


def long_term_magnitude(signals: Iterable[np.ndarray], cfg) -> np.ndarray:
    """A Welch mean of a recording's magnitude spectrum on the program's bins:
    float64 (bins,).

    signals : float32 (channels, samples) arrays, one recording in pieces (an example's
    excerpts); cfg : the program's STFT (its ``n_fft`` sets the bins)

    Frames of :data:`WELCH_FACTOR` × ``n_fft`` samples a quarter apart, all inside the
    signal (no zero padding, so no click where an excerpt starts on sound), under a
    4-term Blackman–Harris window (side lobes 92 dB down); per frame the channels'
    magnitudes are summed, as in the program's magnitude. The fine bins are averaged
    back onto the program's with a triangle :data:`WELCH_FACTOR` fine bins wide on
    each side. A signal shorter than a frame is one frame, centred in zeros; a long
    one is read at :data:`WELCH_MAX_FRAMES` evenly spread frames (an hour of 44.1 kHz
    stereo in under a second).

    Why not the program's own frames: under their Hann window (side lobes 31 dB down,
    falling 18 dB an octave) a cut within a few bins of a loud band reads no deeper
    than the band's leakage. A singer's stem high-passed at 150 Hz (10th order, zero
    phase, 44.1 kHz) is 120 dB down under 80 Hz, but its 0–110 Hz bins read 26–30 dB
    under the example there, within ``band_db``, so the cut was not found; here they
    read far under it (measured 2026-11-25).
    """
    f = WELCH_FACTOR
    n = f * cfg.n_fft
    window = _blackman_harris(n)
    total = np.zeros(n // 2 + 1, dtype=np.float64)
    count = 0
    for x in signals:
        x = np.asarray(x, dtype=np.float32)
        if x.shape[1] < n:
            pad = np.zeros((x.shape[0], n), dtype=np.float32)
            a = (n - x.shape[1]) // 2
            pad[:, a:a + x.shape[1]] = x
            x = pad
        span = x.shape[1] - n
        hop = n // 4
        if span // hop + 1 > WELCH_MAX_FRAMES:
            hop = span // (WELCH_MAX_FRAMES - 1)
        starts = np.arange(0, span + 1, hop)
        for b in range(0, starts.size, _BATCH):
            part = starts[b:b + _BATCH]
            mag = np.zeros((part.size, n // 2 + 1), dtype=np.float64)
            for c in range(x.shape[0]):
                frames = np.lib.stride_tricks.sliding_window_view(x[c], n)[part]
                mag += np.abs(np.fft.rfft(frames * window, axis=1))
            total += mag.sum(axis=0)
        count += starts.size
    return _onto_program_bins(total / max(count, 1), f, cfg.bins)


def _onto_program_bins(fine: np.ndarray, f: int, bins: int) -> np.ndarray:
    """(f·(bins − 1) + 1,) fine bins → (bins,): each program bin the triangle-weighted
    mean of the fine bins within ``f`` of its centre. A magnitude spectrum is even in
    frequency, so it is mirrored at 0 and at the Nyquist frequency for the end bins."""
    padded = np.concatenate([fine[f - 1:0:-1], fine, fine[-2:-f - 1:-1]])
    tri = 1.0 - np.abs(np.arange(-f + 1, f)) / f
    return np.convolve(padded, tri / tri.sum(), mode="valid")[::f][:bins]


def _blackman_harris(n: int) -> np.ndarray:
    """The periodic 4-term Blackman–Harris window (Harris 1978), float32 (n,)."""
    t = 2.0 * np.pi * np.arange(n) / n
    w = 0.35875 - 0.48829 * np.cos(t) + 0.14128 * np.cos(2 * t) - 0.01168 * np.cos(3 * t)
    return w.astype(np.float32)
