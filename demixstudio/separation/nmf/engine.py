"""Multiplicative-update NMF for the β-divergence, in torch, over blocks of frames.

Model: ``V ≈ W H`` with ``V`` (bins, frames) non-negative, ``W`` (bins, K)
spectral templates and ``H`` (K, frames) activations. The updates are the
heuristic multiplicative ones of Févotte & Idier (2011), with the exponent
γ(β) that makes them monotone::

    H ← H ⊙ [Wᵀ(V ⊙ Z^{β−2}) / (Wᵀ Z^{β−1} + λ)]^γ
    W ← W ⊙ [(V ⊙ Z^{β−2}) Hᵀ / (Z^{β−1} Hᵀ)]^γ

with ``Z = W H``. On top of the plain model:

- any subset of W columns and H rows can be held fixed;
- L1 sparsity ``λ Σ H`` on the activations (per row). W columns are kept at
  unit sum without it; with it they are kept at unit L2 norm, and the W step
  is the one for the normalised model (Eggert & Körner 2004; Le Roux,
  Weninger & Hershey 2015, "Sparse NMF – half-baked or well done?"), so the
  penalty can be dodged neither by scaling nor, under KL, be a mere rescaling
  (with unit-sum templates Σ H is the model's total mass, so under KL an L1
  penalty on H changes only the scale of the fit, not its shape);
- a prior on W columns towards example templates ``W₀``, as pseudo-counts in
  the EM form of the KL update, ``W ← (W ⊙ N + α W₀) / (D + α)``, with a
  weight α that anneals to zero (Smaragdis & Mysore 2009);
- per-bin constraints on the posterior over component groups (posterior
  regularisation as in Bryan & Mysore 2013, for KL): the E-step's posterior
  ``q(k | f, t) ∝ W_fk H_kt`` becomes ``∝ W_fk H_kt exp(−Λ_{g(k), f, t})``;
- a weight per bin (0 = missing, 1 = observed) for filling missing data;
- temporal continuity of the activations (Virtanen 2007): the cost
  ``c Σ_k D_k / S_k``, with ``D_k`` the sum of squared differences of row k's
  consecutive activations and ``S_k`` the sum of their squares (so it does not
  depend on the rows' scale), its gradient split into the H step's numerator
  and denominator as in that paper.

Two orders of the updates (``order``):

- ``"joint"`` (KL only): W and H are both updated from the same
  posterior, as in the EM algorithm for KL-NMF / PLCA (Shashanka, Raj &
  Smaragdis 2008): one pass computes ``R = V / Z`` once and uses it for both
  numerators, so an iteration costs three matrix products instead of four and
  one element-wise ratio instead of two. EM is monotone, and the posterior
  constraints and the W prior are its E- and M-step variants. Per iteration
  it descends a little more slowly than the alternating order (after 100
  iterations from the same start the KL reached is about 0.6 % higher on the
  benchmark's spectrogram), so it wins when time, not the iteration count,
  is the budget.
- ``"alternate"`` (the default): W, then H with the new W (Lee & Seung's
  order, and scikit-learn's: from the same start both follow the same path).
  From random starts it separates slightly better for a given iteration cap,
  and it is the only order for β ≠ 1, where simultaneous updates are not
  known to be monotone.

Long inputs: ``V`` is held once, as a list of frame blocks (each a
contiguous (bins, B) tensor); each iteration walks the blocks, updating the
block's activations and accumulating the W statistics, so temporaries are
one block in size. Rows of H are independent given W, so with W fixed the
blocks are exactly separate problems. On the CPU each block is walked in
cache-sized chunks of frames (:func:`chunk_frames`): the model, the ratio V / Z
and the two products that use it stay in cache between them. With
several CPU threads, each worker thread takes a contiguous share of the
chunks (single-threaded products) and the workers meet once per sweep; a
block holding fewer chunks than workers (a dictionary learned on some seconds
of example) is cut for them all (``_chunks``: on two threads, a 7 s mixture
with 6 s examples in ``nmf-supervised`` went from 1.38 to 1.0 s).
A fit too small for its workers to gain (``MIN_SHARE_ENTRIES``: under 400 000
entries of V on two threads) runs on the calling thread alone, torch's
intra-op threads included.
The objective is computed only every ``check_every`` iterations, for the
stopping rule.

Everything is float32, except, where asked (``precision``), the inputs of the
plain KL products: on a CPU with native bfloat16 dot products those products
take bfloat16 inputs (the ratio V / Z, formed from V and the model in
bfloat16, and the factors, rounded once per use) and sum in float32, about 1.4×
faster per iteration in the alternating order and 1.6× in the joint one on
some machines (as fast as float32 on others, where ``auto`` keeps float32),
with the KL after 100 iterations within 0.21 % of the float32 fit's in the same
order (``bench_nmf_engine.py``, 2026-11-25). The float32 products on the CPU
are oneDNN's where they are timed faster than torch's BLAS (:mod:`.products`;
the timing is remembered per machine, so that later runs take the same library).
CPU runs are deterministic for a given seed, thread count, precision and machine.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from demixstudio.errors import ParameterError
from demixstudio.jobs.context import JobContext, NullContext
from demixstudio.devices import DEVICE_CHOICES
from demixstudio.devices import pick_device as _pick_device
from demixstudio.separation.nmf.products import mm, mm_scratch, onednn_faster
from demixstudio.separation.nmf.products import timed as products_timed

#: Floor for factor entries and the model, so ratios never divide by zero.
EPS = 1e-12
#: Default number of frames per block (about 47 s at the 44.1 kHz program STFT).
BLOCK_FRAMES = 4096
DEVICES = DEVICE_CHOICES


# Torch's intra-op thread count is process-wide. Fits that run their own worker
# threads hold it at 1 while they run; the first of them to start saves the
# user's count and the last to finish puts it back, so fits that overlap (two
# jobs in the editor, a batch run in threads) neither leave the process stuck
# on one thread nor take the count they see mid-fit (1) as the user's.
_threads_lock = threading.Lock()
_threads_holders = 0
_threads_saved = 0


# A task of :func:`.tasks.run_at_once` runs its fits on its own thread alone.
_task = threading.local()


def cpu_threads() -> int:
    """Torch's CPU thread count as the user set it (not the 1 a running fit holds);
    1 on a thread inside :func:`fits_on_this_thread`."""
    if getattr(_task, "alone", False):
        return 1
    with _threads_lock:
        return _threads_saved if _threads_holders else torch.get_num_threads()


@contextlib.contextmanager
def single_threaded_ops() -> Iterator[None]:
    """Hold torch's intra-op thread count at 1 (re-entrant across threads)."""
    global _threads_holders, _threads_saved
    with _threads_lock:
        if _threads_holders == 0:
            _threads_saved = torch.get_num_threads()
            torch.set_num_threads(1)
        _threads_holders += 1
    try:
        yield
    finally:
        with _threads_lock:
            _threads_holders -= 1
            if _threads_holders == 0:
                torch.set_num_threads(_threads_saved)


@contextlib.contextmanager
def fits_on_this_thread() -> Iterator[None]:
    """Fits started on this thread inside it use no worker threads of their own
    (:func:`cpu_threads` reads 1 here): for fits run side by side, one per thread."""
    before = getattr(_task, "alone", False)
    _task.alone = True
    try:
        yield
    finally:
        _task.alone = before


#: Precisions of the matrix products (``fit(precision=...)``).
PRECISIONS = ("auto", "float32", "bfloat16")


def product_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype of the plain KL products for ``precision`` on ``device``.

    ``auto`` is bfloat16 on a CPU with native bfloat16 dot products (AVX-512 BF16
    or AMX) where the engine's iterations with them are measured to be clearly faster
    (:func:`bfloat16_faster`), and float32 elsewhere: on other CPUs bfloat16 is
    emulated and slower, and on a GPU float32 products are not the bottleneck.
    """
    if precision not in PRECISIONS:
        raise ParameterError(f"precision={precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "float32" or (precision == "auto" and not (
            native_bfloat16(device) and bfloat16_faster())):
        return torch.float32
    return torch.bfloat16


#: ``precision="auto"`` takes bfloat16 products when they are at least this much
#: faster than float32 ones here (they also round the products' inputs).
BFLOAT16_MARGIN = 1.25


@functools.lru_cache(maxsize=1)
def bfloat16_faster() -> bool:
    """Whether the engine's plain KL iterations with bfloat16 products take at most
    1 / :data:`BFLOAT16_MARGIN` of their float32 time. Timed once per process by
    :func:`fit` itself, on one thread as each of its workers runs, on a (1025 ×
    2048) spectrogram (8 MB, more than a core's cache) at rank 40 in the joint order:
    the best of two fits of twelve iterations less the best of two of two (about
    0.2 s in all). Fits of five iterations, timed whole until 2026-11-26, counted
    bfloat16's copy of ``V`` and the two objectives as iterations: on that day's
    AMD EPYC they made bfloat16 1.15–1.2× faster than float32 (with oneDNN's
    float32 products, :mod:`.products`) where its iterations are 1.4–1.7× faster.

    The whole fit is timed, not the products alone: products that are fast on a
    chunk in cache need not make a sweep faster where streaming the spectrogram
    is what costs (2026-11-25, an AMX machine: the products of a cached chunk
    2.4× faster, a sweep no faster).

    Native bfloat16 instructions do not make it so on every CPU: with
    ``bench_nmf_engine.py`` (2049 × 5670, rank 40, 2 threads) one 2-core AVX-512
    BF16 machine took 25–28 ms an iteration with bfloat16 products against 36–37
    ms in float32 (2026-11-22, -23), another (2026-11-24) 45 ms against 23."""
    gen = torch.Generator().manual_seed(0)
    F, T, K = 1025, 2048, 40
    V = [torch.rand(F, T, generator=gen) + 0.1]
    W0 = torch.rand(F, K, generator=gen) + 0.1
    H0 = torch.rand(K, T, generator=gen) + 0.1

    def run(precision: str, iterations: int) -> float:
        best = float("inf")
        for _ in range(2):
            W, H = W0.clone(), [H0.clone()]
            start = time.perf_counter()
            fit(V, W, H, NullContext(), max_iter=iterations, tol=0.0, check_every=1 << 30,
                order="joint", precision=precision, threads=1)
            best = min(best, time.perf_counter() - start)
        return best

    def per_iteration(precision: str) -> float:
        # The difference of two fits' times: a fit's set-up (bfloat16's copy of V,
        # the first and last iterations' objective) is the same in both and drops out.
        return run(precision, 12) - run(precision, 2)

    with single_threaded_ops():  # (one worker runs in the caller's thread)
        onednn_faster()  # (its own timing, once, kept out of these)
        return per_iteration("bfloat16") * BFLOAT16_MARGIN <= per_iteration("float32")


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` is a CPU that multiplies bfloat16 natively."""
    if device.type != "cpu":
        return False
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, c, lambda: False)()) for c in checks)


def pick_device(name: str = "auto") -> torch.device:
    """The torch device called ``name``; ``auto`` picks cuda, then mps, then the CPU."""
    return _pick_device(name)


def gamma_exponent(beta: float) -> float:
    """Exponent of the MU step that makes it monotone (Févotte & Idier 2011, eq. 7)."""
    if beta < 1:
        return 1.0 / (2.0 - beta)
    if beta > 2:
        return 1.0 / (beta - 1.0)
    return 1.0


@dataclass
class WPrior:
    """Annealed prior pulling some W columns towards templates.

    columns : indices of the W columns concerned, (k,)
    templates : float32 (bins, k), unit-sum columns
    weight : initial weight; 1 pulls as hard as the data at the start
    anneal_iters : the weight falls linearly to 0 over this many iterations
    """

    columns: Sequence[int]
    templates: torch.Tensor
    weight: float = 1.0
    anneal_iters: int = 100

    def weight_at(self, it: int) -> float:
        if self.anneal_iters <= 0:
            return self.weight
        return self.weight * max(0.0, 1.0 - it / self.anneal_iters)


@dataclass
class FitResult:
    """What :func:`fit` returns.

    W : float32 (bins, K), unit-sum columns
    H : list of float32 (K, B) blocks, one per block of V
    objective : the objective at each check (every ``check_every`` iterations)
    iterations : iterations run
    converged : whether the relative change fell below ``tol``
    """

    W: torch.Tensor
    H: list[torch.Tensor]
    objective: list[float] = field(default_factory=list)
    iterations: int = 0
    converged: bool = False

    def h_numpy(self) -> np.ndarray:
        """All activations as one float32 (K, frames) array."""
        return torch.cat([h.cpu() for h in self.H], dim=1).numpy()


def split_frames(V: np.ndarray | torch.Tensor, block: int, device: torch.device
                 ) -> list[torch.Tensor]:
    """Contiguous float32 (bins, B) blocks of ``V`` (bins, frames) on ``device``.

    A block may share memory with ``V`` (no copy is made where none is needed):
    pass a copy if the blocks will be updated in place and ``V`` must survive.
    """
    if block < 1:
        raise ParameterError(f"block={block} must be a positive number of frames")
    T = V.shape[1]
    out = []
    for t0 in range(0, T, block):
        b = V[:, t0:t0 + block]
        b = torch.as_tensor(np.ascontiguousarray(b)) if isinstance(b, np.ndarray) else b
        out.append(b.to(device=device, dtype=torch.float32).contiguous())
    return out


def random_init(shape, scale: float, seed: int, device: torch.device) -> torch.Tensor:
    """Uniform(0.5, 1.5)·scale, float32, from a CPU generator so every device starts alike."""
    g = torch.Generator().manual_seed(int(seed))
    x = torch.rand(shape, generator=g, dtype=torch.float32).add_(0.5).mul_(scale)
    return x.to(device)


def beta_divergence(V: torch.Tensor, Z: torch.Tensor, beta: float,
                    weight: torch.Tensor | None = None, scratch: torch.Tensor | None = None
                    ) -> float:
    """Σ d_β(V | Z) (optionally weighted per bin), as a Python float.

    ``scratch``: a tensor of ``Z``'s shape and dtype that KL may overwrite (None: one is
    allocated). KL is summed as Σ V log(V / Z) − Σ V + Σ Z, four passes over the data in
    place, where the term-by-term form made six new tensors (the engine's check
    iterations then cost as much again as the iteration itself). Sums are
    :func:`sum64`'s: on float32 data the result agrees with the terms' float64 sum to
    about 1e-8."""
    if beta == 1:
        d = scratch if scratch is not None else torch.empty_like(Z, dtype=torch.result_type(V, Z))
        torch.div(V, Z, out=d)
        # V log(V / Z), 0 where V is 0 (the ratio is floored so that its log is finite).
        d.clamp_min_(torch.finfo(d.dtype).tiny).log_().mul_(V)
        if weight is None:
            return sum64(d) - sum64(V) + sum64(Z)
        d.sub_(V).add_(Z).mul_(weight)
        return sum64(d)
    if beta == 0:
        r = V.clamp_min(EPS) / Z
        d = r - torch.log(r) - 1
    elif beta == 2:
        d = 0.5 * (V - Z) ** 2
    else:
        d = (V.pow(beta) + (beta - 1) * Z.pow(beta) - beta * V * Z.pow(beta - 1)) / (beta * (beta - 1))
    if weight is not None:
        d = d * weight
    return sum64(d)


def sum64(x: torch.Tensor) -> float:
    """Σ x as a Python float: along the last axis on x's device in x's dtype (fast and
    accurate over a row), the row sums in float64 on the CPU. No float64 tensor is
    made on the device: Apple's MPS, which ``auto`` may pick, has no float64."""
    rows = x.sum(-1)
    if rows.dtype in (torch.bfloat16, torch.float16):  # (numpy has no bfloat16)
        rows = rows.float()
    return float(rows.cpu().numpy().sum(dtype=np.float64))


class _Buffers:
    """One (bins, B) scratch tensor per block width (and dtype), reused every iteration."""

    def __init__(self, bins: int, device: torch.device) -> None:
        self.bins, self.device = bins, device
        self._bufs: dict[tuple, torch.Tensor] = {}

    def get(self, width: int, slot: int = 0, dtype: torch.dtype = torch.float32
            ) -> torch.Tensor:
        key = (width, slot, dtype)
        if key not in self._bufs:
            self._bufs[key] = torch.empty((self.bins, width), dtype=dtype, device=self.device)
        return self._bufs[key]


#: The float32 bytes of (bins, C) that :func:`chunk_frames` sizes a CPU chunk to.
CHUNK_BYTES = 4 << 20


def chunk_frames(bins: int, device: torch.device = torch.device("cpu")) -> int | None:
    """Frames per chunk on ``device``: on the CPU, about 4 MB of (bins, C) float32.

    The updates stream the spectrogram through two matrix products and an
    element-wise ratio; done some hundreds of frames at a time, the model and
    the ratio stay in the CPU's caches between the three steps instead of
    going out to memory and back. Each chunk also costs a dozen operator calls
    in Python, and the workers take turns at the interpreter for them, so chunks
    much smaller than this lose to that overhead: on 2026-11-25's two-core Xeon
    (2 MB of L2 a core), 4 MB chunks were 5–15 % faster than 2 MB ones on every
    shape measured (1025–6147 bins, rank 24–64, either order, W free or fixed;
    ``benchmarks/NMF_NOTES.md``, session 69), and 8 MB ones not on every shape.
    On a GPU the whole block is one launch (None).
    """
    if device.type != "cpu":
        return None
    return int(min(4096, max(32, CHUNK_BYTES // (4 * max(bins, 1)))))


def fit(V: list[torch.Tensor], W: torch.Tensor, H: list[torch.Tensor], ctx: JobContext, *,
        beta: float = 1.0,
        fixed_w: Sequence[int] | None = None,
        fixed_h: Sequence[int] | None = None,
        sparsity: float | torch.Tensor = 0.0,
        continuity: float = 0.0,
        prior: WPrior | None = None,
        groups: Sequence[slice] | None = None,
        penalties: list[torch.Tensor | None] | None = None,
        observed: list[torch.Tensor] | None = None,
        max_iter: int = 200, tol: float = 1e-4, check_every: int = 10, min_iter: int = 0,
        chunk: int | None = None, threads: int | None = None, order: str = "alternate",
        precision: str = "float32", message: str = "NMF") -> FitResult:
    """Run multiplicative updates in place on ``W`` and the ``H`` blocks.

    Parameters
    ----------
    V : list of float32 (bins, B_i) blocks of the data, non-negative
    W : float32 (bins, K); columns are renormalised to unit sum
    H : list of float32 (K, B_i), one per block of V
    beta : the β of the divergence (2 Euclidean, 1 KL, 0 Itakura–Saito)
    fixed_w : indices of W columns not updated (None = none; all of them = W fixed)
    fixed_h : indices of H rows not updated
    sparsity : λ of the L1 penalty on H, a float or a (K,) tensor (per component)
    continuity : weight of the temporal-continuity cost on H (0 = none), relative to
        the data: the cost is ``continuity · (ΣV / K) · Σ_k D_k / S_k``, so its
        pull on an activation is about ``continuity`` times the data's, whatever
        the input's level, length or rank. Consecutive frames are linked within
        each block of V (a block's first and last frames have one neighbour);
        alternating order only
    prior : an annealed prior on some W columns (see :class:`WPrior`)
    groups : K components split into groups by slices (for ``penalties``)
    penalties : per block, float32 (G, bins, B) multipliers exp(−Λ) of each group's
        posterior (KL only), or None for a block without constraints (the plain
        products: all-ones multipliers give the same fit at about twice the cost)
    observed : per block, float32 (bins, B) weights, 0 where V is missing (or bool
        blocks, True where observed: an eighth of the memory, converted a chunk at a time).
        Chunks whose weights are all one take the plain products; with W fixed, the
        others keep their H step's denominator (K, chunk) after the first sweep
    max_iter, tol : stop after ``max_iter`` iterations, or when the objective's relative
        change per iteration, measured every ``check_every`` iterations, is below ``tol``
        (not before ``min_iter`` iterations)
    chunk : frames processed at a time inside a block (None = :func:`chunk_frames`);
        it changes only the speed, not the result (up to rounding)
    threads : CPU workers at most (None = torch's thread count); a fit gets only as
        many as give each a share of :data:`MIN_SHARE_ENTRIES` entries of V (one for a
        small fit, on this thread), unless ``chunk`` is given. Each worker takes a
        contiguous share of the chunks and runs its products on one thread, so
        the workers meet once per sweep instead of at every product (which
        costs dearly when another process holds a core). Torch's intra-op
        thread count is held at 1 during the fit (:func:`single_threaded_ops`,
        which restores it when the last overlapping fit ends).
    order : "alternate" (W, then H with the new W; the default) or "joint" (W and H
        from the same posterior, EM; KL only); with W fixed the two are the same
    precision : of the matrix products of plain KL chunks (no weights, no posterior
        constraints): "float32", "bfloat16" (inputs rounded to bfloat16, sums in
        float32; the factors and the updates stay float32, and ``V`` is not changed:
        the ratio reads a rounded copy of its chunks, :class:`_LowData`) or "auto"
        (bfloat16 on a CPU that multiplies it natively and where it is timed faster,
        else float32); see :func:`product_dtype`

    The objective is only evaluated on check iterations (from the model the
    H step computes anyway), so it costs nothing in between.

    Returns
    -------
    FitResult
    """
    if beta < 0 or beta > 3:
        raise ParameterError(f"beta={beta} must be between 0 and 3")
    if penalties is not None and beta != 1:
        raise ParameterError(f"posterior constraints need beta=1 (KL); got beta={beta}")
    if penalties is not None and groups is None:
        raise ParameterError("penalties need groups")
    if max_iter < 0:
        raise ParameterError(f"max_iter={max_iter} must be ≥ 0")
    if order not in ("joint", "alternate"):
        raise ParameterError(f"order={order!r} is not one of joint, alternate")
    if order == "joint" and beta != 1:
        raise ParameterError(f"the joint (EM) order needs beta=1 (KL); got beta={beta}")
    if not continuity >= 0:
        raise ParameterError(f"continuity={continuity} must be ≥ 0")
    if continuity and order == "joint":
        raise ParameterError("the joint (EM) order does not take a continuity cost; "
                             "use order='alternate'")
    joint = order == "joint"
    device = W.device
    if device.type == "cpu" and not products_timed():
        with single_threaded_ops():  # (timed once per process, on one thread as a worker)
            onednn_faster()
    low_dtype = product_dtype(precision, device)
    low_dtype = None if low_dtype == torch.float32 else low_dtype
    F, K = W.shape
    C = int(chunk) if chunk else chunk_frames(F, device)
    C = C or max(v.shape[1] for v in V)
    n_threads = cpu_threads() if threads is None else int(threads)
    widths = [v.shape[1] for v in V]
    sized_here = device.type == "cpu" and not chunk  # (a given chunk is shared as it is)
    if sized_here:
        n_threads = shared_workers(F * sum(widths), n_threads)
    chunks = _chunks(widths, C, n_threads if sized_here else 1)
    workers = max(1, min(n_threads, len(chunks))) if device.type == "cpu" else 1
    # Chunks whose weights are all one (a band limit's fitted rows, a hidden half's
    # predictors) take the plain products: the same update without the weighted
    # denominator's product and the masking, a third of the work or more, and the
    # low precision where it is asked for.
    weighted = ({(i, a) for i, a, b in chunks if not _all_ones(observed[i][:, a:b])}
                if observed is not None else set())
    gam = gamma_exponent(beta)
    fixed_w_set = set(int(k) for k in (fixed_w or ()))
    free_w = torch.tensor([k for k in range(K) if k not in fixed_w_set], dtype=torch.long,
                          device=device)
    all_w_free = free_w.numel() == K
    update_w = free_w.numel() > 0
    fixed_h_set = set(int(k) for k in (fixed_h or ()))
    h_keep = None
    if fixed_h_set:
        h_keep = torch.zeros(K, 1, dtype=torch.bool, device=device)
        h_keep[list(fixed_h_set)] = True
    lam = torch.as_tensor(sparsity, dtype=torch.float32, device=device)
    lam = lam.reshape(-1, 1) if lam.ndim else lam
    has_l1 = bool((lam != 0).any())
    if joint and has_l1:
        raise ParameterError("the joint (EM) order does not take an L1 penalty; "
                             "use order='alternate'")
    bufs = _Buffers(F, device)
    low_v = _LowData(V, low_dtype) if low_dtype is not None else None
    prior_cols = (torch.as_tensor(list(prior.columns), dtype=torch.long, device=device)
                  if prior is not None else None)
    # KL without weights: the W step's denominator is H's row sums, found after the pass.
    den_rows = beta == 1 and observed is None
    kw = free_w.numel()
    num_w = torch.zeros((F, kw), dtype=torch.float32, device=device) if update_w else None
    den_w = (torch.zeros((1 if den_rows else F, kw), dtype=torch.float32, device=device)
             if update_w else None)
    # Floor the model where it can reach zero or where Z^(β−2) could overflow; with
    # W, H ≥ EPS the plain KL model is positive already, so that pass is skipped.
    floor_model = beta != 1 or penalties is not None

    # Columns whose activations are held fixed keep their scale in W: renormalising
    # them would have to rescale those fixed rows of H.
    scalable = torch.tensor([k not in fixed_h_set for k in range(K)], device=device)
    _normalise(W, H, scalable, has_l1)
    norm_cols = torch.tensor([k not in fixed_w_set and k not in fixed_h_set for k in range(K)],
                             device=device)
    result = FitResult(W=W, H=H)
    # The continuity cost's weight, and its gradient terms for the coming H step
    # (from the activations at the start of the sweep, so every worker reads the same).
    cont_weight = (float(continuity) * sum(sum64(v) for v in V)
                   / max(K, 1)) if continuity else 0.0
    cont: list[list[torch.Tensor]] = []

    # Worker j owns the j-th share of the chunks, its own scratch and W statistics
    # (worker 0 accumulates straight into num_w / den_w); shares are summed in a
    # fixed order, so a run is deterministic for a given number of workers.
    parts = _share(chunks, workers)
    scratch = [bufs] + [_Buffers(F, device) for _ in range(1, workers)]
    stats = [(num_w, den_w)] + [
        (num_w.clone(), den_w.clone()) if update_w else (None, None)
        for _ in range(1, workers)]

    # With W fixed, the KL H step's weighted denominator Wᵀ O (+ λ) is the same every
    # iteration: kept per weighted chunk after its first use (at most H's size), a
    # third of those chunks' products saved.
    den_fixed: dict | None = {} if not update_w and beta == 1 and weighted else None

    def h_denominator(key, Wt, Oc) -> torch.Tensor | None:
        if den_fixed is None or Oc is None:
            return None
        den = den_fixed.get(key)
        if den is None:
            den = mm(Wt, Oc)
            den_fixed[key] = den = den + lam if has_l1 else den
        return den

    def work(j: int, update_h: bool, w_stats: bool, check: bool, Wt, colsum_w, low) -> float:
        obj = 0.0
        wb = scratch[j]
        nw, dw = stats[j]
        if w_stats:
            nw.zero_()
            dw.zero_()
        for i, a, b in parts[j]:
            Vc, Hc = V[i][:, a:b], H[i][:, a:b]
            Oc = observed[i][:, a:b] if (i, a) in weighted else None
            if Oc is not None and not Oc.is_floating_point():
                Oc = Oc.to(torch.float32)  # bool blocks: one chunk-sized float copy
            Pb = penalties[i] if penalties is not None else None
            Pc = Pb[:, :, a:b] if Pb is not None else None
            Z = wb.get(b - a, 0)
            cc = (cont[0][i][:, a:b], cont[1][i][:, a:b]) if cont and update_h else None
            if low is not None and beta == 1 and Pc is None and Oc is None:
                # The plain KL products in the low precision (most chunks of most fits).
                Vl = low_v.chunk((i, a), Vc, wb)
                obj += _low_kl_chunk(Vc, W, Hc, low, wb, colsum_w, h_keep, joint, update_h,
                                     check, nw if w_stats else None, dw, den_rows, free_w,
                                     all_w_free, cc, Vl)
                continue
            if joint:
                obj += _joint_chunk(Vc, W, Wt, Hc, Oc, Pc, groups, Z, wb, colsum_w, has_l1, lam,
                                    free_w, all_w_free, nw if w_stats else None, dw,
                                    h_keep, check, floor_model, h_denominator((i, a), Wt, Oc))
                continue
            if update_h or check:
                Z = _model(W, Hc, Pc, groups, Z, floor_model)
            if check:
                obj += beta_divergence(Vc, Z, beta, Oc, wb.get(b - a, 1))
            if update_h:  # Z is overwritten
                num_h, den_h = _h_statistics(Vc, W, Wt, beta, Oc, Pc, groups, Z, wb,
                                             colsum_w, has_l1, lam,
                                             h_denominator((i, a), Wt, Oc))
                if cc is not None:
                    num_h = num_h.add_(cc[0])
                    den_h = den_h + cc[1]
                step = num_h.div_(den_h.clamp_min(EPS))
                if gam != 1.0:
                    step.pow_(gam)
                if h_keep is not None:
                    step.masked_fill_(h_keep, 1.0)
                Hc.mul_(step).clamp_min_(EPS)
            if w_stats:
                _accumulate_w(Vc, W, Hc, beta, Oc, Pc, groups, Z, wb, free_w,
                              all_w_free, nw, dw, floor_model, den_rows)
        return obj

    def sweep(update_h: bool, w_stats: bool, check: bool) -> float:
        """One pass over every chunk: the H step (if ``update_h``), then the W
        statistics with the (new) activations (if ``w_stats``). Returns the
        objective before the H step when ``check``."""
        Wt = W.t().contiguous()
        colsum_w = W.sum(0).reshape(K, 1)
        if has_l1:
            colsum_w = colsum_w + lam
        low = _LowProducts(W, Wt, low_dtype) if low_dtype is not None else None
        cont.clear()
        if cont_weight and update_h:
            cont.extend(continuity_terms(H, cont_weight))
        args = (update_h, w_stats, check, Wt, colsum_w, low)
        if pool is None:
            objs = [work(0, *args)]
        else:
            # Worker 0 is this thread: one thread fewer to wake and to wait for.
            rest = [pool.submit(work, j, *args) for j in range(1, workers)]
            objs = [work(0, *args)] + [f.result() for f in rest]
        if w_stats:
            for nw, dw in stats[1:]:
                num_w.add_(nw)
                den_w.add_(dw)
        obj = float(sum(objs))
        if check and cont_weight:
            obj += continuity_cost(H, cont_weight)
        if check and has_l1:
            obj += float((lam * torch.stack([h.sum(1) for h in H], 1).sum(1, keepdim=True)).sum())
        return obj

    def w_step(n: int) -> None:
        """The ``n``-th update of W from the statistics of the last sweep."""
        den = den_w
        if den_rows and not joint:  # (the joint sweep gathered the old rows' sums)
            hs = torch.stack([h.sum(1) for h in H], 1).sum(1)
            den = (hs if all_w_free else hs[free_w]).reshape(1, -1)
        Wf = W if all_w_free else W[:, free_w]
        if prior is not None:
            _apply_prior(prior, prior_cols, free_w, Wf, num_w, den, n, F)
        else:
            if has_l1:
                num, den = _l2_normalised_terms(Wf, num_w, den, F)
                num_w.copy_(num)
            step = num_w.div_(den.clamp_min(EPS))
            if gam != 1.0:
                step.pow_(gam)
            Wf.mul_(step)
        if not all_w_free:
            W[:, free_w] = Wf
        W.clamp_min_(EPS)
        # Alternating: the scale moves into H, which is updated next with this W.
        # Joint: H was already updated against the old unit-sum W (the EM step), so
        # the new templates are only renormalised.
        _normalise(W, [] if joint else H, norm_cols, has_l1)

    pool = None
    if workers == 1:
        # A fit too small to share (MIN_SHARE_ENTRIES) runs on this thread alone:
        # torch's own threads, woken for every small operation, made it slower.
        with single_threaded_ops() if device.type == "cpu" else contextlib.nullcontext():
            return _iterate(sweep, w_step, update_w, max_iter, check_every, tol, min_iter,
                            ctx, message, result, joint)
    with single_threaded_ops(), ThreadPoolExecutor(max_workers=workers - 1,
                                                   thread_name_prefix="nmf") as pool:
        return _iterate(sweep, w_step, update_w, max_iter, check_every, tol, min_iter, ctx,
                        message, result, joint)


def _iterate(sweep, w_step, update_w, max_iter, check_every, tol, min_iter, ctx, message,
             result: FitResult, joint: bool = False) -> FitResult:
    """The iterations of :func:`fit` and its stopping rule."""
    # Alternating: each iteration updates W, then H with the new W (the order of Lee &
    # Seung and of scikit-learn). The sweeps are H-then-W-statistics, so the first W
    # update gets a sweep of its own and the last sweep gathers no W statistics.
    # Joint: each sweep updates H and gathers W's statistics from the same posterior,
    # and W is updated right after it.
    if update_w and max_iter > 0 and not joint:
        sweep(False, True, False)
        w_step(0)
    prev = None
    for it in range(max_iter):
        ctx.progress(it, max_iter, message)
        last = it == max_iter - 1
        check = (it % check_every == 0) or last
        w_next = update_w and (joint or not last)
        obj = sweep(True, w_next, check)
        if w_next and joint:
            w_step(it)
        if check:
            result.objective.append(obj)
            if prev is not None and np.isfinite(obj):
                steps = max(1, check_every)
                rel = (prev - obj) / max(abs(prev), 1e-30) / steps
                if abs(rel) < tol and it + 1 >= min_iter:
                    result.iterations = it + 1
                    result.converged = True
                    ctx.progress(max_iter, max_iter, message)
                    return result
            prev = obj
        if w_next and not joint:
            w_step(it + 1)
    result.iterations = max_iter
    ctx.progress(max_iter, max_iter, message)
    return result


class _LowProducts:
    """The templates in the low product precision, cast once per sweep."""

    def __init__(self, W: torch.Tensor, Wt: torch.Tensor, dtype: torch.dtype) -> None:
        self.dtype = dtype
        self.W = W.to(dtype)
        self.Wt = Wt.to(dtype)


#: ``V``'s chunks in the low product precision are kept for the whole fit when they take
#: at most this many bytes (an hour of mono at 44.1 kHz with 2049 bins is about 640 MB);
#: above it each is rounded into chunk-sized scratch at every use.
LOW_DATA_BYTES = 256 << 20


class _LowData:
    """``V``'s chunks in the low product precision, for the ratio ``V / Z``.

    A division whose operands are both bfloat16 is one vectorised pass, about a
    third of the time of a float32 ``V`` divided by a bfloat16 model and rounded
    (measured on a (2049 × 256) chunk, one thread: 0.12 against 0.45 ms on an
    AMX machine). ``V`` is then rounded too (relative 2⁻⁹), which, like the
    other roundings, averages out in the products' sums.
    """

    def __init__(self, V: list[torch.Tensor], dtype: torch.dtype) -> None:
        self.dtype = dtype
        nbytes = sum(v.numel() for v in V) * dtype.itemsize
        self.keep = nbytes <= LOW_DATA_BYTES
        self._chunks: dict[tuple[int, int], torch.Tensor] = {}

    def chunk(self, key: tuple[int, int], Vc: torch.Tensor, bufs: "_Buffers") -> torch.Tensor:
        """The (bins, B) chunk ``Vc`` (block and first frame ``key``) in the low dtype:
        kept from its first use, or rounded into ``bufs``' scratch. Each worker asks
        only for its own chunks, so the workers never write the same entry."""
        if not self.keep:
            return bufs.get(Vc.shape[1], 2, self.dtype).copy_(Vc)
        low = self._chunks.get(key)
        if low is None:
            low = torch.empty(Vc.shape, dtype=self.dtype, device=Vc.device).copy_(Vc)
            self._chunks[key] = low
        return low


def _low_kl_chunk(Vc, W, Hc, low: _LowProducts, bufs, colsum_w, h_keep, joint, update_h,
                  check, num_w, den_w, den_rows, free_w, all_w_free, cont=None, Vl=None
                  ) -> float:
    """One chunk of a sweep for plain KL (no weights, no constraints) with the products
    in ``low.dtype``: the objective (if ``check``), the H step (if ``update_h``) and W's
    statistics (if ``num_w`` is given: from the new activations when alternating, from
    the same ratio as the H step when ``joint``); ``cont``: the chunk's continuity
    terms (numerator, denominator) for the H step, or None; ``Vl``: the chunk of V in
    ``low.dtype`` (see :class:`_LowData`), or None to form the ratio from ``Vc``.
    Returns the chunk's objective.

    Each of the three products runs on the CPU's bfloat16 dot-product
    instructions and reads half the bytes; its output is a sum of many terms, so
    the inputs' rounding (relative 2⁻⁸ at most, unbiased) mostly averages out.
    The ratio V / Z is formed from both rounded (``Vl``), or from ``Vc`` in float32
    and rounded once; the multiplicative updates are float32. On a check
    iteration the model is float32, so the reported objective is exact.
    """
    dt = low.dtype
    n = Vc.shape[1]
    Z = bufs.get(n, 0)
    R = bufs.get(n, 0, dt)
    obj = 0.0
    Hl = None

    def ratio(H_low: torch.Tensor) -> None:
        torch.mm(low.W, H_low, out=R)
        if Vl is not None:  # both operands low: one vectorised pass
            torch.div(Vl, R, out=R)
            return
        # (A mixed-dtype division written into a bfloat16 tensor is not vectorised
        # and costs ten times more than these three passes.)
        torch.div(Vc, R, out=Z)
        R.copy_(Z)

    if update_h or check or joint:
        if check:
            Z = mm_scratch(W, Hc, Z)
            obj = beta_divergence(Vc, Z, 1.0, scratch=bufs.get(n, 1))
            R.copy_(Z.reciprocal_().mul_(Vc))
        else:
            Hl = Hc.to(dt)
            ratio(Hl)
    if joint and num_w is not None:  # W's statistics from the same posterior, old H
        Hl = Hc.to(dt) if Hl is None else Hl
        num_w.add_(R @ (Hl if all_w_free else Hl[free_w]).t())
        den_w.add_((Hc if all_w_free else Hc[free_w]).sum(1).reshape(1, -1))
    if update_h:
        num = (low.Wt @ R).to(torch.float32)
        den = colsum_w if cont is None else colsum_w + cont[1]
        if cont is not None:
            num.add_(cont[0])
        step = num.div_(den.clamp_min(EPS))
        if h_keep is not None:
            step.masked_fill_(h_keep, 1.0)
        Hc.mul_(step).clamp_min_(EPS)
    if not joint and num_w is not None:  # alternating: from the new activations
        Hl = Hc.to(dt)
        ratio(Hl)
        num_w.add_(R @ (Hl if all_w_free else Hl[free_w]).t())
        if not den_rows:  # an unweighted chunk of a weighted fit: O Hᵀ is H's row sums
            den_w.add_((Hc if all_w_free else Hc[free_w]).sum(1).reshape(1, -1))
    return obj


def _all_ones(O: torch.Tensor) -> bool:
    """Whether the weights ``O`` (bool, or float) are all one: nothing missing."""
    return bool(O.all()) if O.dtype == torch.bool else bool((O == 1).all())


def _joint_chunk(Vc, W, Wt, Hc, Oc, Pc, groups, Z, bufs, colsum_w, has_l1, lam, free_w,
                 all_w_free, num_w, den_w, h_keep, check, floor_model, den_fixed=None
                 ) -> float:
    """One chunk of a joint (EM) sweep for KL: the objective (if ``check``), W's
    statistics from the current activations (if ``num_w`` is given), then the H step,
    all from one ratio ``R = V / Z``. ``Z`` is scratch; ``den_fixed`` as for
    :func:`_h_statistics`. Returns the chunk's objective."""
    Z = _model(W, Hc, Pc, groups, Z, floor_model)
    obj = beta_divergence(Vc, Z, 1.0, Oc, bufs.get(Vc.shape[1], 1)) if check else 0.0
    R = torch.div(Vc, Z, out=Z)
    if Oc is not None:
        R.mul_(Oc)
    Hf = None
    if num_w is not None:
        Hf = Hc if all_w_free else Hc[free_w]
        if Oc is not None:
            den_w.add_(mm(Oc, Hf.t()))
        else:  # (1, K) without weights; (bins, K) broadcast for an unweighted chunk
            den_w.add_(Hf.sum(1).reshape(1, -1))
    if Pc is None:
        if num_w is not None:
            num_w.add_(mm(R, Hf.t()))
        num = mm(Wt, R)
    else:
        num = torch.empty((W.shape[1], Vc.shape[1]), dtype=torch.float32, device=W.device)
        tmp = bufs.get(Vc.shape[1], 1)
        pos = {k: j for j, k in enumerate(free_w.tolist())} if num_w is not None else {}
        for g, sl in enumerate(groups):
            torch.mul(Pc[g], R, out=tmp)
            num[sl] = mm(Wt[sl], tmp)
            cols = [k for k in range(sl.start, sl.stop) if k in pos]
            if cols:
                num_w[:, [pos[k] for k in cols]] += mm(tmp, Hc[cols].t())
    if Oc is None:
        den = colsum_w
    elif den_fixed is not None:
        den = den_fixed
    else:
        den = mm(Wt, Oc)
        den = den + lam if has_l1 else den
    step = num.div_(den.clamp_min(EPS))
    if h_keep is not None:
        step.masked_fill_(h_keep, 1.0)
    Hc.mul_(step).clamp_min_(EPS)
    return obj


def _continuity_sums(H: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(S, D), float32 (K, 1): each row's sum of squares and sum of squared
    differences of consecutive activations within each block."""
    S = sum((h * h).sum(1, keepdim=True) for h in H)
    D = sum(torch.diff(h, dim=1).square_().sum(1, keepdim=True) for h in H)
    return S.clamp_min(1e-30), D


def continuity_cost(H: list[torch.Tensor], weight: float) -> float:
    """Virtanen's temporal-continuity cost ``weight · Σ_k D_k / S_k`` of the
    activation blocks float32 (K, B) (see :func:`fit`'s ``continuity``)."""
    S, D = _continuity_sums(H)
    return weight * sum64(D / S)


def continuity_terms(H: list[torch.Tensor], weight: float
                     ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The gradient of :func:`continuity_cost` split by sign, per block: lists of
    float32 (K, B) for the H step's numerator (the negative part) and denominator
    (the positive part).

    With ``∂/∂h_t (D / S) = 2(n_t h_t − h_{t−1} − h_{t+1}) / S − 2 D h_t / S²``
    (``n_t`` the number of neighbours of frame t, 2 inside a block), the
    denominator takes ``2 n_t h_t / S`` and the numerator the rest, so an
    activation moves towards the mean of its neighbours (Virtanen 2007, eq. 16).
    """
    S, D = _continuity_sums(H)
    a = (2.0 * weight) / S
    c = a * D / S
    num, den = [], []
    for h in H:
        nb = torch.zeros_like(h)
        nb[:, 1:] += h[:, :-1]
        nb[:, :-1] += h[:, 1:]
        n_t = torch.full((1, h.shape[1]), 2.0, dtype=h.dtype, device=h.device)
        n_t[:, 0] -= 1
        n_t[:, -1] -= 1
        num.append(nb.mul_(a).addcmul_(h, c))
        den.append(h * n_t * a)
    return num, den


#: The fewest entries of V (bins × frames) in each CPU worker's share for a fit to be
#: shared between workers; a smaller fit runs on one thread. The workers take turns at
#: the interpreter for every operation and meet once per sweep, which costs a few
#: tenths of a millisecond an iteration, so two workers win only from about 3-4 · 10⁵
#: entries, whatever the rank (fits of 513-4097 bins at rank 16 and 40, 2026-11-26:
#: 1025 × 60 at rank 32, 0.24 ms an iteration on one thread, 0.56 on two workers and
#: 1.24 on torch's two threads; 2049 × 800 at rank 40, 5.0 against 2.9 ms).
MIN_SHARE_ENTRIES = 200_000


def shared_workers(entries: int, threads: int) -> int:
    """CPU workers for a fit of ``entries`` entries of V given ``threads``: each
    worker's share holds at least :data:`MIN_SHARE_ENTRIES` entries, one worker at
    least."""
    return max(1, min(threads, entries // MIN_SHARE_ENTRIES))


def _chunks(widths: list[int], size: int, workers: int = 1) -> list[tuple[int, int, int]]:
    """(block, first frame, end frame) of every chunk of blocks ``widths`` frames wide:
    each block cut into the fewest chunks of at most ``size`` frames, of equal widths
    (a block of 376 frames in chunks of 340 is two of 188, not 340 and 36, which
    would leave the second of two workers idle). When that gives fewer chunks than
    ``workers``, blocks are cut further, so that each worker has one: a dictionary
    learned on some seconds of example is one chunk otherwise, and one worker
    (:func:`fit` asks for only as many workers as :data:`MIN_SHARE_ENTRIES` allows).
    When there are more chunks than workers, their number is made a multiple of
    ``workers`` (the widest chunks cut once more), so that every worker's share is
    as wide: 23 chunks on two workers kept one waiting for the other's twelfth in
    every sweep (4 % of the time)."""
    total = sum(widths)
    counts = [-(-w // size) for w in widths]
    if sum(counts) < workers:
        want = min(workers, total)
        counts = [max(c, round(want * w / total)) for c, w in zip(counts, widths)]
    elif workers > 1 and sum(counts) > workers:
        for _ in range(-sum(counts) % workers):
            i = max(range(len(widths)), key=lambda k: widths[k] / max(counts[k], 1))
            counts[i] += 1
    out = []
    for i, (w, n) in enumerate(zip(widths, counts)):
        if w == 0:
            continue
        n = max(1, min(n, w))
        edges = [k * w // n for k in range(n + 1)]
        out += [(i, a, b) for a, b in zip(edges[:-1], edges[1:])]
    return out


def _share(chunks: list, n: int) -> list[list]:
    """``chunks`` cut into ``n`` contiguous runs of about equal frame counts.

    A chunk goes to the run its middle frame falls in. By its first frame, the second
    of two chunks of an odd count (452 and 453 of 905 frames) started before the
    middle and went to the first run too: one worker did it all, and a fit on two
    threads took as long as on one (found 2026-11-25, when any block of 256 to 1022
    frames at 44.1 kHz, 3 to 12 s, was two chunks; with 4 MB chunks it is 256 to 2046)."""
    total = sum(b - a for _, a, b in chunks)
    out: list[list] = [[] for _ in range(n)]
    done = 0
    for c in chunks:
        j = min(n - 1, (2 * done + c[2] - c[1]) * n // max(2 * total, 1))
        out[j].append(c)
        done += c[2] - c[1]
    return out


def _model(W: torch.Tensor, Hc: torch.Tensor, Pc: torch.Tensor | None,
           groups: Sequence[slice] | None, out: torch.Tensor, floor: bool = True
           ) -> torch.Tensor:
    """Z = W H, or Σ_g P_g ⊙ W_g H_g under posterior constraints: in ``out``, or in a
    new tensor where the product makes one (:func:`.products.mm_scratch`)."""
    if Pc is None:
        out = mm_scratch(W, Hc, out)
    else:
        out.zero_()
        for g, sl in enumerate(groups):
            out.addcmul_(Pc[g], mm(W[:, sl], Hc[sl]))
    return out.clamp_min_(EPS) if floor else out


def _h_statistics(Vc, W, Wt, beta, Oc, Pc, groups, Z, bufs, colsum_w, has_l1, lam,
                  den_fixed=None):
    """Numerator and denominator of the H step for one chunk; ``Z`` holds the model
    and is overwritten. ``colsum_w`` is W's column sums (plus λ); ``den_fixed`` the
    weighted KL denominator Wᵀ O (plus λ) where it is known already (W fixed)."""
    if beta == 1:
        R = torch.div(Vc, Z, out=Z)  # V / Z, in place
        if Oc is not None:
            R.mul_(Oc)
        if Pc is None:
            num = mm(Wt, R)
        else:
            num = torch.empty((W.shape[1], Vc.shape[1]), dtype=torch.float32, device=W.device)
            tmp = bufs.get(Vc.shape[1], 1)
            for g, sl in enumerate(groups):
                torch.mul(Pc[g], R, out=tmp)
                num[sl] = mm(Wt[sl], tmp)
        if Oc is None:
            return num, colsum_w
        if den_fixed is not None:
            return num, den_fixed
        den = mm(Wt, Oc)
        return num, (den + lam if has_l1 else den)
    P, Q = _beta_terms(Vc, Z, beta, Oc, bufs.get(Vc.shape[1], 1))
    num = mm(Wt, P)
    den = mm(Wt, Q)
    return num, (den + lam if has_l1 else den)


def _beta_terms(Vc, Z, beta, Oc, tmp):
    """(V ⊙ Z^{β−2}, Z^{β−1}), weighted by ``Oc``, computed into ``tmp`` and ``Z``."""
    if beta == 2:
        P = Vc if Oc is None else torch.mul(Vc, Oc, out=tmp)
        Q = Z if Oc is None else Z.mul_(Oc)
        return P, Q
    torch.pow(Z, beta - 2, out=tmp)
    tmp.mul_(Vc)
    Q = Z.pow_(beta - 1)
    if Oc is not None:
        tmp.mul_(Oc)
        Q.mul_(Oc)
    return tmp, Q


def _accumulate_w(Vc, W, Hc, beta, Oc, Pc, groups, Z, bufs, free_w, all_w_free, num_w, den_w,
                  floor_model, den_rows):
    """Add one chunk's contribution to the numerator/denominator of the W step.

    For KL the denominator is ``O Hᵀ`` with weights (H's row sums for a chunk
    whose weights are all one, ``Oc`` None), and the row sums of H without any
    (``den_rows``: added by the caller); posterior constraints change only the
    numerator, as they change only the E-step.
    """
    Hf = Hc if all_w_free else Hc[free_w]
    Z = _model(W, Hc, Pc, groups, Z, floor_model)
    if beta != 1:
        P, Q = _beta_terms(Vc, Z, beta, Oc, bufs.get(Vc.shape[1], 1))
        num_w.add_(mm(P, Hf.t()))
        den_w.add_(mm(Q, Hf.t()))
        return
    R = torch.div(Vc, Z, out=Z)
    if Oc is not None:
        R.mul_(Oc)
        den_w.add_(mm(Oc, Hf.t()))
    elif not den_rows:
        den_w.add_(Hf.sum(1).reshape(1, -1))
    if Pc is None:
        num_w.add_(mm(R, Hf.t()))
        return
    tmp = bufs.get(Vc.shape[1], 1)
    pos = {k: j for j, k in enumerate(free_w.tolist())}
    for g, sl in enumerate(groups):
        cols = [k for k in range(sl.start, sl.stop) if k in pos]
        if cols:
            torch.mul(Pc[g], R, out=tmp)
            num_w[:, [pos[k] for k in cols]] += mm(tmp, Hc[cols].t())


def _apply_prior(prior, prior_cols, free_w, Wf, num_w, den_w, it, F):
    """EM-MAP step with pseudo-counts: W ← (W ⊙ N + α W₀) / (D + α) on the prior's columns."""
    alpha = prior.weight_at(it)
    den_full = den_w.expand(F, -1) if den_w.shape[0] == 1 else den_w
    new = Wf * num_w  # expected counts
    den = den_full.clone()
    if alpha > 0:
        pos = {k: j for j, k in enumerate(free_w.tolist())}
        for j, k in enumerate(prior_cols.tolist()):
            if k not in pos:
                continue
            c = pos[k]
            # α is relative to the column's data mass, so weight 1 = as much as the data.
            a = alpha * float(den_full[:, c].mean())
            new[:, c] += a * prior.templates[:, j]
            den[:, c] += a
    Wf.copy_(new.div_(den.clamp_min(EPS)))


def _l2_normalised_terms(W: torch.Tensor, num: torch.Tensor, den: torch.Tensor, F: int
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Numerator and denominator of the W step for unit-L2-norm templates.

    With ``W̄ = W / ‖W‖₂`` in the model, the gradient of the objective with
    respect to W gains, per column, a term along W̄ itself (Le Roux et al. 2015):
    ``num + W̄ ⊙ 1ᵀ(den ⊙ W̄)`` over ``den + W̄ ⊙ 1ᵀ(num ⊙ W̄)``, where ``num`` and
    ``den`` are the plain step's (bins, k) terms (``den`` may be one row).
    """
    den = den.expand(F, -1) if den.shape[0] == 1 else den
    return (num + W * (den * W).sum(0, keepdim=True),
            den + W * (num * W).sum(0, keepdim=True))


def column_norms(W: torch.Tensor, l2: bool = False) -> torch.Tensor:
    """The scale :func:`fit` divides each column of W by, float32 (K,): its sum, or its
    L2 norm when the fit has an L1 penalty (``l2``); at least :data:`EPS`."""
    return (W.norm(dim=0) if l2 else W.sum(0)).clamp_min(EPS)


def _normalise(W: torch.Tensor, H: list[torch.Tensor], columns: torch.Tensor,
               l2: bool = False) -> None:
    """Scale the chosen W columns (bool mask (K,)) to unit sum (unit L2 norm if
    ``l2``) and H rows inversely. The model W H is unchanged.
    """
    s = torch.where(columns, column_norms(W, l2), torch.ones(W.shape[1], device=W.device))
    W.div_(s)
    col = s.reshape(-1, 1)
    for h in H:
        h.mul_(col)
