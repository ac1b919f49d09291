"""The NMF engine's float32 matrix products on the CPU, by the faster of two libraries.

``torch.mm`` on float32 CPU tensors calls the BLAS torch was built with (Intel's
MKL in the pinned wheels). On some CPUs MKL does not use the widest vector
units: on 2026-11-26's AMD EPYC (Zen 5, AVX-512), one (2049 × 40) · (40 × 511)
product ran at 95–104 GFLOP/s on one thread through MKL and at 200–234 GFLOP/s
through oneDNN, the library torch already uses for its bfloat16 products, with
the same float32 arithmetic (relative differences of 1e-6: the sums' order).
MKL is Intel's own and may well be level with oneDNN on Intel's CPUs, so
:func:`mm` takes oneDNN only where it is timed clearly faster here
(:func:`onednn_faster`, once per process), and torch's product everywhere else
(GPUs, other dtypes, builds without oneDNN).

oneDNN is reached through ``torch.ops.mkldnn._linear_pointwise`` (a linear layer,
``a @ wᵀ``), which the pinned torch provides; any other torch that lacks it, or
gives a different result, falls back to ``torch.mm``.
"""

from __future__ import annotations

import threading
import time

import torch

#: oneDNN is used when its products take at most 1 / this of MKL's time here.
ONEDNN_MARGIN = 1.15

_probe_lock = threading.Lock()


#: A right operand in another layout is copied when it has at most this many entries
#: (a chunk's activations: rank × frames); a larger one takes ``torch.mm``.
SMALL_COPY = 1 << 18


def _onednn(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor | None:
    """``a @ b`` through oneDNN's float32 matrix product (a linear layer, ``a @ wᵀ``
    with ``w = bᵀ``), or None where the layouts would make it slow.

    oneDNN takes ``a`` with contiguous rows (any row stride: a chunk of a block)
    or transposed, and ``w`` contiguous or transposed; a ``w`` with any other
    strides (the columns of a chunk's activations, ``H[:, a:b]``) is not packed
    but multiplied as it lies, a thousand times slower (1.7 s against 0.4 ms
    for a (40 × 2049) · (2049 × 511) product on 2026-11-26), so a small one is
    copied first and a large one left to ``torch.mm``.
    """
    if not (a.stride(-1) == 1 or a.t().is_contiguous()):
        return None
    if not (b.is_contiguous() or b.t().is_contiguous()):
        if b.numel() > SMALL_COPY:
            return None
        b = b.contiguous()
    return torch.ops.mkldnn._linear_pointwise(a, b.t(), None, "none", [], "")


def _by_onednn(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor | None:
    """``a @ b`` by oneDNN where it is the faster here, else None."""
    if (a.dtype == b.dtype == torch.float32 and a.device.type == "cpu" and a.numel()
            and b.numel() and onednn_faster()):
        return _onednn(a, b)
    return None


def mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b``: (m, k) · (k, n) → (m, n), a new tensor.

    Float32 CPU products go through oneDNN where :func:`onednn_faster` says so.
    """
    y = _by_onednn(a, b)
    return torch.mm(a, b) if y is None else y


def mm_scratch(a: torch.Tensor, b: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """``a @ b`` in ``scratch`` (m, n), or in a new tensor where oneDNN makes one
    anyway: a chunk's model, which the caller then overwrites, is not copied."""
    y = _by_onednn(a, b)
    return torch.mm(a, b, out=scratch) if y is None else y


_decided: bool | None = None


def timed() -> bool:
    """Whether :func:`onednn_faster` has timed the two libraries in this process."""
    return _decided is not None


def onednn_faster() -> bool:
    """Whether oneDNN's float32 products are clearly faster than torch's here.

    Timed once per process (about 0.1 s): the three products of a KL sweep
    (``W H``, ``Wᵀ R``, ``R Hᵀ`` at rank 40) over a (1025 × 4096) spectrogram
    (16 MB, more than a core's cache) in 1023-frame chunks, as the engine's
    workers run them, on the caller's threads (:func:`.engine.fit` asks first on
    one, as its workers run), the best of three rounds each way.
    Where oneDNN is missing or disagrees with ``torch.mm``, False.
    """
    global _decided
    if _decided is None:
        with _probe_lock:  # (a fit's workers may ask at once; one times, the rest wait)
            if _decided is None:
                _decided = _timed()
    return _decided


def _timed() -> bool:
    gen = torch.Generator().manual_seed(0)
    F, T, K, C = 1025, 4096, 40, 1023
    V = torch.rand(F, T, generator=gen) + 0.1
    W = torch.rand(F, K, generator=gen)
    H = torch.rand(K, T, generator=gen)
    Wt = W.t().contiguous()

    def sweep(product) -> float:
        start = time.perf_counter()
        for a in range(0, T, C):
            Hc = H[:, a:a + C]
            R = V[:, a:a + C] / product(W, Hc)
            product(Wt, R)
            product(R, Hc.t())
        return time.perf_counter() - start

    try:  # (a torch whose oneDNN op is missing, refuses these or computes otherwise: no)
        if not torch.backends.mkldnn.is_available():
            return False
        y = _onednn(W, H[:, :C])
        if y is None or not torch.allclose(y, W @ H[:, :C], rtol=1e-4, atol=1e-6):
            return False
        best = {"mkl": float("inf"), "onednn": float("inf")}
        for _ in range(3):  # interleaved, so a change of the machine's load hits both
            best["mkl"] = min(best["mkl"], sweep(torch.mm))
            best["onednn"] = min(best["onednn"], sweep(_onednn))
    except (RuntimeError, AttributeError, TypeError, NotImplementedError):
        return False
    return best["onednn"] * ONEDNN_MARGIN <= best["mkl"]
