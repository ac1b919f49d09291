"""The multichannel Wiener post-filter (EM on a local Gaussian model).

Real recordings panned with a constant-power law (tests/spatial_mixtures.py);
the starting estimates are deliberately poor masks, so the post-filter has
work to do. Scores are image SNRs of the stereo source images.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from spatial_mixtures import MUSIC_SET, load_sources, pan_mixture

from demixstudio.audio.stft import AudioStft, StftConfig, istft, stft
from demixstudio.errors import ParameterError
from demixstudio.jobs.context import NullContext
from demixstudio.separation import mwf
from demixstudio.separation.mwf import mask_layers, wiener_from_masks, wiener_postfilter

SR = 16000


@functools.lru_cache(maxsize=None)
def _case():
    """Three sources panned 20° apart; the mixture STFT, true images and rough masks."""
    src = load_sources(MUSIC_SET[:3], SR, 3.0)
    mix, images = pan_mixture(src, 20.0)
    cfg = StftConfig.for_rate(SR)
    spec = stft(mix, cfg)
    power = np.stack([np.abs(stft(im, cfg)) ** 2 for im in images]).sum(axis=1)
    # A blurred binary mask: right winner, but 30 % of every bin leaks to the others.
    winner = (power == power.max(axis=0, keepdims=True)).astype(np.float32)
    masks = (0.7 * winner + 0.1)[:, None]
    return mix, images, spec, masks, cfg


def _sdr(images, spec_images, n, cfg):
    """Image SNR per source, 10 log10(‖img‖² / ‖img − est‖²): no distortion
    filter is allowed, so every error of the filter counts (cheaper and
    stricter than BSS Eval's SDR, which the method tests use)."""
    est = np.stack([istft(y, n, cfg) for y in spec_images]).astype(np.float64)
    ref = images.astype(np.float64)
    return 10 * np.log10(np.sum(ref ** 2, axis=(1, 2)) / np.sum((ref - est) ** 2, axis=(1, 2)))


def test_postfilter_improves_rough_masks_and_em_helps():
    mix, images, spec, masks, cfg = _case()
    n = mix.shape[1]
    start = _sdr(images, masks * spec[None], n, cfg)
    one = _sdr(images, wiener_from_masks(spec, masks, iterations=1), n, cfg)
    three = _sdr(images, wiener_from_masks(spec, masks, iterations=3), n, cfg)
    assert np.median(one) >= np.median(start) + 3.0, (start, one)
    assert np.mean(three) >= np.mean(one) + 0.5, (one, three)
    assert np.median(three) >= 14.0, three


def test_posterior_means_sum_to_the_mixture_and_blocks_do_not_matter():
    _, _, spec, masks, _ = _case()
    whole = wiener_from_masks(spec, masks, iterations=2, frames_per_block=10_000)
    blocks = wiener_from_masks(spec, masks, iterations=2, frames_per_block=37)
    assert whole.shape == (3,) + spec.shape and whole.dtype == np.complex64
    err = np.abs(whole.sum(axis=0) - spec).max()
    assert err <= 1e-4 * np.abs(spec).max()
    np.testing.assert_allclose(blocks, whole, rtol=0, atol=1e-4 * np.abs(spec).max())


def test_the_filter_does_not_depend_on_the_level():
    """The same mixture 60 dB quieter gives the same images, 60 dB quieter: the
    PSDs' floor is relative to their mean (an absolute one changed a quiet
    file's DUET layers by up to 7 % of their RMS)."""
    _, _, spec, masks, _ = _case()
    loud = wiener_from_masks(spec, masks, iterations=2)
    quiet = wiener_from_masks(spec * np.float32(1e-3), masks, iterations=2) / np.float32(1e-3)
    err = np.sqrt(np.mean(np.abs(quiet - loud) ** 2)) / np.sqrt(np.mean(np.abs(loud) ** 2))
    assert err < 1e-4, err  # (6e-3 with the absolute floor)


def test_masks_helper_matches_images_and_inplace():
    _, _, spec, masks, _ = _case()
    from_masks = wiener_from_masks(spec, masks, iterations=2)
    imgs = (masks * spec[None]).astype(np.complex64)
    from_images = wiener_postfilter(spec, imgs, iterations=2)
    np.testing.assert_allclose(from_images, from_masks, atol=1e-5 * np.abs(spec).max())
    two_channel = np.repeat(masks, 2, axis=1)
    np.testing.assert_allclose(wiener_from_masks(spec, two_channel, iterations=2), from_masks,
                               atol=1e-5 * np.abs(spec).max())
    out = wiener_postfilter(spec, imgs, iterations=2, inplace=True)
    assert out is imgs
    np.testing.assert_allclose(out, from_masks, atol=1e-5 * np.abs(spec).max())


def test_silent_bins_and_single_source_stay_finite():
    rng = np.random.default_rng(3)
    spec = (rng.standard_normal((2, 65, 40)) + 1j * rng.standard_normal((2, 65, 40)))
    spec = spec.astype(np.complex64)
    spec[:, :, :10] = 0  # silence
    masks = rng.random((2, 1, 65, 40)).astype(np.float32)
    masks[1] = 0  # a source that claims nothing
    out = wiener_from_masks(spec, masks, iterations=3)
    assert np.isfinite(out).all()
    assert np.abs(out[1]).max() <= 1e-3 * np.abs(spec).max()
    single = wiener_from_masks(spec, np.ones((1, 1, 65, 40), np.float32), iterations=2)
    np.testing.assert_allclose(single[0], spec, atol=1e-4 * np.abs(spec).max())


def test_bad_arguments_are_refused():
    spec = np.zeros((2, 9, 5), np.complex64)
    with pytest.raises(ParameterError, match="masks"):
        wiener_from_masks(spec, np.zeros((2, 3, 9, 5), np.float32))
    with pytest.raises(ParameterError, match="shape"):
        wiener_postfilter(spec, np.zeros((2, 2, 8, 5), np.complex64))
    with pytest.raises(ParameterError, match="iterations"):
        wiener_from_masks(spec, np.ones((1, 1, 9, 5), np.float32), iterations=0)
    with pytest.raises(ParameterError, match="complex"):
        wiener_from_masks(spec.real, np.ones((1, 1, 9, 5), np.float32))


def test_mask_layers_stream_images_into_waveforms(monkeypatch):
    """From the audio's STFT block by block and masks by block, to waveforms: same result."""
    mix, _, spec, masks, cfg = _case()
    n = mix.shape[1]
    ref = np.stack([istft(y, n, cfg) for y in wiener_from_masks(spec, masks, iterations=2)])
    monkeypatch.setattr(mwf, "FRAMES_PER_BLOCK", 45)
    kw = {"length": n, "cfg": cfg, "iterations": 2, "device": "cpu", "ctx": NullContext()}
    extras = [{"i": i} for i in range(3)]
    for source, given in [(AudioStft(mix, cfg), lambda t0, t1: masks[:, :, :, t0:t1]),
                          (spec, masks)]:
        layers = mask_layers("test", {}, source, given, extras, **kw)
        assert [x.extra["i"] for x in layers] == [0, 1, 2]
        got = np.stack([x.waveform for x in layers])
        assert got.shape == (3,) + mix.shape and got.dtype == np.float32
        # As in the blocks test above: nearly rank-one covariances make the EM
        # sensitive to the order of the block sums, at the float-rounding level.
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4 * np.abs(mix).max())
    # Without the filter the masks themselves are the layers, so they must be an array.
    kw["iterations"] = 0
    plain = mask_layers("test", {}, AudioStft(mix, cfg), masks, extras, **kw)
    assert plain[1].mask is not None and np.shares_memory(plain[1].mask, masks)
    with pytest.raises(ParameterError, match="array"):
        mask_layers("test", {}, AudioStft(mix, cfg), lambda t0, t1: masks[..., t0:t1], extras,
                    **kw)
