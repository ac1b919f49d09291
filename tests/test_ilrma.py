"""Known-answer tests of ``ilrma`` (determined BSS with NMF source models).

Two clean speech recordings (SiSEC 2008 dev1, ``../shared/audio``) are mixed
into two channels, instantaneously (a real 2×2 matrix) and anechoically
(attenuation plus fractional inter-channel delays of ≤ 3 samples), with
``tests/spatial_mixtures.py``. The estimated stereo images are scored with
BSS Eval v4 SDR against the true images.
"""

from __future__ import annotations

import functools
import threading
import tracemalloc

import numpy as np
import pytest
import spatial_mixtures as sm

from demixstudio.errors import Cancelled, ParameterError
from demixstudio.jobs.context import JobContext, NullContext
from demixstudio.metrics import bss_eval
from demixstudio.separation import Hints, get_method, make_params

SR = 16000
SECONDS = 4.0


@functools.lru_cache(maxsize=None)
def speech():
    return tuple(sm.load_sources(sm.SPEECH_SET, SR, SECONDS))


def cases():
    s = speech()
    return [
        ("instantaneous f1+m2", *sm.instantaneous_mixture([s[0], s[1]], [[1.0, 0.6], [0.5, 1.0]])),
        ("instantaneous f3+m4", *sm.instantaneous_mixture([s[2], s[3]], [[0.9, 0.8], [0.3, 1.0]])),
        ("anechoic f1+m2", *sm.anechoic_mixture([s[0], s[1]], [[1.0, 0.7], [0.6, 1.0]], [1.5, -2.3])),
        ("anechoic f3+m4", *sm.anechoic_mixture([s[2], s[3]], [[1.0, 0.4], [0.8, 1.0]], [-3.0, 2.0])),
    ]


def run(mix, **values):
    m = get_method("ilrma")
    props = m.separate(mix, SR, make_params(m.Params, values), Hints(), NullContext())
    return np.stack([p.waveform for p in props])


def test_ilrma_separates_instantaneous_and_anechoic_speech():
    medians = {}
    for label, mix, imgs in cases():
        est = run(mix)
        assert est.shape == imgs.shape and est.dtype == np.float32
        # Projection back: the images add up to the mixture.
        np.testing.assert_allclose(est.sum(0), mix, atol=1e-4)
        medians[label] = float(np.median(bss_eval(imgs, est, SR).sdr))
    print("ilrma median SDR per case:", {k: round(v, 1) for k, v in medians.items()})
    values = np.array(list(medians.values()))
    assert np.median(values) >= 25.0, medians
    assert values.min() >= 15.0, medians


def test_ilrma_three_channels():
    s = speech()
    a = np.array([[1.0, 0.5, 0.3], [0.4, 1.0, 0.5], [0.2, 0.6, 1.0]])
    mix, imgs = sm.instantaneous_mixture([x[: SR * 3] for x in s[:3]], a)
    est = run(mix, iterations=60)
    assert est.shape == (3, 3, mix.shape[1])
    sdr = bss_eval(imgs, est, SR).sdr
    print("ilrma 3×3 SDR:", np.round(sdr, 1))
    assert np.median(sdr) >= 15.0, sdr


def test_ilrma_is_seeded():
    _, mix, _ = cases()[0]
    a = run(mix[:, : SR * 2], iterations=5, seed=3)
    b = run(mix[:, : SR * 2], iterations=5, seed=3)
    np.testing.assert_array_equal(a, b)


def test_ilrma_does_not_depend_on_the_level():
    """The same mixture 40 dB quieter gives the same stems, 40 dB quieter: the
    model's floors act on the mixture scaled to unit power (they once acted on
    the raw level before the first normalisation, and a quiet file got other stems)."""
    _, mix, _ = cases()[0]
    mix = mix[:, : SR * 2]
    a = run(mix, iterations=15)
    b = run(mix * np.float32(0.01), iterations=15) / np.float32(0.01)
    assert np.sqrt(np.mean((a - b) ** 2)) < 1e-3 * np.sqrt(np.mean(a ** 2))


def test_ilrma_rejects_mono_and_bad_window():
    m = get_method("ilrma")
    with pytest.raises(ParameterError, match="channels"):
        m.separate(np.zeros((1, 4000), np.float32), SR, m.Params(), Hints(), NullContext())
    with pytest.raises(ParameterError, match="n_fft"):
        noise = np.random.default_rng(0).standard_normal((2, 4000)).astype(np.float32)
        m.separate(noise, SR, m.Params(n_fft=1022), Hints(), NullContext())


def test_ilrma_reports_progress_and_cancels():
    _, mix, _ = cases()[0]
    m = get_method("ilrma")
    reports = []
    cancel = threading.Event()

    def on_progress(p):
        reports.append(p.fraction)
        if p.fraction > 0.3:
            cancel.set()

    ctx = JobContext(on_progress=on_progress, cancel_event=cancel, min_interval_s=0.0)
    with pytest.raises(Cancelled):
        m.separate(mix, SR, m.Params(iterations=200), Hints(), ctx)
    assert len(reports) > 5 and reports == sorted(reports)


def test_ilrma_fits_on_stretches_of_a_long_recording_and_streams_the_images():
    """On a recording longer than ``fit_seconds`` the demixing matrices come from
    evenly spread stretches of it and are applied to all of it block by block:
    still a clean separation, images that sum to the mixture, and no full-size
    STFT or float64 copy of the signal (the images themselves are the bulk)."""
    s = sm.load_sources(("speech_librispeech/198-209-0000.wav",
                         "speech_librispeech/3436-172162-0000.wav"), SR, 12.0)
    mix, imgs = sm.anechoic_mixture(s, [[1.0, 0.7], [0.6, 1.0]], [1.5, -2.3])
    est = run(mix, fit_seconds=3.0)
    np.testing.assert_allclose(est.sum(0), mix, atol=1e-4)
    sdr = bss_eval(imgs, est, SR).sdr
    print("ilrma fitted on 3 of 12 s:", np.round(sdr, 1))
    assert np.median(sdr) >= 25.0, sdr
    # Memory on 2 minutes (the same mixture ten times), fitted on 6 s.
    long_mix = np.tile(mix, (1, 10))
    m = get_method("ilrma")
    tracemalloc.start()
    try:
        props = m.separate(long_mix, SR, make_params(m.Params, {"fit_seconds": 6.0,
                                                                "iterations": 5}),
                           Hints(), NullContext())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [p.waveform.shape for p in props] == [long_mix.shape] * 2
    # Two images (2× the input) plus a block's work; the whole STFT alone would be 4×.
    assert peak < 4.0 * long_mix.nbytes, peak / long_mix.nbytes


@pytest.mark.parametrize("case", ["dual mono", "one silent channel"])
def test_ilrma_refuses_channels_with_nothing_spatial(case):
    """Identical channels, or one silent, span one direction at every frequency:
    the weighted covariances are singular (ILRMA divided by their zero
    determinant and made NaN stems). It refuses, as ica and decorrelation do."""
    s = speech()[0][: SR * 2]
    mix = np.stack([s, s if case == "dual mono" else np.zeros_like(s)])
    with pytest.raises(ParameterError, match="span only 1 independent direction.*nothing spatial"):
        run(mix, iterations=5)


@pytest.mark.parametrize("name", ["ilrma", "ica", "decorrelation"])
def test_constant_input_is_refused_as_constant(name):
    """A DC offset is not silence: the message says the input does not vary
    (ica and decorrelation said "every channel is zero"; ilrma made NaN stems)."""
    m = get_method(name)
    dc = np.stack([np.full(SR, 0.25, np.float32), np.full(SR, -0.1, np.float32)])
    with pytest.raises(ParameterError, match="no varying signal: every channel is constant"):
        m.separate(dc, SR, m.Params(), Hints(), NullContext())


def test_ilrma_nearly_degenerate_input_gives_finite_stems():
    """Channels that are almost copies of each other are not refused, and the
    diagonal loading keeps every IP step finite: the second channel the first
    plus noise 80 dB down, and a 16-bit dual-mono file whose channels differ by
    one LSB in 0.1 % of the samples (which made NaN stems before the loading)."""
    s = speech()[0][: SR * 3].astype(np.float64)
    rng = np.random.default_rng(1)
    noisy = s + 1e-4 * np.sqrt(np.mean(s ** 2)) * rng.standard_normal(s.size)
    q = np.round(s * 32767)
    lsb = (q + (rng.random(s.size) < 0.001)) / 32767
    for label, mix in [("-80 dB noise", np.stack([s, noisy])),
                       ("one-LSB differences", np.stack([q / 32767, lsb]))]:
        mix = mix.astype(np.float32)
        est = run(mix, iterations=30)
        assert np.isfinite(est).all(), label
        np.testing.assert_allclose(est.sum(0), mix, atol=1e-3, err_msg=label)


def test_ilrma_frequencies_without_energy_or_with_proportional_channels_stay_finite():
    """Bands of the STFT that hold nothing, or where one channel is a scaled copy
    of the other, have singular covariances beside full-rank ones elsewhere; the
    demixing matrices stay finite there (before the loading: NaN)."""
    from demixstudio.audio.stft import StftConfig, stft
    from demixstudio.separation.ilrma import ilrma

    _, mix, _ = cases()[0]
    X = stft(mix[:, : SR * 2], StftConfig.for_rate(SR))
    X[:, 40:60] = 0
    X[1, 100:150] = 0.3 * X[0, 100:150]
    _, W = ilrma(X, iterations=20, ctx=NullContext())
    assert np.isfinite(W).all()
    assert np.isfinite(np.linalg.cond(W)).all()
