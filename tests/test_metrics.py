"""Tests for demixstudio.metrics: BSS Eval v4 against museval, known answers, SI-SDR.

museval is the reference implementation (``museval.metrics.bss_eval`` with
``framewise_filters=False``). Its package ``__init__`` imports musdb and
stempeg, which refuse to load without ffmpeg, so its self-contained
``metrics.py`` (numpy and scipy only) is loaded from the installed package
directly. Signals are kept to a few seconds: museval takes ~10 s on them.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import torch

from demixstudio.errors import ParameterError
from demixstudio.metrics import BssEvalResult, bss_eval, si_sdr

AUDIO = (Path(__file__).resolve().parents[1] / ".." / "shared" / "audio").resolve()
BEARLIN = AUDIO / "bearlin_roads"
SR = 44100
TOL_DB = 0.05  # agreement required with museval


@pytest.fixture(scope="module")
def museval_metrics():
    """museval's metrics module, loaded without its package __init__."""
    spec = importlib.util.find_spec("museval")
    if spec is None or spec.origin is None:
        pytest.fail("museval is a test dependency: install with ./dev test")
    path = Path(spec.origin).parent / "metrics.py"
    mod_spec = importlib.util.spec_from_file_location("_museval_metrics", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


@pytest.fixture
def rng():
    return np.random.default_rng(20240607)


def load_stems(names, seconds, offset_s=1.0):
    """Real stems from the Bearlin set, (nb_sources, 2, nb_samples) float64."""
    import soundfile as sf

    if not BEARLIN.is_dir():
        pytest.fail(f"test audio not found at {BEARLIN}: the suite needs ../shared beside the repo")
    start, stop = int(offset_s * SR), int((offset_s + seconds) * SR)
    stems = []
    for name in names:
        audio, sr = sf.read(BEARLIN / f"{name}.wav", dtype="float64", always_2d=True)
        assert sr == SR
        stems.append(audio[start:stop].T)
    return np.stack(stems)


def degrade(refs, rng, *, leak=0.15, noise=0.01):
    """Plausible separation output: leakage of the other sources, a short
    filter (spatial/spectral distortion) and white noise (artefacts)."""
    nb_sources = refs.shape[0]
    mixing = np.eye(nb_sources) + leak * rng.random((nb_sources, nb_sources)) * (1 - np.eye(nb_sources))
    est = np.einsum("ij,jcn->icn", mixing, refs)
    est = scipy.signal.lfilter([1.0, 0.3, -0.1, 0.05], [1.0], est, axis=-1)
    return est + noise * rng.standard_normal(est.shape)


def run_museval(module, refs, ests, *, window, hop, compute_permutation, filter_len=512):
    """museval v4 on our (sources, channels, samples) layout."""
    sdr, isr, sir, sar, perm = module.bss_eval(
        refs.transpose(0, 2, 1),
        ests.transpose(0, 2, 1),
        window=window,
        hop=hop,
        compute_permutation=compute_permutation,
        filters_len=filter_len,
        framewise_filters=False,
        bsseval_sources_version=False,
    )
    return {"sdr": sdr, "isr": isr, "sir": sir, "sar": sar, "perm": perm[:, 0]}


def assert_agrees(res: BssEvalResult, ref: dict):
    for name in ("sdr", "isr", "sir", "sar"):
        ours = getattr(res, f"frames_{name}")
        assert ours.shape == ref[name].shape, name
        # equal_nan: silent frames must be NaN in both
        np.testing.assert_allclose(ours, ref[name], rtol=0, atol=TOL_DB, equal_nan=True, err_msg=name)


# ---------------------------------------------------------------------------
# Agreement with museval on real recordings
# ---------------------------------------------------------------------------


def test_agrees_with_museval_and_solves_permutation(museval_metrics, rng):
    refs = load_stems(["vocals", "bass", "drums"], seconds=3.0)
    order = np.array([2, 0, 1])  # estimate i is a degraded reference order[i]
    ests = degrade(refs, rng)[order]

    res = bss_eval(refs, ests, SR, compute_permutation=True, device="cpu")
    ref = run_museval(museval_metrics, refs, ests, window=SR, hop=SR, compute_permutation=True)

    assert_agrees(res, ref)
    np.testing.assert_array_equal(res.permutation, ref["perm"])
    np.testing.assert_array_equal(res.permutation, np.argsort(order))
    for name in ("sdr", "isr", "sir", "sar"):
        np.testing.assert_allclose(
            getattr(res, name), np.nanmedian(ref[name], axis=1), atol=TOL_DB, err_msg=name
        )
    # the estimates are decent: a sanity check on the figures themselves
    assert np.all(res.sdr > 0) and np.all(res.sir > 5)


def test_agrees_with_museval_overlapping_frames_and_silence(museval_metrics, rng):
    refs = load_stems(["piano", "other"], seconds=3.0)
    refs[1, :, int(0.4 * SR) : int(2.2 * SR)] = 0.0  # a silent stretch: NaN frames
    ests = degrade(refs, rng, leak=0.3, noise=0.003)
    ests[1, :, int(0.4 * SR) : int(2.2 * SR)] = 0.0

    window, hop = int(1.5 * SR), int(0.5 * SR)
    res = bss_eval(
        refs, ests, SR, window_s=1.5, hop_s=0.5, filter_len=256, compute_permutation=False, device="cpu"
    )
    ref = run_museval(
        museval_metrics, refs, ests, window=window, hop=hop, compute_permutation=False, filter_len=256
    )

    assert_agrees(res, ref)
    assert res.nb_frames == 4 and res.window == window and res.hop == hop
    np.testing.assert_array_equal(res.frame_starts, np.arange(4) * hop)
    assert np.isnan(res.frames_sdr[:, 1]).all()  # [0.5, 2.0) s lies in the silence
    assert not np.isnan(res.sdr).any()  # medians skip the NaN frames
    np.testing.assert_array_equal(res.permutation, [0, 1])


def test_agrees_with_museval_on_mono_saved_as_stereo(museval_metrics, rng):
    # Identical channels make the filter system singular; both must fall
    # back to a minimum-norm solution and still agree.
    mono = load_stems(["vocals", "bass"], seconds=2.0).mean(axis=1, keepdims=True)
    refs = np.repeat(mono, 2, axis=1)
    ests = refs + 0.1 * refs[::-1] + 0.01 * rng.standard_normal(refs.shape)

    res = bss_eval(refs, ests, SR, compute_permutation=False, device="cpu")
    ref = run_museval(museval_metrics, refs, ests, window=SR, hop=SR, compute_permutation=False)
    assert_agrees(res, ref)


# ---------------------------------------------------------------------------
# Known answers
# ---------------------------------------------------------------------------


def test_perfect_and_scaled_estimates():
    refs = load_stems(["vocals", "bass"], seconds=2.0)
    res = bss_eval(refs, refs.copy(), SR, device="cpu")
    assert np.all(res.sdr > 100)
    assert np.all(res.isr > 100) and np.all(res.sir > 60) and np.all(res.sar > 60)

    # Images SDR is not scale-invariant: half the amplitude is exactly
    # 10 log10(1 / 0.5**2) dB, while the filters absorb the gain (ISR, SIR, SAR high).
    res = bss_eval(refs, 0.5 * refs, SR, device="cpu")
    np.testing.assert_allclose(res.frames_sdr, 10 * np.log10(4.0), atol=1e-9)
    assert np.all(res.sir > 60) and np.all(res.sar > 60)


def test_single_source_has_no_interference(rng):
    refs = load_stems(["drums"], seconds=2.0)
    res = bss_eval(refs, refs + 0.01 * rng.standard_normal(refs.shape), SR, device="cpu")
    assert res.sdr.shape == (1,) and np.isposinf(res.sir).all()
    np.testing.assert_array_equal(res.permutation, [0])


def test_permutation_recovered_and_kept_when_not_solved(rng):
    refs = load_stems(["vocals", "drums", "bass", "piano"], seconds=1.0)
    order = np.array([3, 1, 0, 2])
    ests = degrade(refs, rng, leak=0.05)[order]

    res = bss_eval(refs, ests, SR, device="cpu")
    np.testing.assert_array_equal(res.permutation, np.argsort(order))
    assert np.all(res.sdr > 2)

    fixed = bss_eval(refs, ests, SR, compute_permutation=False, device="cpu")
    np.testing.assert_array_equal(fixed.permutation, np.arange(4))
    # the wrong pairings score far worse; the one pair both runs share agrees
    wrong = order != np.arange(4)
    assert np.all(fixed.sir[wrong] < res.sir[wrong] - 10)
    np.testing.assert_allclose(fixed.frames_sir[~wrong], res.frames_sir[~wrong], atol=1e-6)


def test_estimates_of_other_length_are_cropped_or_padded(rng):
    refs = load_stems(["vocals", "bass"], seconds=1.0)
    ests = degrade(refs, rng)
    base = bss_eval(refs, ests, SR, device="cpu")

    longer = np.concatenate([ests, rng.standard_normal((2, 2, 1000))], axis=-1)
    np.testing.assert_allclose(bss_eval(refs, longer, SR, device="cpu").frames_sar, base.frames_sar, atol=1e-9)

    shorter = ests[:, :, :-1000]
    padded = np.concatenate([shorter, np.zeros((2, 2, 1000))], axis=-1)
    np.testing.assert_allclose(
        bss_eval(refs, shorter, SR, device="cpu").frames_sar,
        bss_eval(refs, padded, SR, device="cpu").frames_sar,
        atol=1e-9,
    )


def test_whole_signal_window_float32_and_torch_input(rng):
    refs = load_stems(["vocals", "bass"], seconds=1.5)
    ests = degrade(refs, rng)
    res = bss_eval(refs, ests, SR, window_s=math.inf, device="auto")
    assert res.frames_sdr.shape == (2, 1) and res.window == refs.shape[-1]

    as32 = bss_eval(refs.astype(np.float32), torch.from_numpy(ests.astype(np.float32)), SR, window_s=math.inf)
    np.testing.assert_allclose(as32.sdr, res.sdr, atol=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(rng):
    refs = load_stems(["vocals", "bass", "drums"], seconds=3.0)
    ests = degrade(refs, rng)[[1, 2, 0]]
    cpu = bss_eval(refs, ests, SR, device="cpu")
    gpu = bss_eval(refs, ests, SR, device="cuda")
    np.testing.assert_array_equal(gpu.permutation, cpu.permutation)
    for name in ("frames_sdr", "frames_isr", "frames_sir", "frames_sar"):
        np.testing.assert_allclose(getattr(gpu, name), getattr(cpu, name), atol=1e-6, err_msg=name)


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


@pytest.fixture
def small(rng):
    refs = rng.standard_normal((2, 2, 2 * SR))
    return refs, refs + 0.1 * rng.standard_normal(refs.shape)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda r, e: (r, e[:1]), "1 sources"),
        (lambda r, e: (r, e[:, :1]), "1 channels"),
        (lambda r, e: (r[0], e[0]), "3 dimensions"),
        (lambda r, e: (r.astype(int), e), "floating-point"),
        (lambda r, e: (r, np.where(np.arange(r.shape[-1]) == 5, np.nan, e)), "NaN or infinite"),
        (lambda r, e: (r[:, :, :1000], e[:, :, :1000]), "shorter than one frame"),
        (lambda r, e: (np.concatenate([r[:1], 0 * r[1:]]), e), r"references\[1\] is silent"),
        (lambda r, e: (r, 0 * e), r"estimates\[0\] is silent"),
        (lambda r, e: ([[[0.0]]], e), "numpy float array"),
    ],
)
def test_bad_arrays_raise(small, change, match):
    refs, ests = change(*small)
    with pytest.raises(ParameterError, match=match):
        bss_eval(refs, ests, SR, device="cpu")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"window_s": 0.0}, "window_s"),
        ({"hop_s": -1.0}, "hop_s"),
        ({"hop_s": math.inf}, "hop_s"),
        ({"window_s": 1e-9}, "at least one sample"),
        ({"filter_len": 0}, "filter_len"),
        ({"filter_len": 2.5}, "filter_len"),
        ({"compute_permutation": "yes"}, "compute_permutation"),
        ({"device": "not-a-device"}, "device"),
        ({"device": "mps"}, "float64"),
    ],
)
def test_bad_options_raise(small, kwargs, match):
    with pytest.raises(ParameterError, match=match):
        bss_eval(*small, SR, **kwargs)


def test_bad_sample_rate_raises(small):
    with pytest.raises(ParameterError, match="sr"):
        bss_eval(*small, 0)


# ---------------------------------------------------------------------------
# SI-SDR
# ---------------------------------------------------------------------------


def test_si_sdr_known_answers(rng):
    ref = load_stems(["vocals"], seconds=2.0)[0]
    assert si_sdr(ref, 0.3 * ref) > 100  # a scaled copy
    assert si_sdr(ref, rng.standard_normal(ref.shape)) < -20  # independent noise

    # noise orthogonal to the reference: alpha = 1, so the ratio is exact
    noise = rng.standard_normal(ref.shape)
    noise -= np.sum(noise * ref) / np.sum(ref * ref) * ref
    noise *= 0.1 * np.linalg.norm(ref) / np.linalg.norm(noise)  # -20 dB
    np.testing.assert_allclose(si_sdr(ref, ref + noise), 20.0, atol=1e-9)
    # and any gain on the estimate is forgiven
    np.testing.assert_allclose(si_sdr(ref, -4.0 * (ref + noise)), 20.0, atol=1e-9)


def test_si_sdr_batched_torch_and_edge_cases(rng):
    refs = load_stems(["vocals", "bass", "drums"], seconds=1.0)
    ests = degrade(refs, rng)
    batch = si_sdr(refs, ests)
    assert isinstance(batch, np.ndarray) and batch.shape == (3,)
    single = [si_sdr(r, e) for r, e in zip(refs, ests)]
    np.testing.assert_allclose(batch, single, rtol=1e-12)
    np.testing.assert_allclose(si_sdr(torch.from_numpy(refs), torch.from_numpy(ests)), batch, rtol=1e-12)
    assert isinstance(si_sdr(refs[0], ests[0]), float)

    assert si_sdr(refs[0], refs[0]) == math.inf
    assert si_sdr(refs[0], np.zeros_like(refs[0])) == -math.inf
    with pytest.raises(ParameterError, match="silent"):
        si_sdr(np.zeros_like(refs[0]), ests[0])
    with pytest.raises(ParameterError, match="shape"):
        si_sdr(refs, ests[:, :1])
    # length mismatch: cropped, as bss_eval
    np.testing.assert_allclose(si_sdr(refs, np.concatenate([ests, ests], axis=-1)), batch)
