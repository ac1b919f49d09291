"""Tests of the code-generated demo mixture (demixstudio.demo)."""

import functools
import math
import operator

import numpy as np
import pytest

from demixstudio.demo import DEMO_PANS, DEMO_SR, demo_mixture
from demixstudio.errors import ParameterError

STEMS = ["bass", "drums", "chords", "lead"]


@pytest.fixture(scope="module")
def demo():
    return demo_mixture(sr=DEMO_SR, seconds=6.0, seed=0)


def _ild_db(x):
    """Right-over-left energy ratio of a (2, samples) signal, dB."""
    e = np.sum(np.square(x.astype(np.float64)), axis=1)
    return 10.0 * math.log10(e[1] / e[0])


def _pan_ild_db(pan):
    """The ratio the constant-power pan law gives for ``pan``, dB."""
    theta = (pan + 1.0) * math.pi / 4.0
    return 20.0 * math.log10(math.tan(theta))


def test_shapes_and_dtypes(demo):
    mix, stems = demo
    n = int(round(6.0 * DEMO_SR))
    assert mix.shape == (2, n) and mix.dtype == np.float32
    assert list(stems) == STEMS
    for s in stems.values():
        assert s.shape == (2, n) and s.dtype == np.float32
        assert np.all(np.isfinite(s))


def test_mix_is_exact_sum_of_stems(demo):
    mix, stems = demo
    assert np.array_equal(mix, sum(stems.values()))
    assert np.array_equal(mix, functools.reduce(operator.add, stems.values()))


def test_deterministic_per_seed():
    a_mix, a_stems = demo_mixture(sr=16000, seconds=3.0, seed=3)
    b_mix, b_stems = demo_mixture(sr=16000, seconds=3.0, seed=3)
    c_mix, _ = demo_mixture(sr=16000, seconds=3.0, seed=4)
    assert np.array_equal(a_mix, b_mix)
    for name in STEMS:
        assert np.array_equal(a_stems[name], b_stems[name])
    # Another seed changes the humanisation and noise, so the samples differ.
    assert not np.array_equal(a_mix, c_mix)


def test_peak_below_full_scale_near_minus_3_dbfs(demo):
    mix, _ = demo
    peak = float(np.max(np.abs(mix)))
    assert peak < 1.0
    assert -4.0 < 20 * math.log10(peak) < -2.0


def test_every_stem_has_energy_and_is_audible(demo):
    mix, stems = demo
    mix_rms = np.sqrt(np.mean(np.square(mix.astype(np.float64))))
    for name, s in stems.items():
        rms = np.sqrt(np.mean(np.square(s.astype(np.float64))))
        assert rms > 0, name
        # Within 15 dB of the mix: every part can be heard in it.
        assert 20 * math.log10(rms / mix_rms) > -15.0, name
        # And it plays throughout, not only at the start: each second has sound.
        per_second = s.reshape(2, -1, DEMO_SR)
        assert np.all(np.max(np.abs(per_second), axis=(0, 2)) > 1e-3), name


def test_stems_are_spatially_distinct_as_panned(demo):
    _, stems = demo
    ild = {name: _ild_db(s) for name, s in stems.items()}
    # Mono sources panned with the constant-power law: the ratio is exactly tan^2(theta).
    for name in ("bass", "chords", "lead"):
        assert ild[name] == pytest.approx(_pan_ild_db(DEMO_PANS[name]), abs=0.01), name
    # Drums are stereo (hats a little further left than kick and snare):
    # left of centre, at least as far left as their nominal pan.
    assert ild["drums"] <= _pan_ild_db(DEMO_PANS["drums"]) + 0.01
    assert ild["drums"] > ild["lead"]
    # Ordered left to right as the pans say, and clearly apart (> 3 dB).
    order = sorted(STEMS, key=lambda k: ild[k])
    assert order == ["lead", "drums", "bass", "chords"]
    values = [ild[k] for k in order]
    assert min(np.diff(values)) > 3.0


@pytest.mark.parametrize("sr,seconds", [(8000, 2.0), (22050, 0.5), (48000, 1.25), (192000, 0.3),
                                        (44100, 0.001)])
def test_other_rates_and_durations(sr, seconds):
    mix, stems = demo_mixture(sr=sr, seconds=seconds, seed=1)
    n = max(1, int(round(seconds * sr)))
    assert mix.shape == (2, n) and mix.dtype == np.float32
    assert np.all(np.isfinite(mix))
    assert 0 < np.max(np.abs(mix)) < 1.0
    assert np.array_equal(mix, sum(stems.values()))


def test_longer_than_the_loop():
    # 9.6 s loop; 20 s must keep playing to the end.
    mix, _ = demo_mixture(sr=8000, seconds=20.0)
    tail = mix[:, -8000:]
    assert np.max(np.abs(tail)) > 1e-2


@pytest.mark.parametrize("kwargs", [
    {"seconds": 0.0}, {"seconds": -1.0}, {"seconds": float("nan")}, {"seconds": float("inf")},
    {"seconds": "3"}, {"sr": 7999}, {"sr": 192001}, {"sr": 44100.5}, {"sr": "44100"},
    {"sr": True}, {"seed": -1}, {"seed": 1.5},
])
def test_bad_parameters_raise(kwargs):
    with pytest.raises(ParameterError):
        demo_mixture(**kwargs)


def test_fast_enough():
    import time
    demo_mixture(sr=DEMO_SR, seconds=1.0)  # warm imports and caches
    t0 = time.perf_counter()
    demo_mixture(sr=DEMO_SR, seconds=12.0, seed=0)
    # Well under 1 s on a laptop; generous here so a loaded CI box doesn't flake.
    assert time.perf_counter() - t0 < 3.0
