"""Known-answer tests of ``hpss`` (median-filter harmonic/percussive separation).

Real mixtures: the tonal stems of a song (piano + bass, or bass + guitars)
against its drum stem, summed to mono at 16 kHz. Scores are the plain SNR
``10 log10(‖s‖² / ‖s − ŝ‖²)`` of each layer against its true source.
"""

from __future__ import annotations

import functools
from math import gcd

import numpy as np
import pytest
import scipy.ndimage as ndi
from conftest import shared

from demixstudio.audio.stft import StftConfig, apply_mask, stft
from demixstudio.errors import Cancelled, ParameterError
from demixstudio.jobs.context import JobContext, NullContext
from demixstudio.separation import Hints, get_method, make_params
from demixstudio.separation.hpss import hpss_masks, magnitude_frames, odd_length, running_median
from demixstudio.session.session import Session

SR = 16000

# (label, tonal stems, percussive stems, harmonic-layer SNR floor, percussive gain floor)
CASES = [
    ("bearlin: piano+bass / drums", ("bearlin_roads/piano.wav", "bearlin_roads/bass.wav"),
     ("bearlin_roads/drums.wav",), 7.0, 3.0),
    ("falcon69: bass+guitars / drums", ("easton_ellises_falcon69/bass.wav",
                                        "easton_ellises_falcon69/other.wav"),
     ("easton_ellises_falcon69/drums.wav",), 3.5, 3.0),
]


@functools.lru_cache(maxsize=None)
def _load(rel: str, seconds: float = 8.0) -> np.ndarray:
    import soundfile as sf
    from scipy.signal import resample_poly

    x, rate = sf.read(str(shared(rel)), dtype="float64", always_2d=True)
    x = x.mean(axis=1)
    g = gcd(rate, SR)
    return resample_poly(x, SR // g, rate // g)[:int(seconds * SR)]


def _snr(ref: np.ndarray, est: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref ** 2) / np.sum((ref - est) ** 2)))


def _run(mix: np.ndarray, ctx=None, **values):
    m = get_method("hpss")
    return m.separate(mix, SR, make_params(m.Params, values), Hints(), ctx or NullContext())


def _median_of_symmetric_extension(x, k, axis):
    """The definition, by brute force: each window of the half-sample symmetric
    extension of ``x`` along ``axis`` (repeated as often as a long window needs)."""
    pad = [(0, 0)] * x.ndim
    pad[axis] = (k // 2, k // 2)
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(x, pad, mode="symmetric"), k,
                                                       axis=axis)
    return np.median(windows, axis=-1).astype(np.float32)


@pytest.mark.parametrize("k", [3, 5, 13, 17, 31, 101, 103, 431])
def test_running_median_is_the_exact_median(k, rng):
    x = rng.random((2, 40, 57)).astype(np.float32)
    x[0, 3, :] = 0.5  # ties
    for axis in (1, 2):
        np.testing.assert_array_equal(running_median(x, k, axis),
                                      _median_of_symmetric_extension(x, k, axis))
        if k <= x.shape[axis]:  # ndimage agrees (not always for 10× longer windows)
            size = [1, 1, 1]
            size[axis] = k
            np.testing.assert_array_equal(running_median(x, k, axis),
                                          ndi.median_filter(x, tuple(size)))
    # Windows longer than the signal still agree (the edges keep reflecting).
    short = rng.random((1, 5, 6)).astype(np.float32)
    np.testing.assert_array_equal(running_median(short, 13, 2),
                                  ndi.median_filter(short, (1, 1, 13)))


def test_running_median_rejects_even_lengths():
    with pytest.raises(ParameterError):
        running_median(np.zeros((2, 8), np.float32), 4, 1)


def test_block_magnitudes_match_the_full_stft(rng):
    x = rng.standard_normal((2, 12345)).astype(np.float32)
    cfg = StftConfig.for_rate(SR)
    full = np.abs(stft(x, cfg))
    nfr = full.shape[2]
    for t0, t1 in ((0, 7), (5, 30), (nfr - 9, nfr), (0, nfr)):
        np.testing.assert_allclose(magnitude_frames(x, cfg, t0, t1), full[:, :, t0:t1],
                                   rtol=1e-5, atol=1e-4)


def test_masks_do_not_depend_on_the_block_size(rng):
    x = rng.standard_normal((1, 3 * SR)).astype(np.float32)
    a = hpss_masks(x, SR, NullContext(), harmonic_frames=13, percussive_bins=33, block=256)
    b = hpss_masks(x, SR, NullContext(), harmonic_frames=13, percussive_bins=33, block=37)
    np.testing.assert_allclose(a[0], b[0], atol=1e-6)
    np.testing.assert_allclose(a[1], b[1], atol=1e-6)


@pytest.mark.parametrize("case", range(len(CASES)), ids=[c[0] for c in CASES])
def test_real_songs_split_tones_from_drums(case):
    label, tonal, perc, h_floor, p_gain = CASES[case]
    h = sum(_load(f) for f in tonal)
    p = sum(_load(f) for f in perc)
    mix = (h + p).astype(np.float32)[None]
    props = _run(mix)
    assert [x.name for x in props] == ["harmonic", "percussive"]
    cfg = StftConfig.for_rate(SR)
    est = [apply_mask(mix, x.mask, cfg)[0] for x in props]
    h_snr, p_snr = _snr(h, est[0]), _snr(p, est[1])
    assert h_snr >= h_floor, f"{label}: harmonic SNR {h_snr:.2f} dB"
    # The percussive layer is much closer to the drums than the mixture is.
    assert p_snr - _snr(p, mix[0]) >= p_gain, f"{label}: percussive SNR {p_snr:.2f} dB"
    total = est[0].astype(np.float64) + est[1]
    assert np.max(np.abs(total - mix[0])) <= 1e-5 * np.max(np.abs(mix))


def test_margin_adds_a_noise_layer_and_the_books_balance():
    mix = (_load(CASES[0][1][0]) + _load(CASES[0][2][0])).astype(np.float32)[None, :4 * SR]
    plain = _run(mix)
    wide = _run(mix, margin=3.0)
    assert [x.name for x in wide] == ["harmonic", "percussive", "noise"]
    for x in wide:
        assert x.mask.dtype == np.float32 and x.mask.min() >= 0 and x.mask.max() <= 1
    total = sum(x.mask.astype(np.float64) for x in wide)
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    # A margin only ever takes bins away from the two main layers.
    assert np.all(wide[0].mask <= plain[0].mask + 1e-6)
    assert np.all(wide[1].mask <= plain[1].mask + 1e-6)
    assert wide[2].mask.mean() > 0.1
    # Through the session: with every layer at unity the layers sum to the mixture.
    s = Session(mix, SR, name="m")
    s.run_method("hpss", make_params(get_method("hpss").Params, {"margin": 3.0}))
    assert [x.name for x in s.layers][:3] == ["harmonic", "percussive", "noise"]
    assert s.balance_error() < 1e-5


def test_matches_librosa_on_the_same_spectrogram():
    import librosa  # a test extra (pyproject): the peer implementation
    mix = (_load(CASES[0][1][0]) + _load(CASES[0][2][0])).astype(np.float32)[None, :4 * SR]
    cfg = StftConfig.for_rate(SR)
    kt, kf = odd_length(0.2, cfg.hop / SR), odd_length(500.0, SR / cfg.n_fft)
    for margin in (1.0, 2.0):
        ours = hpss_masks(mix, SR, NullContext(), harmonic_frames=kt, percussive_bins=kf,
                          margin=margin, cfg=cfg)
        theirs = librosa.decompose.hpss(np.abs(stft(mix, cfg)), kernel_size=(kt, kf), mask=True,
                                        margin=margin, power=2.0)
        np.testing.assert_allclose(ours[0], theirs[0], atol=2e-4)
        np.testing.assert_allclose(ours[1], theirs[1], atol=2e-4)


def test_stereo_masks_per_channel_and_bad_values():
    mix = np.stack([_load(CASES[0][1][0])[:2 * SR], _load(CASES[0][2][0])[:2 * SR]]).astype(np.float32)
    props = _run(mix)
    assert props[0].mask.shape == (2, StftConfig.for_rate(SR).bins,
                                   StftConfig.for_rate(SR).frames(2 * SR))
    # Channel 0 is tonal, channel 1 drums: the harmonic layer takes most of
    # the first channel's energy and less of the second's.
    power = np.abs(stft(mix, StftConfig.for_rate(SR))) ** 2
    share = (props[0].mask * power).sum(axis=(1, 2)) / power.sum(axis=(1, 2))
    assert share[0] > 0.8 and share[1] < share[0] - 0.2, share
    m = get_method("hpss")
    with pytest.raises(ParameterError):
        make_params(m.Params, strings={"margin": "0.5"})
    with pytest.raises(ParameterError):
        make_params(m.Params, strings={"harmonic_s": "abc"})


def test_cancel_is_honoured():
    mix = np.random.default_rng(0).standard_normal((1, 5 * SR)).astype(np.float32)
    ctx = JobContext()
    ctx.cancel()
    with pytest.raises(Cancelled):
        _run(mix, ctx)
