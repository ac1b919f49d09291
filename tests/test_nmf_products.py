"""The engine's float32 CPU products: oneDNN where it is timed faster, torch.mm elsewhere.

Whichever library this machine's timing picks, the products and the fits must be
the ones torch.mm gives, up to the order of the sums; these tests force each
library in turn.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from conftest import shared

from demixstudio.audio.io import load_audio
from demixstudio.audio.stft import StftConfig, stft
from demixstudio.jobs.context import NullContext
from demixstudio.separation.nmf import engine, products, spectra

ONEDNN = torch.backends.mkldnn.is_available()


@pytest.fixture
def use_onednn(monkeypatch):
    """Force the oneDNN products (as on a CPU where they are timed faster)."""
    monkeypatch.setattr(products, "_decided", True)


def _close(y: torch.Tensor, ref: torch.Tensor) -> None:
    assert y.shape == ref.shape and y.dtype == torch.float32
    assert float((y - ref).abs().max()) <= 1e-5 * float(ref.abs().max())


def test_the_timing_decides_once_and_is_a_bool():
    first = products.onednn_faster()
    assert isinstance(first, bool) and products.onednn_faster() is first
    if not ONEDNN:
        assert first is False


def test_a_torch_whose_onednn_op_fails_or_differs_keeps_torch_mm(monkeypatch):
    """The timing says no, and the engine's products are torch.mm's, where the op
    is missing, raises, or gives other values."""
    def broken(a, b):
        raise RuntimeError("no such op")

    def wrong(a, b):
        return torch.mm(a, b.contiguous()) * 1.01

    for fake in (broken, wrong):
        monkeypatch.setattr(products, "_decided", None)
        monkeypatch.setattr(products, "_onednn", fake)
        assert products.onednn_faster() is False
        a, b = torch.rand(50, 8), torch.rand(8, 30)
        assert torch.equal(products.mm(a, b), torch.mm(a, b))


def test_the_timing_is_remembered_per_machine_and_can_be_pinned(monkeypatch, tmp_path):
    """A second process takes the first one's timing (runs stay repeatable where the
    two libraries are close); the variable pins the choice; a cache that cannot be
    written only means timing again."""
    if not ONEDNN:
        return
    monkeypatch.setenv(products.CACHE_ENV_VAR, str(tmp_path))
    monkeypatch.delenv(products.ENV_VAR, raising=False)
    timings = []

    def timing(answer):
        return lambda: timings.append(answer) or answer

    monkeypatch.setattr(products, "_decided", None)
    monkeypatch.setattr(products, "_timed", timing(True))
    assert products.onednn_faster() is True and timings == [True]
    assert (tmp_path / "cpu_products.json").is_file()
    # A new process (the decision forgotten) whose own timing would say otherwise.
    monkeypatch.setattr(products, "_decided", None)
    monkeypatch.setattr(products, "_timed", timing(False))
    assert products.onednn_faster() is True and timings == [True]
    # Pinned either way, with no timing.
    for value, expected in (("blas", False), ("onednn", True), (" BLAS ", False)):
        monkeypatch.setenv(products.ENV_VAR, value)
        monkeypatch.setattr(products, "_decided", None)
        assert products.onednn_faster() is expected
    assert timings == [True]
    monkeypatch.setenv(products.ENV_VAR, "mkl")
    monkeypatch.setattr(products, "_decided", None)
    with pytest.raises(ValueError, match="onednn, blas or auto"):
        products.onednn_faster()
    # A file where the folder should be: timed each time, no error.
    monkeypatch.delenv(products.ENV_VAR)
    blocked = tmp_path / "blocked"
    blocked.write_text("")
    monkeypatch.setenv(products.CACHE_ENV_VAR, str(blocked))
    for _ in range(2):
        monkeypatch.setattr(products, "_decided", None)
        assert products.onednn_faster() is False
    assert timings == [True, False, False]
    # A remembered "yes" does not outlive an op that has stopped working.
    monkeypatch.setenv(products.CACHE_ENV_VAR, str(tmp_path))
    monkeypatch.setattr(products, "_decided", None)
    monkeypatch.setattr(products, "_onednn", lambda a, b: torch.mm(a, b.contiguous()) * 1.01)
    assert products.onednn_faster() is False


def test_processes_starting_together_take_one_timing(monkeypatch, tmp_path):
    """While one process holds the lock and times, another waits and takes its answer
    rather than timing (and perhaps choosing) on its own; a lock held past the wait
    only means timing unlocked."""
    if not ONEDNN:
        return
    from filelock import FileLock

    monkeypatch.setenv(products.CACHE_ENV_VAR, str(tmp_path))
    monkeypatch.delenv(products.ENV_VAR, raising=False)
    timings = []
    monkeypatch.setattr(products, "_timed", lambda: timings.append(False) or False)
    holder = FileLock(str(tmp_path / "cpu_products.json.lock"))
    holder.acquire()  # the first process, timing
    answers = []
    waiter = threading.Thread(target=lambda: answers.append(products._decide()))
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive() and not answers  # waiting for the lock, not timing
    products._remember(products.machine_key(), True)  # the first one's answer
    holder.release()
    waiter.join(10)
    assert answers == [True] and timings == []
    # Held past the wait: timed here, and remembered as before.
    (tmp_path / "cpu_products.json").unlink()
    monkeypatch.setattr(products, "LOCK_WAIT_S", 0.2)
    holder.acquire()
    try:
        assert products._decide() is False and timings == [False]
    finally:
        holder.release()
    assert products._remembered() == {products.machine_key(): False}


def test_products_agree_with_torch_in_every_layout_the_engine_uses(use_onednn):
    if not ONEDNN:  # (a torch without oneDNN: the timing said no, checked above)
        return
    g = torch.Generator().manual_seed(0)
    F, T, K, C = 513, 700, 24, 211
    V = torch.rand(F, T, generator=g)
    W = torch.rand(F, K, generator=g)
    H = torch.rand(K, T, generator=g)
    Wt = W.t().contiguous()
    R = torch.rand(F, C, generator=g)
    Hs = H[:, 100:100 + C]  # a chunk of a block's activations: strided columns
    cases = {
        "W H": (W, Hs.contiguous()),
        "W H, strided": (W, Hs),
        "Wᵀ R": (Wt, R),
        "R Hᵀ": (R, Hs.t()),
        "R Hᵀ, contiguous": (R, Hs.contiguous().t()),
        "a group's W H": (W[:, 4:9], Hs[4:9]),
        "a group's Wᵀ R": (Wt[4:9], R),
        "a chunk of V times Hᵀ": (V[:, 100:100 + C], Hs.t()),
        "Wᵀ times a chunk of V": (Wt, V[:, 100:100 + C]),
        "Wᵀ transposed": (W.t(), R),
    }
    for name, (a, b) in cases.items():
        ref = torch.mm(a, b)
        _close(products.mm(a, b), ref)
        scratch = torch.empty_like(ref)
        _close(products.mm_scratch(a, b, scratch), ref)


def test_a_large_operand_in_another_layout_is_left_to_torch(use_onednn):
    """oneDNN multiplies a right operand with arbitrary strides as it lies, a
    thousand times slower: a small one is copied, a large one goes to torch.mm."""
    if not ONEDNN:
        return
    g = torch.Generator().manual_seed(1)
    F, T, K = 2049, 1200, 40
    V = torch.rand(F, T, generator=g)
    Wt = torch.rand(K, F, generator=g)
    big = V[:, 7:7 + 600]  # (2049 × 600) strided: more than SMALL_COPY entries
    assert big.numel() > products.SMALL_COPY
    assert products._onednn(Wt, big) is None
    _close(products.mm(Wt, big), torch.mm(Wt, big))
    scratch = torch.empty(K, 600)
    assert products.mm_scratch(Wt, big, scratch) is scratch  # torch.mm, into the scratch
    small = torch.rand(K, T, generator=g)[:, 5:505]
    assert products._onednn(torch.rand(F, K, generator=g), small) is not None


def _spectrogram() -> np.ndarray:
    x, sr = load_audio(shared("speech_sisec_dev1/dev1_female4_src_1.wav"), sr=16000)
    v = np.abs(stft(x[:, : 3 * sr], StftConfig.for_rate(sr)))[0]
    spectra.floor_magnitude(v)
    return v


@pytest.mark.parametrize("order", ["alternate", "joint"])
def test_the_engine_fits_alike_with_either_library(order, monkeypatch):
    """100 KL iterations on a real spectrogram, in chunks on two workers, with a
    block of missing bins (alternating) or of posterior constraints (joint): the same
    objective with oneDNN's products as with torch's, which the oneDNN run does
    use."""
    V = _spectrogram()
    F, T = V.shape
    K = 12
    rng = np.random.default_rng(0)
    s = np.sqrt(V.mean() / K)
    W0 = (rng.uniform(0.5, 1.5, (F, K)) * s).astype(np.float32)
    H0 = (rng.uniform(0.5, 1.5, (K, T)) * s).astype(np.float32)
    half = T // 2
    gen = torch.Generator().manual_seed(2)
    observed = [torch.ones(F, half), torch.rand(F, T - half, generator=gen) > 0.2]
    penalties = [torch.rand(2, F, half, generator=gen) * 0.8 + 0.2, None]
    extra = ({"observed": observed} if order == "alternate" else
             {"groups": [slice(0, 6), slice(6, K)], "penalties": penalties})
    fits = {}
    calls = []
    real = products._onednn
    monkeypatch.setattr(products, "_onednn", lambda a, b: calls.append(1) or real(a, b))
    for library in ("torch", "onednn"):
        monkeypatch.setattr(products, "_decided", library == "onednn" and ONEDNN)
        W = torch.as_tensor(W0.copy())
        H = [torch.as_tensor(H0[:, :half].copy()), torch.as_tensor(H0[:, half:].copy())]
        Vb = [torch.as_tensor(V[:, :half]), torch.as_tensor(V[:, half:])]
        res = engine.fit(Vb, W, H, NullContext(), max_iter=100, tol=0.0, check_every=10,
                         chunk=37, threads=2, order=order, **extra)
        fits[library] = (res.objective, W.numpy())
        if library == "torch":
            assert not calls
    assert bool(calls) == ONEDNN
    obj_t, obj_o = np.array(fits["torch"][0]), np.array(fits["onednn"][0])
    assert np.all(np.diff(obj_o) < 0)
    np.testing.assert_allclose(obj_o, obj_t, rtol=1e-4)
    np.testing.assert_allclose(fits["onednn"][1], fits["torch"][1], rtol=0.05, atol=1e-6)
