"""Known-answer tests of the blind methods ``ica`` and ``decorrelation``.

Real recordings (``../shared/audio`` beside the repository, see its
SOURCES.md) are mixed instantaneously with seeded random mixing matrices of
unit-norm columns. Each source is first scaled to unit RMS so that both
images matter equally.
The score is the image SNR ``10 log10(‖img‖² / ‖img − est‖²)`` of each
estimated source image against the true image ``A[:, k] s_k``, after
matching the order.
"""

from __future__ import annotations

import functools
import itertools
import threading
from math import gcd

import numpy as np
import pytest
from conftest import shared

from demixstudio.errors import Cancelled, ParameterError
from demixstudio.jobs.context import JobContext, NullContext
from demixstudio.separation import Hints, get_method, make_params, param_specs
from demixstudio.separation import _linear as lin
from demixstudio.separation import base

# (label, file 1, file 2, common rate). Pairs across rates are resampled to
# the lower one.
PAIRS = [
    ("speech+speech (SiSEC)", "speech_sisec_dev1/dev1_female4_src_1.wav",
     "speech_sisec_dev1/dev1_male4_src_2.wav", 16000),
    ("speech+speech (LibriSpeech)", "speech_librispeech/198-209-0000.wav",
     "speech_librispeech/3436-172162-0000.wav", 16000),
    ("speech+music", "speech_librispeech/5703-47212-0000.wav",
     "solo_instruments/cello-phrase.wav", 16000),
    ("music+music", "solo_instruments/sax-phrase.wav", "solo_instruments/piano.wav", 44100),
    ("voice+music", "solo_voice/singing-female.wav", "solo_instruments/trumpet.wav", 44100),
]

# Acceptance thresholds on the median image SNR over sources (dB).
THRESHOLDS = {"fastica": 35.0, "fastica-tanh": 35.0, "jade": 35.0, "decorrelation": 25.0}

@functools.lru_cache(maxsize=None)
def _load(rel: str, sr: int) -> np.ndarray:
    """A mono float64 recording at ``sr`` Hz (channels averaged, resampled)."""
    import soundfile as sf
    from scipy.signal import resample_poly

    x, rate = sf.read(str(shared(rel)), dtype="float64", always_2d=True)
    x = x.mean(axis=1)
    if rate != sr:
        g = gcd(rate, sr)
        x = resample_poly(x, sr // g, rate // g)
    return x


def _sources(files, sr: int) -> np.ndarray:
    """Sources cropped to a common length, unit RMS: (nb_sources, nb_samples)."""
    s = [_load(f, sr) for f in files]
    n = min(len(v) for v in s)
    s = np.stack([v[:n] for v in s])
    return s / np.sqrt(np.mean(s ** 2, axis=1, keepdims=True))


def _unit_columns(rng: np.random.Generator, nb_channels: int, nb_sources: int) -> np.ndarray:
    a = rng.standard_normal((nb_channels, nb_sources))
    return a / np.linalg.norm(a, axis=0)


def _mix(s: np.ndarray, a: np.ndarray):
    """Mixture float32 (channels, samples) and true images (sources, channels, samples)."""
    images = a.T[:, :, None] * s[:, None, :]
    return images.sum(axis=0).astype(np.float32), images


def _image_snr(images: np.ndarray, estimates) -> np.ndarray:
    """Per-source image SNR (dB) under the best order of the estimates."""
    est = np.stack([np.asarray(e, dtype=np.float64) for e in estimates])
    k = images.shape[0]
    snr = np.array([[10 * np.log10(np.sum(images[i] ** 2) / np.sum((images[i] - est[j]) ** 2))
                     for j in range(est.shape[0])] for i in range(k)])
    best = max(itertools.permutations(range(est.shape[0]), k),
               key=lambda p: snr[np.arange(k), list(p)].sum())
    return snr[np.arange(k), list(best)]


def _run(method: str, mix: np.ndarray, sr: int, ctx=None, **values):
    m = get_method(method)
    params = make_params(m.Params, values)
    return m.separate(mix, sr, params, Hints(), ctx or NullContext())


CONFIGS = [("fastica", "ica", {"algorithm": "fastica"}),
           ("fastica-tanh", "ica", {"algorithm": "fastica", "nonlinearity": "tanh"}),
           ("jade", "ica", {"algorithm": "jade"}),
           ("decorrelation", "decorrelation", {})]


@pytest.mark.parametrize("case", range(len(PAIRS)), ids=[p[0] for p in PAIRS])
def test_real_pairs_reach_thresholds(case):
    label, f1, f2, sr = PAIRS[case]
    s = _sources((f1, f2), sr)
    a = _unit_columns(np.random.default_rng(100 + case), 2, 2)
    mix, images = _mix(s, a)
    for key, method, values in CONFIGS:
        props = _run(method, mix, sr, **values)
        assert len(props) == 2
        for p in props:
            assert p.waveform.dtype == np.float32 and p.waveform.shape == mix.shape
            assert p.method == method
        est = [p.waveform for p in props]
        snr = _image_snr(images, est)
        assert np.median(snr) >= THRESHOLDS[key], f"{label} {key}: {snr}"
        # As many sources as channels: the images add back to the mixture.
        total = np.sum(np.stack(est).astype(np.float64), axis=0)
        assert np.max(np.abs(total - mix)) <= 1e-5 * np.max(np.abs(mix))
        # Loudest first.
        energy = [float(np.sum(e.astype(np.float64) ** 2)) for e in est]
        assert energy == sorted(energy, reverse=True)


@pytest.mark.parametrize("nonlinearity", ["cube"])
def test_fastica_other_nonlinearities(nonlinearity):
    s = _sources(PAIRS[1][1:3], 16000)
    mix, images = _mix(s, _unit_columns(np.random.default_rng(7), 2, 2))
    props = _run("ica", mix, 16000, nonlinearity=nonlinearity)
    assert np.median(_image_snr(images, [p.waveform for p in props])) >= 30.0


def test_fastica_random_start_and_determinism():
    s = _sources(PAIRS[0][1:3], 16000)
    mix, images = _mix(s, _unit_columns(np.random.default_rng(8), 2, 2))
    one = _run("ica", mix, 16000, init="random", seed=3)
    two = _run("ica", mix, 16000, init="random", seed=3)
    for p, q in zip(one, two):
        np.testing.assert_array_equal(p.waveform, q.waveform)
    assert np.median(_image_snr(images, [p.waveform for p in one])) >= 35.0


def test_three_sources_three_channels():
    files = (PAIRS[0][1], PAIRS[0][2], "solo_instruments/cello-phrase.wav")
    s = _sources(files, 16000)
    mix, images = _mix(s, _unit_columns(np.random.default_rng(5), 3, 3))
    for method, values, floor in (("decorrelation", {}, 25.0), ("ica", {}, 30.0),
                                  ("ica", {"algorithm": "jade"}, 25.0)):
        props = _run(method, mix, 16000, **values)
        assert len(props) == 3
        snr = _image_snr(images, [p.waveform for p in props])
        assert np.median(snr) >= floor, f"{method} {values}: {snr}"
        total = np.sum([p.waveform.astype(np.float64) for p in props], axis=0)
        assert np.max(np.abs(total - mix)) <= 1e-5 * np.max(np.abs(mix))


def test_six_channels_two_sources_reduce_then_project_back():
    s = _sources(PAIRS[0][1:3], 16000)
    rng = np.random.default_rng(6)
    mix, images = _mix(s, _unit_columns(rng, 6, 2))
    # A little independent sensor noise, so the reduction has work to do.
    mix = (mix + 1e-3 * rng.standard_normal(mix.shape)).astype(np.float32)
    for method, values, floor in (("ica", {}, 35.0), ("ica", {"algorithm": "jade"}, 30.0),
                                  ("decorrelation", {}, 25.0)):
        props = _run(method, mix, 16000, sources=2, **values)
        assert len(props) == 2
        assert all(p.waveform.shape == (6, mix.shape[1]) for p in props)
        snr = _image_snr(images, [p.waveform for p in props])
        assert np.median(snr) >= floor, f"{method} {values}: {snr}"


def test_subsampled_estimation_of_a_longer_file():
    # max_samples below the length: the unmixing is estimated on evenly
    # spread segments and applied to the whole file.
    s = _sources(PAIRS[1][1:3], 16000)
    mix, images = _mix(s, _unit_columns(np.random.default_rng(9), 2, 2))
    for method in ("ica", "decorrelation"):
        props = _run(method, mix, 16000, max_samples=100_000)
        assert np.median(_image_snr(images, [p.waveform for p in props])) >= 25.0


def test_spread_segments_cover_the_file_without_overlap():
    segs = lin.spread_segments(1_000_000, 100_000, 4096)
    assert sum(b - a for a, b in segs) <= 100_000
    assert segs[0][0] == 0 and segs[-1][1] == 1_000_000
    assert all(b0 <= a1 for (_, b0), (a1, _) in zip(segs, segs[1:]))
    assert lin.spread_segments(1000, 5000, 4096) == [(0, 1000)]


def test_lagged_covariances_match_direct_computation():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5000)).astype(np.float32)
    x[1] += 0.5 * np.roll(x[0], 3)
    lags = [0, 1, 3, 17]
    covs, mean = lin.lagged_covariances(x, lags, [(0, 5000)], NullContext(), block=700)
    xd = x.astype(np.float64)
    for i, n in enumerate(lags):
        c = xd[:, n:] @ xd[:, :5000 - n].T / (5000 - n) - np.outer(mean, mean)
        np.testing.assert_allclose(covs[i], 0.5 * (c + c.T), atol=1e-10)


@pytest.mark.parametrize("method", ["ica", "decorrelation"])
def test_more_sources_than_channels_is_refused(method):
    mix = np.random.default_rng(0).standard_normal((2, 8000)).astype(np.float32)
    with pytest.raises(ParameterError,
                       match=rf"{method} separates at most as many sources as the mixture "
                             r"has channels \(2\); asked for 3"):
        _run(method, mix, 16000, sources=3)


@pytest.mark.parametrize("method", ["ica", "decorrelation"])
def test_mono_is_refused(method):
    mix = np.random.default_rng(0).standard_normal((1, 8000)).astype(np.float32)
    with pytest.raises(ParameterError, match="at least 2 channels"):
        _run(method, mix, 16000)


@pytest.mark.parametrize("method", ["ica", "decorrelation", "nmf", "ilrma"])
@pytest.mark.parametrize("level", [0.0, 1e-40])
def test_silence_is_refused(method, level):
    """Zeros, and float32 subnormals (whose squares are zero: nmf and ilrma made
    NaN layers of them), are silence."""
    x = level * np.sign(np.random.default_rng(0).standard_normal((2, 8000)))
    with pytest.raises(ParameterError, match="the input is silent"):
        _run(method, x.astype(np.float32), 16000)


@pytest.mark.parametrize("method", ["adress", "decorrelation", "duet", "hpss", "ica", "ilrma",
                                    "nmf", "projet", "repet"])
def test_one_nan_sample_is_refused_by_name(method):
    """One NaN in a stereo second is named, whatever the method (ADRess once
    failed with a ValueError on it, DUET, HPSS and PROJET made NaN layers, REPET
    called it too short)."""
    x = (0.1 * np.random.default_rng(0).standard_normal((2, 16000))).astype(np.float32)
    x[0, 5000] = np.nan
    with pytest.raises(ParameterError, match="holds NaN or infinite samples"):
        _run(method, x, 16000)


def _stereo_second() -> np.ndarray:
    return (0.1 * np.random.default_rng(0).standard_normal((2, 16000))).astype(np.float32)


MALFORMED = [
    ("mono 1-D", lambda x: x[0], r"must be \(channels, samples\) audio; got shape \(16000,\) "
                                 r"\(mono: pass x\[None\]\)"),
    ("3-D", lambda x: x[None], r"must be \(channels, samples\) audio; got shape \(1, 2, 16000\)"),
    ("a list", lambda x: x.tolist(), "must be a NumPy array .* got list"),
    ("complex", lambda x: x.astype(np.complex64), "real-valued samples; got complex64"),
    ("no samples", lambda x: x[:, :0], "holds no samples"),
    ("(samples, channels)", lambda x: np.ascontiguousarray(x.T),
     r"16000 channels of 2 samples looks like \(samples, channels\); pass its transpose"),
    ("far too loud", lambda x: x * np.float32(1e12),
     r"samples reach [0-9.]+e\+11: audio is expected within about ±1"),
]


@pytest.mark.parametrize("method", ["adress", "decorrelation", "duet", "hpss", "ica", "ilrma",
                                    "nmf", "projet", "repet"])
@pytest.mark.parametrize("case", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_input_is_refused_by_name(method, case):
    """Arrays that are not (channels, samples) real audio are named before any work:
    a 1-D array or a list once raised IndexError or AttributeError deep inside, a
    (samples, channels) array was separated as thousands of two-sample channels,
    complex input lost its imaginary part, and a peak of 1e18 gave NaN layers."""
    _, make, says = case
    with pytest.raises(ParameterError, match=says):
        _run(method, make(_stereo_second()), 16000)


@pytest.mark.parametrize("method", ["nmf", "hpss", "duet"])
@pytest.mark.parametrize("sr", [0, -16000])
def test_a_sample_rate_that_is_not_positive_is_refused(method, sr):
    with pytest.raises(ParameterError, match="sample rate must be a positive number of Hz"):
        _run(method, _stereo_second(), sr)


@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_the_loudest_level_taken_gives_finite_nmf_layers(beta):
    """Just under the input's limit (above 32-bit PCM's range), the float32 fit stays
    finite; β = 2 overflowed first, near 6e13, 6000 times higher."""
    x = _stereo_second()
    x *= np.float32(0.99 * base.MAX_PEAK / np.abs(x).max())
    props = _run("nmf", x, 16000, beta=beta, max_iter=20)
    masks = np.stack([p.mask for p in props])
    assert np.isfinite(masks).all()
    np.testing.assert_allclose(masks.sum(0), 1.0, atol=1e-4)


@pytest.mark.parametrize("method", ["ica", "decorrelation"])
def test_identical_channels_name_the_rank(method):
    x = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    with pytest.raises(ParameterError, match="span only 1 independent"):
        _run(method, np.stack([x, x]), 16000)


@pytest.mark.parametrize("method", ["ica", "decorrelation"])
def test_cancel_raises_cancelled(method):
    event = threading.Event()
    event.set()
    mix = np.random.default_rng(0).standard_normal((2, 8000)).astype(np.float32)
    with pytest.raises(Cancelled):
        _run(method, mix, 16000, ctx=JobContext(cancel_event=event))


def test_progress_is_reported_and_reaches_the_end():
    seen = []
    ctx = JobContext(on_progress=seen.append, min_interval_s=0.0)
    s = _sources(PAIRS[0][1:3], 16000)
    mix, _ = _mix(s, _unit_columns(np.random.default_rng(1), 2, 2))
    for method in ("ica", "decorrelation"):
        seen.clear()
        _run(method, mix, 16000, ctx=ctx)
        fractions = [p.fraction for p in seen]
        assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)


def test_params_are_declared_for_the_front_ends():
    dec = get_method("decorrelation")
    names = [s.name for s in param_specs(dec.Params)]
    assert "sources" in names and "lags" in names
    p = make_params(dec.Params, strings={"lags": "0,1,2:5", "sources": "2"})
    assert p.lags == (0, 1, 2, 3, 4) and p.sources == 2
    ica = get_method("ica")
    specs = {s.name: s for s in param_specs(ica.Params)}
    assert specs["algorithm"].choices == ("fastica", "jade")
    assert set(specs["nonlinearity"].choices) == {"tanh", "cube", "exp"}
    assert specs["seed"].type == "int"
    with pytest.raises(ParameterError):
        make_params(ica.Params, strings={"algorithm": "pca"})


def test_default_lags_follow_the_sample_rate():
    from demixstudio.separation.decorrelation import default_lags

    for sr in (8000, 16000, 44100, 96000):
        lags = default_lags(sr)
        assert lags[0] == 0 and lags[1] == 1 and list(lags) == sorted(set(lags))
        assert lags[-1] == round(0.025 * sr)
        assert len(lags) >= 20


def test_decorrelation_needs_two_lags():
    mix = np.random.default_rng(0).standard_normal((2, 8000)).astype(np.float32)
    with pytest.raises(ParameterError, match="at least 2 distinct lags"):
        _run("decorrelation", mix, 16000, lags=(5,))


def test_alternatives_where_tanh_fastica_is_fooled():
    # Vibraphone note + frame drum, 3 s: their energy envelopes overlap, and on
    # this sample the tanh contrast is larger at a wrong rotation, where
    # symmetric FastICA with tanh converges (ours and scikit-learn's alike,
    # ~4 dB). JADE and the exp nonlinearity (the default) separate it.
    s = _sources(("solo_instruments/vibraphone-C6.wav", "solo_instruments/bendir.wav"), 44100)
    mix, images = _mix(s, _unit_columns(np.random.default_rng(3), 2, 2))
    for values in ({"algorithm": "jade"}, {}):
        props = _run("ica", mix, 44100, **values)
        assert np.median(_image_snr(images, [p.waveform for p in props])) >= 30.0, values
    props = _run("ica", mix, 44100)
    assert props[0].extra["converged"] and props[0].extra["start"] == "jade"


@pytest.mark.parametrize("method", ["ica", "decorrelation"])
def test_non_finite_input_is_refused(method):
    mix = np.random.default_rng(0).standard_normal((2, 8000)).astype(np.float32)
    mix[1, 100] = np.nan
    with pytest.raises(ParameterError, match="NaN"):
        _run(method, mix, 16000)


def test_short_input_with_derived_lags():
    # 50 ms at 44.1 kHz is shorter than 4x the longest default lag: the
    # derived lag set shortens instead of refusing.
    rng = np.random.default_rng(0)
    s = rng.laplace(size=(2, 2205))
    s[1] = np.convolve(s[1], np.ones(4) / 4, mode="same")  # a different spectrum
    mix, images = _mix(s, _unit_columns(rng, 2, 2))
    props = _run("decorrelation", mix, 44100)
    assert len(props) == 2 and props[0].waveform.shape == mix.shape
    assert max(props[0].extra["lags"]) < 2205 // 4


def test_decorrelate_2x2_solves_exact_lagged_covariances():
    # C_n = A D_n Aᵀ with diagonal D_n: the least-squares solution has zero
    # residual and W A is diagonal (up to order).
    from demixstudio.separation.decorrelation import decorrelate_2x2

    rng = np.random.default_rng(4)
    a = _unit_columns(rng, 2, 2)
    d = np.stack([np.diag(v) for v in rng.uniform(0.1, 1.0, size=(6, 2))])
    covs = np.einsum("ik,nkl,jl->nij", a, d, a)
    w = decorrelate_2x2(covs)
    g = w @ a
    g = g if abs(g[0, 0]) > abs(g[0, 1]) else g[::-1]
    assert abs(g[0, 1]) < 1e-10 * abs(g[0, 0]) and abs(g[1, 0]) < 1e-10 * abs(g[1, 1])


def test_decorrelate_2x2_with_many_lags_in_bounded_memory():
    """Thousands of lags (the form lets a user give 4096): the exact solution, with
    memory linear in the number of lags. Its profile once built a (grid, lags, lags)
    array, 23 GB for 2000 lags, which took the editor's machine down."""
    import tracemalloc

    from demixstudio.separation.decorrelation import decorrelate_2x2

    rng = np.random.default_rng(5)
    a = _unit_columns(rng, 2, 2)
    d = np.stack([np.diag(v) for v in rng.uniform(0.1, 1.0, size=(1500, 2))])
    covs = np.einsum("ik,nkl,jl->nij", a, d, a)
    tracemalloc.start()
    try:
        w = decorrelate_2x2(covs)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200 * 2**20, f"{peak / 2**20:.0f} MB"  # the (G, L, L) array: 13 GB
    g = w @ a
    g = g if abs(g[0, 0]) > abs(g[0, 1]) else g[::-1]
    assert abs(g[0, 1]) < 1e-10 * abs(g[0, 0]) and abs(g[1, 0]) < 1e-10 * abs(g[1, 1])


def test_joint_diagonalize_recovers_an_exact_rotation():
    rng = np.random.default_rng(11)
    v = lin.random_orthogonal(5, 2)
    mats = np.einsum("ij,nj,kj->nik", v, rng.standard_normal((8, 5)), v)
    found = lin.joint_diagonalize(mats, NullContext())
    g = np.abs(found.T @ v)  # a permutation matrix when exact
    np.testing.assert_allclose(np.sort(g, axis=1)[:, -1], 1.0, atol=1e-10)
    np.testing.assert_allclose(np.sort(g, axis=1)[:, :-1], 0.0, atol=1e-8)
