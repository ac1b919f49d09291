"""``repair``'s dropouts: runs of exact zeros inside sound, found in the waveform and
filled by least-squares AR interpolation (``repair/dropouts.py``), with or without
an example. Real recordings from ../shared/audio; the thresholds sit under the
measured figures (``benchmarks/bench_dropouts.py`` gives them over many runs)."""

from __future__ import annotations

import nmf_cases as nc
import numpy as np
import pytest

from demixstudio.audio.stft import StftConfig
from demixstudio.errors import ParameterError
from demixstudio.jobs.context import NullContext
from demixstudio.separation import Hints, get_method, make_params
from demixstudio.separation.nmf.repair import dropouts
from demixstudio.separation.nmf.spectra import log_spectral_distance

CELLO = "solo_instruments/cello-phrase.wav"


def _snr(ref: np.ndarray, est: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref ** 2) / np.sum((ref - est) ** 2)))


def test_dropouts_are_runs_of_zeros_inside_sound_only():
    """Zero runs of 5 and 50 ms inside a 16-bit tone with noise are found; not one of
    0.5 ms, one longer than the limit, one at the start, one beside silence, nor the
    zeros of a passage a few quanta high (as a quiet 16-bit recording has)."""
    sr = 16000
    rng = np.random.default_rng(0)
    t = np.arange(4 * sr) / sr
    x = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(t.size)
    x[int(3.0 * sr):int(3.5 * sr)] = 0.0  # digital silence, then a quiet passage
    x[int(3.5 * sr):] = 1.5 / 32768 * rng.standard_normal(int(0.5 * sr))
    x = np.round(x * 32768) / 32768  # 16 bits, as read from a file
    assert np.count_nonzero(x[int(3.5 * sr):] == 0) > 1000
    runs = {"short": (1000, 1008), "5 ms": (5000, 5080), "50 ms": (9000, 9800),
            "150 ms": (14000, 16400), "start": (0, 200), "beside silence": (46000, 48000)}
    for a, b in runs.values():
        x[a:b] = 0.0
    found = dropouts.find_dropouts(x.astype(np.float32), sr, 0.1)
    assert found == [runs["5 ms"], runs["50 ms"]]
    assert dropouts.find_dropouts(x.astype(np.float32), sr, 0.2)[-1] == runs["150 ms"]


def test_zero_runs_across_scan_blocks(monkeypatch):
    """The runs of zeros (at least a given length) are the same whatever the scan's
    block (runs cross blocks)."""
    rng = np.random.default_rng(1)
    for trial in range(100):
        n = int(rng.integers(1, 120))
        x = np.where(rng.random(n) < 0.5, 0.0, rng.standard_normal(n))
        z = np.diff(np.concatenate([[0], (x == 0).astype(int), [0]]))
        expected = list(zip(np.flatnonzero(z == 1).tolist(), np.flatnonzero(z == -1).tolist()))
        monkeypatch.setattr(dropouts, "SCAN_BLOCK", int(rng.integers(1, 17)))
        shortest = int(rng.integers(1, 4))
        assert list(dropouts._zero_runs(x, shortest)) == [
            (a, b) for a, b in expected if b - a >= shortest]


def test_repair_fills_dropouts_without_an_example():
    """A cello phrase with 10, 30 and 80 ms of zeros: filled from the samples around
    them (measured: SNR in the runs 30.5, 27.3 and 20.6 dB; the phrase's distance
    0.88 → 0.34 dB), every other sample left exactly as it was."""
    sr = nc.SR
    x = nc.excerpt(CELLO, (4.2, 8.4)).astype(np.float32)[None]
    runs = [(int(1.3 * sr), int(1.31 * sr)), (int(2.1 * sr), int(2.13 * sr)),
            (int(3.0 * sr), int(3.08 * sr))]
    damaged = x.copy()
    for a, b in runs:
        damaged[:, a:b] = 0.0
    m = get_method("repair")
    layer = m.separate(damaged, sr, make_params(m.Params, {}), Hints(), NullContext())[0]
    out = layer.waveform
    assert layer.extra["dropouts_filled"] == 3
    keep = np.ones(x.shape[1], dtype=bool)
    for a, b in runs:
        keep[a:b] = False
    assert np.array_equal(out[:, keep], damaged[:, keep])
    snrs = [_snr(x[0, a:b], out[0, a:b]) for a, b in runs]
    assert min(snrs) > 12.0, snrs
    cfg = StftConfig.for_rate(sr)
    assert log_spectral_distance(x, out, cfg) < 0.5 * log_spectral_distance(x, damaged, cfg)
    # Off: nothing to fill, and with no example nothing else to do.
    with pytest.raises(ParameterError, match="fills dropouts only"):
        m.separate(damaged, sr, make_params(m.Params, {"dropout_ms": 0.0}), Hints(),
                   NullContext())
