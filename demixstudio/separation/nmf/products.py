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

The choice is remembered per machine. The two libraries' sums differ in their
order, so a fit's masks differ by up to 1e-4 (mean 2e-6) with one or the other,
and where the two are close (1.19–1.28× on 2026-11-26's second machine, about the
margin) a timing in each process would pick either from run to run. So the first
timing on a machine is kept in the user's cache folder (:func:`cache_file`), keyed
by the CPU, its core count and torch's version, and later processes take it from
there: runs on one machine stay repeatable. Processes that start together (a
batch's workers) take turns at a lock beside the file: one times, the others read
its answer. ``DEMIXSTUDIO_CPU_PRODUCTS=onednn`` or ``blas`` pins the choice
(``auto``, the default: the timing, remembered).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import threading
import time
from pathlib import Path

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


#: Pins the library: "onednn", "blas" (``torch.mm``) or "auto" (timed, remembered).
ENV_VAR = "DEMIXSTUDIO_CPU_PRODUCTS"
#: The folder of the remembered timing (default: the user's cache folder).
CACHE_ENV_VAR = "DEMIXSTUDIO_CACHE_DIR"


def onednn_faster() -> bool:
    """Whether oneDNN's float32 products are clearly faster than torch's here.

    Decided once per process: where oneDNN is missing or disagrees with
    ``torch.mm``, False; else as :data:`ENV_VAR` pins it, or as this machine's
    remembered timing says (:func:`cache_file`), or timed now and remembered
    (about 0.1 s): the three products of a KL sweep (``W H``, ``Wᵀ R``, ``R Hᵀ``
    at rank 40) over a (1025 × 4096) spectrogram (16 MB, more than a core's cache)
    in 1023-frame chunks, as the engine's workers run them, on the caller's threads
    (:func:`.engine.fit` asks first on one, as its workers run), the best of three
    rounds each way.
    """
    global _decided
    if _decided is None:
        with _probe_lock:  # (a fit's workers may ask at once; one times, the rest wait)
            if _decided is None:
                _decided = _decide()
    return _decided


def _decide() -> bool:
    pinned = os.environ.get(ENV_VAR, "").strip().lower() or "auto"
    if pinned not in ("auto", "onednn", "blas"):
        raise ValueError(f"{ENV_VAR}={pinned!r}: use onednn, blas or auto")
    if pinned == "blas" or not _works():
        return False
    if pinned == "onednn":
        return True
    key = machine_key()
    known = _remembered().get(key)
    if isinstance(known, bool):
        return known
    # Several processes starting at once (a batch's workers) would each time and
    # could each choose otherwise; the first to take the lock times, the others wait
    # and take its answer. A lock that cannot be made or is held too long (a folder
    # that cannot be written, a stuck process): timed here without it.
    with _machine_lock():
        known = _remembered().get(key)
        if isinstance(known, bool):
            return known
        faster = _timed()
        _remember(key, faster)
    return faster


#: Seconds a process waits for another's timing before timing on its own.
LOCK_WAIT_S = 30.0


@contextlib.contextmanager
def _machine_lock():
    """Hold the cache file's lock (``cpu_products.json.lock``) while the body runs, or
    run it unlocked where the lock cannot be had within :data:`LOCK_WAIT_S`."""
    from filelock import FileLock, Timeout

    path = cache_file()
    lock: FileLock | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path.with_name(path.name + ".lock")), timeout=LOCK_WAIT_S)
        lock.acquire()
    except (OSError, Timeout):
        lock = None
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def cache_file() -> Path:
    """Where the timing is remembered: ``$DEMIXSTUDIO_CACHE_DIR/cpu_products.json``,
    else in the user's cache folder (``platformdirs.user_cache_dir``)."""
    folder = os.environ.get(CACHE_ENV_VAR)
    if not folder:
        import platformdirs

        folder = platformdirs.user_cache_dir("demixstudio", appauthor=False)
    return Path(folder).expanduser() / "cpu_products.json"


def machine_key() -> str:
    """The CPU (its model and its instruction sets, hashed), its core count and
    torch's version: what the timing depends on."""
    model, flags = platform.processor() or platform.machine(), ""
    with contextlib.suppress(OSError):  # (no /proc/cpuinfo: the platform's name alone)
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                name, _, value = line.partition(":")
                name = name.strip()
                if name == "model name":
                    model = value.strip()
                elif name in ("flags", "Features"):
                    flags = value.strip()
                if model and flags and name == "":
                    break  # (the first CPU's entry is enough)
    digest = hashlib.sha1(flags.encode()).hexdigest()[:12]
    return f"{model} | {digest} | {os.cpu_count()} cores | torch {torch.__version__}"


def _remembered() -> dict:
    try:
        data = json.loads(cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _remember(key: str, faster: bool) -> None:
    """Add the timing to the cache file (replaced whole, so a reader never sees half
    of it); where it cannot be written (read-only, full disk), it is timed again
    next time."""
    path = cache_file()
    data = {**_remembered(), key: faster}
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


#: Frames of the timing's chunks.
_CHUNK = 1023


def _works() -> bool:
    """Whether oneDNN's op is there and gives ``torch.mm``'s product."""
    try:  # (a torch whose oneDNN op is missing, refuses these or computes otherwise: no)
        if not torch.backends.mkldnn.is_available():
            return False
        gen = torch.Generator().manual_seed(0)
        W, H = torch.rand(1025, 40, generator=gen), torch.rand(40, _CHUNK, generator=gen)
        y = _onednn(W, H)
        return y is not None and torch.allclose(y, W @ H, rtol=1e-4, atol=1e-6)
    except (RuntimeError, AttributeError, TypeError, NotImplementedError):
        return False


def _timed() -> bool:
    """Whether oneDNN's sweep is at least :data:`ONEDNN_MARGIN` times faster here."""
    gen = torch.Generator().manual_seed(0)
    F, T, K, C = 1025, 4096, 40, _CHUNK
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

    try:  # (an op that passed the check above but refuses these operands: no)
        best = {"mkl": float("inf"), "onednn": float("inf")}
        for _ in range(3):  # interleaved, so a change of the machine's load hits both
            best["mkl"] = min(best["mkl"], sweep(torch.mm))
            best["onednn"] = min(best["onednn"], sweep(_onednn))
    except (RuntimeError, AttributeError, TypeError, NotImplementedError):
        return False
    return best["onednn"] * ONEDNN_MARGIN <= best["mkl"]
