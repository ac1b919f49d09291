"""The NMF engine: objective, fixed factors, blocks, determinism, progress, devices.

The data is a real magnitude spectrogram (a 3 s excerpt of a SiSEC speech
recording at 16 kHz).
"""

from __future__ import annotations

import threading
import tracemalloc
import warnings

import numpy as np
import pytest
import torch
from conftest import shared

from demixstudio.audio.io import load_audio
from demixstudio.audio.stft import StftConfig, stft
from demixstudio.errors import Cancelled, ParameterError
from demixstudio.jobs.context import JobContext, NullContext
from demixstudio.separation.nmf import common, engine, spectra, starts

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def V() -> np.ndarray:
    x, sr = load_audio(shared("speech_sisec_dev1/dev1_female4_src_1.wav"), sr=16000)
    cfg = StftConfig.for_rate(sr)
    v = np.abs(stft(x[:, : 2 * sr], cfg))[0]
    spectra.floor_magnitude(v)
    return v


def _start(V, K, seed=0):
    rng = np.random.default_rng(seed)
    s = np.sqrt(V.mean() / K)
    return ((rng.uniform(0.5, 1.5, (V.shape[0], K)) * s).astype(np.float32),
            (rng.uniform(0.5, 1.5, (K, V.shape[1])) * s).astype(np.float32))


def _kl(V, W, H):
    return engine.beta_divergence(torch.as_tensor(V, dtype=torch.float64),
                                  torch.as_tensor(W @ H, dtype=torch.float64), 1.0)


def test_magnitude_equals_the_whole_stft():
    x, sr = load_audio(shared("speech_librispeech/198-209-0000.wav"))
    x = np.concatenate([x[:, :40000], 0.5 * x[:, 40000:80000][::-1]])  # two channels
    cfg = StftConfig.for_rate(sr)
    whole = np.abs(stft(x, cfg)).sum(0)
    blocked = spectra.magnitude(x, cfg, block=37)
    np.testing.assert_allclose(blocked, whole, rtol=1e-5, atol=1e-6 * whole.max())


def test_the_magnitude_is_made_a_few_frames_at_a_time():
    """Beside the magnitude it returns, :func:`spectra.magnitude` holds only a few
    frames' STFT at once (numpy's allocations, as tracemalloc sees them): a whole
    block's frames, spectra and magnitudes per channel were about nine times the
    magnitude here."""
    x = np.random.default_rng(0).standard_normal((2, 16000 * 120)).astype(np.float32)
    cfg = StftConfig.for_rate(16000)
    tracemalloc.start()
    try:
        V = spectra.magnitude(x, cfg)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(V, np.abs(stft(x, cfg)).sum(0))
    assert peak - V.nbytes < V.nbytes / 2, (peak / 2**20, V.nbytes / 2**20)


def test_masks_on_the_program_grid_are_written_in_place():
    """With a longer fit window, the masks are spread onto the program's grid group
    by group, straight into the output: beside it, a few blocks of one group's
    masks are held (numpy's allocations), not the groups' masks stacked and copied
    (about nine blocks here)."""
    gen = torch.Generator().manual_seed(0)
    bins, T, b = 2 * 257 - 1, 4000, 500
    W, H = torch.rand(bins, 5, generator=gen), torch.rand(5, T, generator=gen)
    block = 257 * b * 4  # one group's masks of a block, on the program's bins
    tracemalloc.start()
    try:
        out = spectra.group_masks(W, list(torch.split(H, b, dim=1)), [slice(0, 2), slice(2, 5)],
                                  T, step=2, out_frames=2 * T - 1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_allclose(out.sum(0), 1.0, atol=1e-5)
    assert peak - out.nbytes < 4 * block, (peak - out.nbytes) / block


def test_the_mixture_loads_straight_into_floored_blocks_and_is_released_before_the_masks(
        monkeypatch):
    """``load_mixture``'s blocks are the whole-signal magnitude, floored, cut into
    ``block_frames`` (no full-length array is made first); ``fit_and_mask`` drops
    them once the fit is done (the masks need only W and H), so on a long input
    the masks' stage holds one spectrogram less."""
    from demixstudio.jobs.context import NullContext
    from demixstudio.separation import make_params
    from demixstudio.separation.nmf import common
    from demixstudio.separation.nmf.semisupervised import SemiSupervisedNMF

    x, sr = load_audio(shared("speech_librispeech/198-209-0000.wav"))
    x = np.concatenate([x[:, :40000], 0.5 * x[:, 40000:80000][::-1]])  # two channels
    x[:, 8000:12000] = 0.0  # silent frames: the floor must reach them
    p = make_params(SemiSupervisedNMF.Params, {"block_frames": 64, "max_iter": 5,
                                               "free_components": 3, "components": 3})
    whole = np.abs(stft(x, StftConfig.for_rate(sr))).sum(0)
    spectra.floor_magnitude(whole)
    made = []
    monkeypatch.setattr(spectra, "magnitude", lambda *a, **k: made.append(a))
    m = common.load_mixture(x, sr, p)
    assert not made  # the full-length magnitude was never built
    assert [b.shape[1] for b in m.V[:-1]] == [64] * (len(m.V) - 1) and len(m.V) == 3
    assert all(b.is_contiguous() for b in m.V)  # row-major, as the fit's products want
    blocked = torch.cat(m.V, dim=1).cpu().numpy()
    np.testing.assert_allclose(blocked, whole, rtol=1e-5, atol=1e-6 * whole.max())
    assert blocked.min() > 0
    assert m.frames == whole.shape[1]
    assert m.mean_frame == pytest.approx(whole.sum(dtype=np.float64) / whole.shape[1], rel=1e-5)
    W = common.free_templates(m, 6, 0)
    masks, _ = common.fit_and_mask(m, W, [3, 3], p, NullContext(), 0.0)
    assert m.V == []
    assert masks.shape == (2, 1) + whole.shape
    np.testing.assert_allclose(masks.sum(0), 1.0, atol=1e-5)


def test_analysis_config_doubles_the_window_until_it_is_long_enough():
    """The program's STFT where its window is long enough, else a power-of-two multiple
    of it with the same overlap (so its bins and frames fall on the program's)."""
    assert common.analysis_config(16000, 0.064) == StftConfig.for_rate(16000)
    assert common.analysis_config(44100, 0.0) == StftConfig.for_rate(44100)
    assert common.analysis_config(44100, 0.064) == StftConfig(n_fft=4096, hop=1024)
    assert common.analysis_config(48000, 0.064) == StftConfig(n_fft=4096, hop=1024)
    assert common.analysis_config(44100, 10.0).n_fft == common.MAX_ANALYSIS_WINDOW


@pytest.mark.parametrize("step", [2, 4])
def test_masks_of_a_longer_window_land_on_the_program_grid(step):
    """Fitted on a window ``step`` times the program's (hop too), the masks come back
    on the program's grid, a block at a time: every step-th bin and frame is the fit's
    own, the frames between are the straight line between the fit's, they sum to one,
    and blocks give what the whole signal gives."""
    prog = StftConfig(n_fft=512, hop=128)
    fit = StftConfig(n_fft=512 * step, hop=128 * step)
    n = 50_003
    T, Tp = fit.frames(n), prog.frames(n)
    gen = torch.Generator().manual_seed(0)
    W = torch.rand(fit.bins, 5, generator=gen)
    H = torch.rand(5, T, generator=gen)
    groups = [slice(0, 2), slice(2, 5)]
    whole = spectra.group_masks(W, [H], groups, T)
    out = spectra.group_masks(W, list(torch.split(H, 7, dim=1)), groups, T, step=step,
                              out_frames=Tp)
    assert out.shape == (2, 1, prog.bins, Tp)
    np.testing.assert_allclose(out.sum(0), 1.0, atol=1e-5)
    on = whole[:, :, ::step]
    np.testing.assert_allclose(out[..., ::step], on[..., :len(range(0, Tp, step))], atol=1e-6)
    for i in range(1, step):
        line = (1 - i / step) * on[..., :-1] + (i / step) * on[..., 1:]
        np.testing.assert_allclose(out[..., i::step], line[..., :len(range(i, Tp, step))],
                                   atol=1e-6)
    # Blended into another fit's masks on the program's grid: the weighted average,
    # exactly, in place, every frame written.
    other = np.random.default_rng(1).random(out.shape).astype(np.float32)
    other /= other.sum(0, keepdims=True)
    want = 0.6 * other + 0.4 * out
    got = spectra.group_masks(W, list(torch.split(H, 7, dim=1)), groups, T, step=step,
                              out_frames=Tp, into=other, weight=0.4)
    assert got is other
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_kl_objective_equals_the_sum_of_its_terms(V):
    """The KL the engine reports (summed as Σ V log(V/Z) − Σ V + Σ Z in a scratch
    tensor) equals the term-by-term sum in float64, with silent bins and with weights."""
    W0, H0 = _start(V, 10)
    Z = torch.as_tensor(W0 @ H0)
    Vz = V.copy()
    Vz[:, ::7] = 0.0  # bins with no sound: their term is Z alone
    weight = (np.random.default_rng(1).random(V.shape) > 0.3).astype(np.float32)
    v64, z64 = Vz.astype(np.float64), Z.numpy().astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(v64 > 0, v64 * np.log(v64 / z64), 0.0) - v64 + z64
    scratch = torch.full_like(Z, float("nan"))
    for w in (None, weight):
        want = float((terms if w is None else terms * w).sum())
        got = engine.beta_divergence(torch.as_tensor(Vz), Z, 1.0,
                                     None if w is None else torch.as_tensor(w), scratch)
        assert got == pytest.approx(want, rel=1e-6)
        assert engine.beta_divergence(torch.as_tensor(Vz), Z, 1.0,
                                      None if w is None else torch.as_tensor(w)) == got


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 2.0])
def test_objective_decreases(V, beta):
    W0, H0 = _start(V, 10)
    W = torch.as_tensor(W0)
    H = engine.split_frames(H0.copy(), 10_000, CPU)
    res = engine.fit(engine.split_frames(V, 10_000, CPU), W, H, NullContext(), beta=beta,
                     max_iter=60, tol=0.0, check_every=1)
    obj = np.array(res.objective)
    assert np.all(np.diff(obj) <= 1e-5 * np.abs(obj[:-1])), obj
    assert obj[-1] < 0.7 * obj[0]


def test_kl_matches_scikit_learn(V):
    """Same start, same number of iterations: the KL reached agrees within 1 %."""
    from sklearn.decomposition import NMF
    from sklearn.exceptions import ConvergenceWarning

    W0, H0 = _start(V, 12)
    iters = 100
    W = torch.as_tensor(W0.copy())
    H = [torch.as_tensor(H0.copy())]
    engine.fit([torch.as_tensor(V)], W, H, NullContext(), max_iter=iters, tol=0.0,
               order="alternate")
    ours = _kl(V, W.numpy(), H[0].numpy())
    model = NMF(n_components=12, init="custom", solver="mu", beta_loss="kullback-leibler",
                max_iter=iters, tol=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        Ws = model.fit_transform(V, W=W0.copy(), H=H0.copy())
    theirs = _kl(V, Ws, model.components_)
    start = _kl(V, W0, H0)
    assert ours < 0.2 * start
    # Same update order (W, then H) as scikit-learn: the same path up to rounding.
    assert abs(ours / theirs - 1) < 1e-3, (ours, theirs)


def test_joint_em_order_descends_and_reaches_scikit_learns_kl(V):
    """The joint (EM) order: monotone, and after 100 iterations within 1 % of the
    KL that scikit-learn's alternating updates reach from the same start; with
    two workers and chunks it is the same fit."""
    from sklearn.decomposition import NMF
    from sklearn.exceptions import ConvergenceWarning

    W0, H0 = _start(V, 12)
    out = []
    for chunk, workers in ((V.shape[1], 1), (29, 2)):
        W = torch.as_tensor(W0.copy())
        H = [torch.as_tensor(H0.copy())]
        res = engine.fit([torch.as_tensor(V)], W, H, NullContext(), max_iter=100, tol=0.0,
                         check_every=1, order="joint", chunk=chunk, threads=workers)
        out.append((W.numpy(), H[0].numpy()))
    obj = np.array(res.objective)
    assert np.all(np.diff(obj) <= 1e-5 * np.abs(obj[:-1])), obj
    np.testing.assert_allclose(out[1][0], out[0][0], rtol=1e-3, atol=1e-8)
    ours = _kl(V, *out[0])
    model = NMF(n_components=12, init="custom", solver="mu", beta_loss="kullback-leibler",
                max_iter=100, tol=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        Ws = model.fit_transform(V, W=W0.copy(), H=H0.copy())
    theirs = _kl(V, Ws, model.components_)
    assert ours < 0.2 * _kl(V, W0, H0)
    assert abs(ours / theirs - 1) < 0.01, (ours, theirs)
    with pytest.raises(ParameterError, match="beta=1"):
        engine.fit([torch.as_tensor(V)], torch.as_tensor(W0.copy()),
                   [torch.as_tensor(H0.copy())], NullContext(), beta=2.0, order="joint")


@pytest.mark.parametrize("order", ["alternate", "joint"])
def test_bfloat16_products_reach_the_float32_objective(V, order):
    """Products in bfloat16 (sums, factors and updates in float32): from the same
    start, 100 iterations reach a KL within 1 % of the float32 fit's, also in chunks
    with two workers, and the objective (computed in float32 on check iterations)
    still falls."""
    W0, H0 = _start(V, 12)
    kl = {}
    fits = []
    for precision, chunk, workers in (("float32", None, 1), ("bfloat16", None, 1),
                                      ("bfloat16", 29, 2)):
        W = torch.as_tensor(W0.copy())
        H = [torch.as_tensor(H0.copy())]
        res = engine.fit([torch.as_tensor(V)], W, H, NullContext(), max_iter=100, tol=0.0,
                         check_every=10, order=order, chunk=chunk, threads=workers,
                         precision=precision)
        obj = np.array(res.objective)
        assert np.all(np.diff(obj) < 0), (precision, obj)
        assert W.dtype == H[0].dtype == torch.float32
        kl[precision, chunk] = _kl(V, W.numpy(), H[0].numpy())
        fits.append(W.numpy())
    base = kl["float32", None]
    assert abs(kl["bfloat16", None] / base - 1) < 0.01, kl
    assert abs(kl["bfloat16", 29] / base - 1) < 0.01, kl
    # Not the float32 path under another name: the rounding shows in the templates.
    # (Chunks round the W statistics per chunk, so over 100 iterations the paths of
    # the two bfloat16 fits part too; their objectives are what must agree.)
    assert np.abs(fits[1] - fits[0]).max() > 0


def test_bfloat16_data_kept_or_rounded_per_use_give_the_same_fit(V, monkeypatch):
    """V's chunks in bfloat16 are kept for the fit while small, and rounded into
    scratch at each use above LOW_DATA_BYTES: the same values either way, so the
    same fit to the bit (alternating order, two workers, odd chunks)."""
    W0, H0 = _start(V, 12)
    fits = []
    for budget in (engine.LOW_DATA_BYTES, 0):
        monkeypatch.setattr(engine, "LOW_DATA_BYTES", budget)
        W = torch.as_tensor(W0.copy())
        H = [torch.as_tensor(H0[:, :50].copy()), torch.as_tensor(H0[:, 50:].copy())]
        Vb = [torch.as_tensor(V[:, :50]), torch.as_tensor(V[:, 50:])]
        engine.fit(Vb, W, H, NullContext(), max_iter=20, tol=0.0, check_every=7, chunk=23,
                   threads=2, precision="bfloat16")
        fits.append((W.numpy(), np.concatenate([h.numpy() for h in H], 1)))
    np.testing.assert_array_equal(fits[0][0], fits[1][0])
    np.testing.assert_array_equal(fits[0][1], fits[1][1])


def test_product_precision_choice(monkeypatch):
    """auto is bfloat16 only on a CPU that multiplies it natively *and* where the
    engine's bfloat16 products are measured to be faster; GPUs keep float32."""
    native = engine.native_bfloat16(CPU)
    faster = engine.bfloat16_faster()
    assert isinstance(faster, bool) and engine.bfloat16_faster() is faster  # timed once
    assert engine.product_dtype("auto", CPU) == (
        torch.bfloat16 if native and faster else torch.float32)
    monkeypatch.setattr(engine, "native_bfloat16", lambda device: device.type == "cpu")
    for measured, dtype in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(engine, "bfloat16_faster", lambda measured=measured: measured)
        assert engine.product_dtype("auto", CPU) == dtype
    assert engine.product_dtype("auto", torch.device("cuda")) == torch.float32
    assert engine.product_dtype("float32", CPU) == torch.float32
    assert engine.product_dtype("bfloat16", CPU) == torch.bfloat16
    with pytest.raises(ParameterError, match="precision"):
        engine.product_dtype("float16", CPU)


@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_sparse_nmf_has_unit_l2_templates_and_sparser_codes(V, beta):
    """With an L1 penalty the templates are kept at unit L2 norm, the penalised
    objective descends, and the activations come out sparser (Hoyer's measure)
    than without it; under KL with unit-sum templates the penalty could only
    rescale them."""
    def hoyer(H):  # mean over frames of Hoyer's sparseness of the frame's code, in [0, 1]
        n = H.shape[0]
        ratio = H.sum(0) / np.sqrt((H ** 2).sum(0))
        return float(np.mean((np.sqrt(n) - ratio) / (np.sqrt(n) - 1)))

    W0, H0 = _start(V, 10)
    lam = 1.0 if beta == 1 else 5.0 * float(V.mean())
    out = {}
    for sparsity in (0.0, lam):
        W = torch.as_tensor(W0.copy())
        H = [torch.as_tensor(H0.copy())]
        res = engine.fit([torch.as_tensor(V)], W, H, NullContext(), beta=beta,
                         sparsity=sparsity, max_iter=80, tol=0.0, check_every=1)
        out[sparsity] = (W.numpy(), H[0].numpy(), np.array(res.objective))
    W, H, obj = out[lam]
    np.testing.assert_allclose(np.linalg.norm(W, axis=0), 1.0, rtol=1e-4)
    np.testing.assert_allclose(out[0.0][0].sum(0), 1.0, rtol=1e-4)
    assert np.all(np.diff(obj[5:]) <= 1e-4 * np.abs(obj[5:-1])), obj
    assert hoyer(H) > hoyer(out[0.0][1]) + 0.02, (hoyer(H), hoyer(out[0.0][1]))


def test_continuity_terms_are_the_split_gradient_of_the_cost():
    """The H step's continuity terms: numerator − denominator = −∂cost/∂H, on
    several blocks (each its own chain of frames)."""
    rng = np.random.default_rng(3)
    H = [torch.as_tensor(rng.uniform(0.1, 2.0, (3, b)), dtype=torch.float64) for b in (7, 1, 5)]
    for h in H:
        h.requires_grad_(True)
    S = sum((h * h).sum(1) for h in H)
    D = sum(((h[:, 1:] - h[:, :-1]) ** 2).sum(1) for h in H)
    (2.5 * (D / S).sum()).backward()
    with torch.no_grad():
        num, den = engine.continuity_terms([h.detach() for h in H], 2.5)
        assert engine.continuity_cost([h.detach() for h in H], 2.5) == pytest.approx(
            float(2.5 * (D / S).sum()), rel=1e-12)
        for h, n, d in zip(H, num, den):
            assert (n >= 0).all() and (d >= 0).all()
            np.testing.assert_allclose((n - d).numpy(), -h.grad.numpy(), rtol=1e-10,
                                       atol=1e-12)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_continuity_smooths_the_activations_at_a_small_cost_in_fit(V, precision):
    """Virtanen's continuity cost: the fit's activations vary more slowly from frame
    to frame (Σ D/S falls), the data are still explained (the KL within 30 %), and the reported
    objective is the KL plus the cost."""
    W0, H0 = _start(V, 12)
    out = {}
    for c in (0.0, 0.3):
        W = torch.as_tensor(W0.copy())
        Vb = engine.split_frames(V, 40, CPU)  # several blocks, each its own chain
        Hb = engine.split_frames(H0.copy(), 40, CPU)
        res = engine.fit(Vb, W, Hb, NullContext(), continuity=c, max_iter=80, tol=0.0,
                         check_every=79, precision=precision)
        Hn = res.h_numpy()
        rough = float(((np.diff(Hn, axis=1) ** 2).sum(1) / (Hn ** 2).sum(1)).sum())
        kl = _kl(V, W.numpy(), Hn)
        out[c] = (rough, kl, res.objective[-1])
    (r0, kl0, obj0), (r1, kl1, obj1) = out[0.0], out[0.3]
    # (Measured: Σ D/S 2.85 → 1.54, the KL +15 %.)
    assert r1 < 0.75 * r0
    assert kl0 <= kl1 < 1.3 * kl0
    assert obj0 == pytest.approx(kl0, rel=1e-3)
    assert obj1 > kl1  # the cost is in the objective


def test_continuity_is_refused_where_it_has_no_update(V):
    W0, H0 = _start(V, 4)
    args = ([torch.as_tensor(V)], torch.as_tensor(W0), [torch.as_tensor(H0)], NullContext())
    with pytest.raises(ParameterError, match="joint"):
        engine.fit(*args, continuity=0.1, order="joint", max_iter=2)
    with pytest.raises(ParameterError, match="continuity"):
        engine.fit(*args, continuity=-1.0, max_iter=2)


def test_chunks_and_workers_change_only_the_speed(V):
    """Cache-sized chunks and parallel workers give the same fit as one whole block."""
    W0, H0 = _start(V, 8)
    out = []
    threads = torch.get_num_threads()
    for chunk, workers in ((V.shape[1], 1), (37, 1), (37, 3)):
        W = torch.as_tensor(W0.copy())
        H = [torch.as_tensor(H0.copy())]
        res = engine.fit([torch.as_tensor(V)], W, H, NullContext(), max_iter=20, tol=0.0,
                         chunk=chunk, threads=workers, check_every=5)
        out.append((W.numpy(), H[0].numpy(), res.objective))
    assert torch.get_num_threads() == threads  # restored after the workers
    for other in out[1:]:
        np.testing.assert_allclose(other[0], out[0][0], rtol=1e-3, atol=1e-8)
        np.testing.assert_allclose(other[1], out[0][1], rtol=1e-3, atol=1e-8)
        np.testing.assert_allclose(other[2], out[0][2], rtol=1e-5)


@pytest.mark.parametrize("beta, order, fixed", [
    (1.0, "alternate", False), (1.0, "joint", False), (1.0, "alternate", True),
    (2.0, "alternate", False), (0.0, "alternate", False)])
def test_chunks_whose_weights_are_all_one_fit_as_weighted_ones(V, beta, order, fixed):
    """A weighted fit whose missing bins lie in the first 30 frames: cut into chunks
    of 30, the others have weights of all one and take the plain products; it gives
    the fit of one weighted chunk (bool and float weights alike)."""
    W0, H0 = _start(V, 8)
    O = np.ones(V.shape, dtype=bool)
    O[::3, :30] = False
    out = []
    for chunk, kind in ((V.shape[1], torch.bool), (30, torch.bool), (30, torch.float32)):
        W = torch.as_tensor(W0.copy())
        H = [torch.as_tensor(H0.copy())]
        res = engine.fit([torch.as_tensor(V)], W, H, NullContext(), beta=beta, order=order,
                         fixed_w=range(8) if fixed else None,
                         observed=[torch.as_tensor(O).to(kind)], max_iter=20, tol=0.0,
                         chunk=chunk, threads=1, check_every=5)
        out.append((W.numpy(), H[0].numpy(), res.objective))
    for other in out[1:]:
        np.testing.assert_allclose(other[0], out[0][0], rtol=1e-3, atol=1e-8)
        np.testing.assert_allclose(other[1], out[0][1], rtol=1e-3, atol=1e-8)
        np.testing.assert_allclose(other[2], out[0][2], rtol=1e-5)


def test_weighted_activations_with_the_templates_fixed_follow_the_kl_update(V):
    """With W fixed (its weighted denominator Wᵀ O kept from the first sweep), the
    activations are the weighted KL updates H ← H ⊙ Wᵀ(O ⊙ V / WH) / Wᵀ O, in float64."""
    W0, H0 = _start(V, 8)
    O = np.ones(V.shape, dtype=bool)
    O[::3, :30] = False
    O[5:40, 50:] = False
    W = torch.as_tensor(W0.copy())
    H = [torch.as_tensor(H0.copy())]
    engine.fit([torch.as_tensor(V)], W, H, NullContext(), fixed_w=range(8),
               observed=[torch.as_tensor(O)], max_iter=20, tol=0.0, chunk=40, threads=2)
    s = W0.astype(np.float64).sum(axis=0)  # the engine's unit-sum columns
    Wr, Hr, Or = W0 / s, H0 * s[:, None], O.astype(np.float64)
    for _ in range(20):
        Hr = Hr * (Wr.T @ (Or * V / (Wr @ Hr))) / (Wr.T @ Or)
    np.testing.assert_allclose(W.numpy() @ H[0].numpy(), Wr @ Hr, rtol=2e-3, atol=1e-7)


def test_chunks_are_even_and_shared_by_every_worker(V):
    """Every frame in exactly one chunk; chunks of a block of equal widths within
    the size; a block too small for the workers is cut for them all."""
    def covered(chunks, widths):
        seen = [np.zeros(w, int) for w in widths]
        for i, a, b in chunks:
            seen[i][a:b] += 1
        return all((s == 1).all() for s in seen)

    for widths, size, workers in (([376], 340, 1), ([376], 340, 2), ([5000, 17], 255, 2),
                                  ([376], 1022, 2), ([376], 1022, 8), ([200], 1022, 2),
                                  ([1], 4096, 2)):
        chunks = engine._chunks(widths, size, workers)
        assert covered(chunks, widths), (widths, size, workers)
        for i, w in enumerate(widths):
            mine = [b - a for j, a, b in chunks if j == i]
            assert max(mine) <= size and max(mine) - min(mine) <= 1 or len(mine) == 1
    assert [b - a for _, a, b in engine._chunks([376], 340)] == [188, 188]
    assert len(engine._chunks([376], 1022, 2)) == 2  # a few seconds of example: two workers
    assert len(engine._chunks([376], 1022, 8)) == 8
    # A fit is shared only when each worker's share holds MIN_SHARE_ENTRIES entries.
    least = engine.MIN_SHARE_ENTRIES
    assert engine.shared_workers(2 * least - 1, 2) == 1
    assert engine.shared_workers(2 * least, 2) == 2
    assert engine.shared_workers(3 * least, 8) == 3
    assert engine.shared_workers(10, 1) == engine.shared_workers(10 * least, 1) == 1
    # More chunks than workers: as many per worker, each share as wide.
    for workers in (2, 3):
        chunks = engine._chunks([5670], 255, workers)
        shares = [sum(b - a for _, a, b in p) for p in engine._share(chunks, workers)]
        assert len(chunks) % workers == 0 and max(shares) - min(shares) <= workers, shares
    # Every worker gets its share whatever the frame count, odd included (452 + 453).
    for widths, size, workers in (([905], 511, 2), ([904], 511, 2), ([375], 1022, 2),
                                  ([1001], 511, 2), ([905], 255, 2), ([907], 100, 3)):
        parts = engine._share(engine._chunks(widths, size, workers), workers)
        shares = [sum(b - a for _, a, b in p) for p in parts]
        assert min(shares) > 0 and max(shares) - min(shares) <= max(widths) // workers // 2, \
            (widths, shares)
    # Two workers give the fit one gives, up to rounding (the chunk given, so that
    # this small V is shared at all).
    W0, H0 = _start(V, 8)
    out = []
    for workers in (1, 2):
        W, H = torch.as_tensor(W0.copy()), [torch.as_tensor(H0.copy())]
        engine.fit([torch.as_tensor(V.copy())], W, H, NullContext(), max_iter=20,
                   tol=0.0, threads=workers, chunk=V.shape[1] // 2 + 1)
        out.append((W.numpy(), H[0].numpy()))
    np.testing.assert_allclose(out[1][0], out[0][0], rtol=1e-3, atol=1e-8)
    np.testing.assert_allclose(out[1][1], out[0][1], rtol=1e-3, atol=1e-8)


def test_a_fit_too_small_to_share_runs_on_one_thread(V):
    """Under MIN_SHARE_ENTRIES a CPU fit runs on the calling thread with torch held at
    one thread (its own threads, woken for each small operation, were slower);
    the user's count is back afterwards."""
    assert V.size < 2 * engine.MIN_SHARE_ENTRIES
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    seen = []

    class Watch(NullContext):
        def progress(self, done, total=1.0, message=None):
            seen.append((torch.get_num_threads(), threading.current_thread().name))
            super().progress(done, total, message)
    try:
        W0, H0 = _start(V, 8)
        engine.fit([torch.as_tensor(V.copy())], torch.as_tensor(W0), [torch.as_tensor(H0)],
                   Watch(), max_iter=5, tol=0.0)
        assert seen and {n for n, _ in seen} == {1}
        assert {t for _, t in seen} == {threading.current_thread().name}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_overlapping_fits_restore_the_thread_count(V):
    """Fits with workers hold torch's (process-wide) thread count at 1; when two
    overlap, the count comes back only when the last ends, and it is the user's."""
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        with engine.single_threaded_ops():
            assert torch.get_num_threads() == 1
            assert engine.cpu_threads() == 3  # what a fit starting now takes for its workers
            with engine.single_threaded_ops():
                pass
            assert torch.get_num_threads() == 1  # the inner one ended, the outer still runs
        assert torch.get_num_threads() == 3
        # Two real fits in two threads, started together.
        W0, H0 = _start(V, 8)
        go = threading.Barrier(2)
        errors = []

        def one() -> None:
            try:
                go.wait()
                engine.fit([torch.as_tensor(V)], torch.as_tensor(W0.copy()),
                           [torch.as_tensor(H0.copy())], NullContext(), max_iter=30, tol=0.0,
                           chunk=37, threads=2)
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        runs = [threading.Thread(target=one) for _ in range(2)]
        for t in runs:
            t.start()
        for t in runs:
            t.join()
        assert not errors, errors
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(threads)


def test_fixed_columns_and_rows_stay(V):
    W0, H0 = _start(V, 8)
    W0 /= W0.sum(0)
    W = torch.as_tensor(W0.copy())
    H = [torch.as_tensor(H0.copy())]
    engine.fit([torch.as_tensor(V)], W, H, NullContext(), fixed_w=[0, 3], fixed_h=[5],
               max_iter=20, tol=0.0)
    np.testing.assert_allclose(W.numpy()[:, [0, 3]], W0[:, [0, 3]], rtol=1e-6)
    assert not np.allclose(W.numpy()[:, 1], W0[:, 1])
    np.testing.assert_array_equal(H[0].numpy()[5], H0[5])
    assert not np.allclose(H[0].numpy()[4], H0[4])


def test_blocks_give_the_same_activations_with_w_fixed(V):
    W0, H0 = _start(V, 8)
    out = []
    for block in (V.shape[1], 50):
        W = torch.as_tensor(W0.copy())
        H = engine.split_frames(H0.copy(), block, CPU)
        engine.fit(engine.split_frames(V, block, CPU), W, H, NullContext(), fixed_w=range(8),
                   max_iter=30, tol=0.0)
        out.append(torch.cat(H, 1).numpy())
    np.testing.assert_allclose(out[0], out[1], rtol=2e-4, atol=1e-8)


def test_blocks_learn_the_same_templates(V):
    W0, H0 = _start(V, 6)
    out = []
    for block in (V.shape[1], 64):
        W = torch.as_tensor(W0.copy())
        H = engine.split_frames(H0.copy(), block, CPU)
        engine.fit(engine.split_frames(V, block, CPU), W, H, NullContext(), max_iter=15, tol=0.0)
        out.append(W.numpy())
    np.testing.assert_allclose(out[0], out[1], rtol=1e-3, atol=1e-7)


@pytest.mark.parametrize("order", ["alternate", "joint"])
def test_a_block_without_constraints_fits_as_one_of_all_ones_multipliers(V, order):
    """``penalties[i] = None`` (the plain products, as hum's mixture blocks and
    paint's unpainted blocks use) gives the fit that multipliers of ones give; the
    other block keeps its real constraints."""
    W0, H0 = _start(V, 6)
    blocks = engine.split_frames(V, 40, CPU)
    rng = np.random.default_rng(1)
    real = torch.as_tensor(rng.uniform(0.01, 1.0, (2,) + tuple(blocks[0].shape))
                           .astype(np.float32))
    out = []
    for rest in (None, "ones"):
        pen = [real] + [None if rest is None else torch.ones((2,) + tuple(b.shape))
                        for b in blocks[1:]]
        W = torch.as_tensor(W0.copy())
        H = engine.split_frames(H0.copy(), 40, CPU)
        res = engine.fit(blocks, W, H, NullContext(), groups=[slice(0, 3), slice(3, 6)],
                         penalties=pen, order=order, max_iter=15, tol=0.0, check_every=5)
        out.append((W.numpy(), torch.cat(H, 1).numpy(), res.objective))
    np.testing.assert_allclose(out[0][0], out[1][0], rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(out[0][1], out[1][1], rtol=1e-3, atol=1e-8)
    np.testing.assert_allclose(out[0][2], out[1][2], rtol=1e-5)


def test_seeded_runs_are_identical(V):
    runs = [spectra.learn_dictionary(V, 8, NullContext(), max_iter=20, seed=3).numpy()
            for _ in range(2)]
    assert np.array_equal(runs[0], runs[1])
    other = spectra.learn_dictionary(V, 8, NullContext(), max_iter=20, seed=4).numpy()
    assert not np.array_equal(runs[0], other)


def test_stops_on_tolerance(V):
    W0, H0 = _start(V, 6)
    res = engine.fit([torch.as_tensor(V)], torch.as_tensor(W0), [torch.as_tensor(H0)],
                     NullContext(), max_iter=2000, tol=1e-3)
    assert res.converged and res.iterations < 2000


def test_prior_holds_columns_near_the_templates(V):
    W0, H0 = _start(V, 4)
    tmpl = torch.as_tensor(W0[:, :2] / W0[:, :2].sum(0))
    W = torch.as_tensor(W0.copy())
    prior = engine.WPrior(columns=[0, 1], templates=tmpl, weight=1e4, anneal_iters=0)
    engine.fit([torch.as_tensor(V)], W, [torch.as_tensor(H0)], NullContext(), prior=prior,
               max_iter=30, tol=0.0)
    np.testing.assert_allclose(W.numpy()[:, :2], tmpl.numpy(), rtol=0.02, atol=1e-6)
    assert np.abs(W.numpy()[:, 2] - W0[:, 2] / W0[:, 2].sum()).max() > 1e-3


def test_progress_every_iteration_and_cancel(V):
    W0, H0 = _start(V, 4)
    seen = []
    ctx = JobContext(on_progress=lambda p: seen.append(p.fraction), min_interval_s=0.0)
    engine.fit([torch.as_tensor(V)], torch.as_tensor(W0), [torch.as_tensor(H0)], ctx,
               max_iter=12, tol=0.0)
    assert len(seen) >= 12 and seen[-1] == 1.0
    ev = threading.Event()
    ctx = JobContext(cancel_event=ev)
    ev.set()
    with pytest.raises(Cancelled):
        engine.fit([torch.as_tensor(V)], torch.as_tensor(W0), [torch.as_tensor(H0)], ctx,
                   max_iter=12)


def test_devices_and_bad_arguments():
    assert engine.pick_device("cpu").type == "cpu"
    assert engine.pick_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ParameterError, match="device"):
        engine.pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ParameterError, match="cuda"):
            engine.pick_device("cuda")
    W = torch.ones(5, 2)
    with pytest.raises(ParameterError, match="beta"):
        engine.fit([torch.ones(5, 3)], W, [torch.ones(2, 3)], NullContext(), beta=5.0)


def test_the_randomised_svd_finds_the_leading_singular_values(V):
    """The range finder's leading singular values of a real spectrogram agree with a
    full SVD's."""
    _, s, _ = starts.leading_singular(V, 16)
    full = np.linalg.svd(V.astype(np.float64), compute_uv=False)[:16]
    np.testing.assert_allclose(s, full, rtol=1e-3)


def test_nndsvda_starts_near_the_data_with_no_zeros(V):
    """NNDSVDa's start is nonnegative with no zeros (a multiplicative update never
    moves one), rebuilds a rank-one matrix exactly, is nearer a real spectrogram than
    a random start, and the same on every call."""
    rng = np.random.default_rng(3)
    one = np.outer(rng.uniform(0, 1, 50), rng.uniform(0, 1, 80)).astype(np.float32)
    W, H = starts.nndsvda(one, 1)
    np.testing.assert_allclose(W @ H, one, rtol=1e-4, atol=1e-6)

    W, H = starts.nndsvda(V, 20, seed=5)
    assert W.shape == (V.shape[0], 20) and H.shape == (20, V.shape[1])
    assert (W > 0).all() and (H > 0).all()
    assert _kl(V, W, H) < 0.8 * _kl(V, *_start(V, 20))  # 0.68 measured
    W2, H2 = starts.nndsvda(V, 20, seed=5)
    assert np.array_equal(W, W2) and np.array_equal(H, H2)

    ctx = NullContext()
    learned = spectra.learn_dictionary(V, 20, ctx, start="nndsvda", max_iter=20)
    assert learned.shape == (V.shape[0], 20) and torch.isfinite(learned).all()
    with pytest.raises(ValueError, match="nndsvda"):
        spectra.learn_dictionary(V, 20, ctx, start="svd")
