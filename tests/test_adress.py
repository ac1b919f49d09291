"""ADRess on constant-power panned stereo mixtures of real recordings.

The protocol of FitzGerald, Liutkus & Badeau (2016): 3–4 recordings panned
at equal angular spacing around the centre (tests/spatial_mixtures.py).
Scores are BSS Eval v4 SDR of the stereo source images.
"""

from __future__ import annotations

import functools
import tracemalloc

import numpy as np
import pytest
from spatial_mixtures import MUSIC_SET, load_sources, pan_angles, pan_mixture

from demixstudio.audio.stft import AudioStft, StftConfig, apply_mask, istft, stft
from demixstudio.errors import ParameterError
from demixstudio.jobs.context import NullContext
from demixstudio.metrics import bss_eval
from demixstudio.separation import Hints, get_method, make_params, mwf
from demixstudio.separation.adress import adress_masks, azimugram, bin_nulls

SR = 16000
SECONDS = 4.0


@functools.lru_cache(maxsize=None)
def _sources():
    return tuple(load_sources(MUSIC_SET, SR, SECONDS))


def _run(mix, **values):
    m = get_method("adress")
    return m.separate(mix, SR, make_params(m.Params, values), Hints(), NullContext())


def _sdr(images, mix, props):
    cfg = StftConfig.for_rate(SR)
    est = np.stack([p.waveform if p.waveform is not None else apply_mask(mix, p.mask, cfg)
                    for p in props])
    return bss_eval(images, est, SR, device="cpu").sdr


@pytest.mark.parametrize("nb,spacing,floor", [(3, 30.0, 8.0), (4, 30.0, 8.0), (3, 10.0, 8.0)])
def test_panned_music_reaches_the_acceptance_sdr(nb, spacing, floor):
    mix, images = pan_mixture(_sources()[:nb], spacing)
    props = _run(mix, sources=0)
    assert len(props) == nb, [p.extra["pan"] for p in props]
    sdr = _sdr(images, mix, props)
    assert np.median(sdr) >= floor, sdr


def test_positions_found_match_the_pan_law_and_can_be_given():
    nb, spacing = 3, 20.0
    mix, images = pan_mixture(_sources()[:nb], spacing)
    theta = np.deg2rad(pan_angles(nb, spacing))
    # ADRess's linear gain scale: p = tan θ − 1 left of centre, 1 − cot θ right of it.
    truth = np.where(theta <= np.pi / 4, np.tan(theta) - 1, 1 - 1 / np.tan(theta))
    props = _run(mix, sources=nb)
    found = np.array([p.extra["pan"] for p in props])
    np.testing.assert_allclose(found, truth, atol=0.02)
    given = _run(mix, pans=tuple(truth))
    assert [p.extra["pan"] for p in given] == pytest.approx(list(truth))
    assert props[0].extra["azimugram"].shape[1] == 2 * 100 + 1
    # Binary masks with no subspace limit partition the bins.
    binary = _run(mix, sources=nb, mask="binary")
    np.testing.assert_array_equal(np.sum([p.mask for p in binary], axis=0), 1.0)


def test_closed_form_nulls_match_a_scan_of_the_plane():
    rng = np.random.default_rng(1)
    shape = (64, 50)
    xl = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    # Mostly panned bins (right = g × left plus a little of something else).
    g = rng.uniform(0.0, 2.0, shape)
    xr = (g * xl + 0.05 * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)))
    xr = xr.astype(np.complex64)
    beta = 100
    az, height, peak, _ = bin_nulls(xl, xr, beta)
    gains = np.arange(beta + 1) / beta
    left = np.abs(xr[None] - gains[:, None, None] * xl[None])     # |R − g L|, index i
    right = np.abs(xl[None] - gains[:, None, None] * xr[None])    # |L − g R|, index 2β − i
    plane = np.concatenate([left, right[::-1][1:]], axis=0)        # (2β + 1, F, b)
    scan_az = plane.argmin(axis=0)
    assert np.max(np.abs(az - scan_az)) <= 1.0
    # Height = max − min on the side of the null, as the paper defines it.
    side = np.where(az < beta, 0, 1)  # at the very centre both sides agree within the step
    side_max = np.where(side == 0, left.max(axis=0), right.max(axis=0))
    np.testing.assert_allclose(peak, side_max, rtol=1e-4, atol=1e-5)
    # The closed form finds the exact minimum; the scan's is off by at most
    # half a gain step times the scaled channel's magnitude (Lipschitz in g).
    step_err = 0.51 / beta * np.maximum(np.abs(xl), np.abs(xr)) + 1e-5
    off_centre = np.abs(az - beta) > 2  # at the centre the two sides meet; either is right
    err = np.abs(height - (side_max - plane.min(axis=0)))
    assert np.all(err[off_centre] <= step_err[off_centre])


def test_refuses_mono_and_out_of_range_pans():
    m = get_method("adress")
    with pytest.raises(ParameterError, match="channels"):
        m.separate(np.zeros((1, 8000), np.float32), SR, m.Params(), Hints(), NullContext())
    with pytest.raises(ParameterError, match="pans"):
        make_params(m.Params, strings={"pans": "-0.5,1.5"})


def test_streamed_path_equals_the_whole_array_path(monkeypatch):
    """separate() reads the STFT block by block; the whole arrays give the same layers."""
    mix, _ = pan_mixture(_sources()[:3], 20.0)
    cfg = StftConfig.for_rate(SR)
    spec, lazy = stft(mix, cfg), AudioStft(mix, cfg)
    ctx = NullContext()
    np.testing.assert_allclose(azimugram(lazy, 100, ctx, block=60),
                               azimugram(spec, 100, ctx, block=10_000), rtol=1e-9)
    for kind in ("adress", "binary", "soft"):
        props = _run(mix, sources=3, mask=kind, mwf=0)
        positions = np.array([(p.extra["pan"] + 1.0) * 100 for p in props])
        whole = adress_masks(spec, positions, 100, width=0.0, kind=kind, softness=10.0, ctx=ctx)
        np.testing.assert_array_equal(
            adress_masks(lazy, positions, 100, width=0.0, kind=kind, softness=10.0, ctx=ctx,
                         block=77), whole)
        np.testing.assert_allclose(np.stack([p.mask for p in props]), whole, atol=1e-6)
    # With the post-filter, in blocks that do not divide the frames; both on the CPU
    # (on a GPU, products batched differently round differently, by up to ~2e-5 of the peak).
    monkeypatch.setattr(mwf, "FRAMES_PER_BLOCK", 100)
    props = _run(mix, sources=3, mask="soft", mwf=2, device="cpu")
    images = mwf.wiener_from_masks(spec, whole, iterations=2, frames_per_block=10_000,
                                   device="cpu")
    ref = np.stack([istft(y, mix.shape[1], cfg) for y in images])
    np.testing.assert_allclose(np.stack([p.waveform for p in props]), ref, rtol=0,
                               atol=1e-5 * np.abs(mix).max())


def test_a_minute_of_stereo_never_holds_a_full_size_stft():
    """tracemalloc peak of numpy's allocations during separate() on 60 s of stereo.

    Three sources with the post-filter: PSDs (3, F, T) float32 ≈ 3.2x the
    input and three output waveforms (3x), plus fixed-size block temporaries.
    The whole-array path (STFT 4x, images 12x) peaked at 28x the input here.
    """
    mix, _ = pan_mixture(_sources()[:3], 20.0)
    mix = np.tile(mix, (1, 15))  # 60 s
    tracemalloc.start()
    try:
        props = _run(mix, sources=3, mask="soft", mwf=2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(props) == 3 and props[0].waveform.shape == mix.shape
    assert peak <= 11 * mix.nbytes, peak / mix.nbytes
