"""Linear-algebra helpers shared by the blind (instantaneous-mixture) methods.

The blind methods model the mixture as ``x(t) = A s(t)``: ``x`` has
``nb_channels`` rows, ``s`` has ``nb_sources`` rows and ``A`` is a real
(nb_channels, nb_sources) mixing matrix. They all follow the same plan:

1. one pass over the whole input, block by block, for the second-moment
   matrix (used for silence and rank checks, for projecting back and for
   ordering the outputs);
2. second- or higher-order statistics on a bounded, evenly spread subsample
   (contiguous segments, so that lagged statistics stay meaningful);
3. a principled dimension reduction (whitening onto the top principal
   subspace) when fewer sources than channels are asked for;
4. an unmixing matrix ``W`` (nb_sources, nb_channels), then the least-squares
   mixing matrix ``A`` that projects each output back onto every channel;
5. the source images ``A[:, k] * (W x)[k]``, built block by block into
   preallocated float32 arrays.

Only block-sized temporaries (float64, ``block`` samples) are made from the
input, so an hour-long file costs its output arrays and little more.
"""

from __future__ import annotations

from typing import Iterator, List, Sequence, Tuple

import numpy as np

from demixstudio.errors import ParameterError
from demixstudio.jobs.context import JobContext

#: Samples per block in the passes over the full input. 2**16 samples of a
#: few channels in float64 is a few MB: big enough to keep BLAS efficient,
#: small enough to stay in cache-friendly territory and to report progress often.
BLOCK = 1 << 16

#: Relative eigenvalue below which a principal direction counts as empty.
#: float32 input carries ~7 significant digits, so the power of a direction
#: that is really zero lands around 1e-14 of the largest; 1e-10 leaves margin.
RANK_TOL = 1e-10

#: Why an input whose channels never change is refused. Said only of input
#: that is not all zeros (that is "silent"): a DC offset has power but no
#: variation, and every statistic here is (or ends up) centred.
CONSTANT_INPUT = ("the input has no varying signal: every channel is constant "
                  "(a DC offset), nothing to separate")


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------


def validate_mix(mix: np.ndarray) -> None:
    """Raise ``ParameterError`` unless ``mix`` holds floating-point samples, at least two.

    Called after :meth:`Method.check_input`, which has made sure that ``mix`` is a
    (channels, samples) real-valued array.

    Parameters
    ----------
    mix : np.ndarray [shape=(nb_channels, nb_samples)], floating dtype
    """
    if not np.issubdtype(mix.dtype, np.floating):
        raise ParameterError(f"the mixture must hold floating-point samples, not {mix.dtype}")
    if mix.shape[1] < 2:
        raise ParameterError(f"the mixture has {mix.shape[1]} sample(s); need at least 2")


def resolve_sources(requested: int, nb_channels: int, method: str) -> int:
    """The number of sources to separate; 0 means as many as channels.

    Raises ``ParameterError`` when more sources than channels are asked for:
    an instantaneous linear model cannot invert more sources than channels.
    """
    if requested < 0:
        raise ParameterError(f"sources={requested} must be 0 (as many as channels) or more")
    k = nb_channels if requested == 0 else int(requested)
    if k > nb_channels:
        raise ParameterError(
            f"{method} separates at most as many sources as the mixture has channels "
            f"({nb_channels}); asked for {k}")
    return k


# --------------------------------------------------------------------------
# Blocks and subsamples
# --------------------------------------------------------------------------


def iter_blocks(start: int, stop: int, block: int = BLOCK) -> Iterator[Tuple[int, int]]:
    """Consecutive ``(b0, b1)`` sample ranges covering ``[start, stop)``."""
    for b0 in range(start, stop, block):
        yield b0, min(b0 + block, stop)


def spread_segments(nb_samples: int, max_samples: int, segment: int) -> List[Tuple[int, int]]:
    """Contiguous segments, evenly spread over the input, totalling ≤ ``max_samples``.

    Statistics estimated on these segments see every part of a long file
    (its loud and its quiet passages) at a bounded cost. Segments rather than
    single samples keep time structure, which lagged covariances need.

    Parameters
    ----------
    nb_samples : int, length of the input
    max_samples : int, the budget; the whole input when it fits
    segment : int, length of each segment

    Returns
    -------
    list of (start, stop), sorted, non-overlapping
    """
    if nb_samples <= max_samples:
        return [(0, nb_samples)]
    segment = max(1, min(segment, max_samples))
    count = max(1, max_samples // segment)
    starts = np.linspace(0, nb_samples - segment, count).round().astype(np.int64)
    return [(int(s), int(s) + segment) for s in starts]


def gather(mix: np.ndarray, segments: Sequence[Tuple[int, int]]) -> np.ndarray:
    """The samples of ``segments`` side by side: float64 (nb_channels, total)."""
    total = sum(b - a for a, b in segments)
    out = np.empty((mix.shape[0], total), dtype=np.float64)
    pos = 0
    for a, b in segments:
        out[:, pos:pos + b - a] = mix[:, a:b]
        pos += b - a
    return out


# --------------------------------------------------------------------------
# Second-order statistics
# --------------------------------------------------------------------------


def second_moment(mix: np.ndarray, ctx: JobContext, block: int = BLOCK,
                  message: str = "reading the mixture") -> np.ndarray:
    """Raw second-moment matrix ``E[x xᵀ]`` over the whole input, block by block.

    Not centred on purpose: the projection back minimises the squared error
    on the signal as given (DC included), so that square systems reproduce
    the mixture exactly.

    Parameters
    ----------
    mix : np.ndarray [shape=(nb_channels, nb_samples)]

    Returns
    -------
    np.ndarray [shape=(nb_channels, nb_channels)], float64

    Raises
    ------
    ParameterError
        if the input holds NaN/inf, is silent or is constant.
    """
    c, n = mix.shape
    acc = np.zeros((c, c))
    nb_blocks = -(-n // block)
    for i, (b0, b1) in enumerate(iter_blocks(0, n, block)):
        ctx.progress(i, nb_blocks, message)
        xb = np.asarray(mix[:, b0:b1], dtype=np.float64)
        acc += xb @ xb.T
    ctx.progress(nb_blocks, nb_blocks, message)
    m = acc / n
    if not np.all(np.isfinite(m)):
        raise ParameterError("the input holds NaN or infinite samples")
    if np.trace(m) <= 0.0:
        raise ParameterError("the input is silent: every channel is zero, nothing to separate")
    # A DC offset has power, so the trace does not catch it.
    if is_constant(mix, block):
        raise ParameterError(CONSTANT_INPUT)
    return m


def is_constant(mix: np.ndarray, block: int = BLOCK) -> bool:
    """True if every channel of ``mix`` (nb_channels, nb_samples) holds one value
    throughout (silence included).

    Compares a block at a time and stops at the first change, so real audio
    answers after one block and a long file needs no full-size temporary.
    """
    first = mix[:, :1]
    return all(np.all(mix[:, b0:b1] == first) for b0, b1 in iter_blocks(0, mix.shape[1], block))


def lagged_covariances(mix: np.ndarray, lags: Sequence[int],
                       segments: Sequence[Tuple[int, int]], ctx: JobContext,
                       block: int = BLOCK) -> Tuple[np.ndarray, np.ndarray]:
    """Symmetrised, centred lagged covariances ``C_n = E[x(t) x(t−n)ᵀ]``.

    Products only pair samples of the same contiguous segment, so a
    subsample made of separate segments does not invent correlations across
    the gaps. The estimate is symmetrised, ``(C_n + C_nᵀ) / 2``: for an
    instantaneous mixture ``C_n = A D_n Aᵀ`` is symmetric in expectation, and
    its antisymmetric part is estimation noise that no mixing matrix can
    explain.

    Parameters
    ----------
    mix : np.ndarray [shape=(nb_channels, nb_samples)]
    lags : sequence of int ≥ 0, in samples
    segments : list of (start, stop), from :func:`spread_segments`

    Returns
    -------
    covs : np.ndarray [shape=(nb_lags, nb_channels, nb_channels)], float64
    mean : np.ndarray [shape=(nb_channels,)], the mean over the segments
    """
    c = mix.shape[0]
    lags = [int(n) for n in lags]
    max_lag = max(lags)
    sums = np.zeros((len(lags), c, c))
    counts = np.zeros(len(lags))
    total = np.zeros(c)
    nb_total = 0
    work = sum(-(-(b - a) // block) for a, b in segments)
    done = 0
    for a, b in segments:
        for b0, b1 in iter_blocks(a, b, block):
            ctx.progress(done, work, "lagged covariances")
            done += 1
            # This block plus the history the largest lag reaches back to
            # (never before the segment's start).
            h0 = max(a, b0 - max_lag)
            xb = np.asarray(mix[:, h0:b1], dtype=np.float64)
            off = b0 - h0  # index of sample b0 inside xb
            cur = xb[:, off:]
            total += cur.sum(axis=1)
            nb_total += cur.shape[1]
            for li, n in enumerate(lags):
                # Pairs (t, t − n) with t in [b0, b1) and t − n ≥ a.
                t0 = max(off, n)
                if t0 >= xb.shape[1]:
                    continue
                sums[li] += xb[:, t0:] @ xb[:, t0 - n:xb.shape[1] - n].T
                counts[li] += xb.shape[1] - t0
    ctx.progress(work, work, "lagged covariances")
    if np.any(counts == 0):
        bad = [n for n, k in zip(lags, counts) if k == 0]
        raise ParameterError(
            f"lags {bad} are longer than the analysed segments; use smaller lags")
    mean = total / max(nb_total, 1)
    covs = sums / counts[:, None, None] - np.outer(mean, mean)[None]
    covs = 0.5 * (covs + covs.transpose(0, 2, 1))
    if not np.all(np.isfinite(covs)):
        raise ParameterError("the input holds NaN or infinite samples")
    return covs, mean


def whitener(cov: np.ndarray, nb_sources: int) -> np.ndarray:
    """Whitening onto the top-``nb_sources`` principal subspace.

    The principled reduction when fewer sources than channels are asked
    for: keep the directions that carry the most power (the least-squares
    best rank-k approximation of the data) and scale them to unit variance.

    Parameters
    ----------
    cov : np.ndarray [shape=(nb_channels, nb_channels)], symmetric covariance
    nb_sources : int ≤ nb_channels

    Returns
    -------
    np.ndarray [shape=(nb_sources, nb_channels)]
        ``Q`` such that ``Q cov Qᵀ = I``.

    Raises
    ------
    ParameterError
        if the input does not vary (silent or constant: the covariance is
        centred), or its channels span fewer than ``nb_sources`` independent
        directions (e.g. identical channels).
    """
    cov = 0.5 * (cov + cov.T)
    rank = int(spatial_rank(cov))
    if rank == 0:
        raise ParameterError(CONSTANT_INPUT)
    if rank < nb_sources:
        raise ParameterError(
            f"the input's {cov.shape[0]} channels span only {rank} independent "
            f"direction(s) (e.g. identical or silent channels); ask for sources={rank} or fewer")
    evals, evecs = np.linalg.eigh(cov)
    evals, evecs = evals[::-1], evecs[:, ::-1]  # decreasing power
    return evecs[:, :nb_sources].T / np.sqrt(evals[:nb_sources])[:, None]


def spatial_rank(cov: np.ndarray) -> np.ndarray:
    """How many independent directions the channels span, per covariance matrix.

    A direction counts when its power is above ``RANK_TOL`` times the
    strongest one's: identical, scaled or silent channels leave only float32
    rounding in the others. Shared by the whitener and ILRMA (one matrix
    per frequency there).

    Parameters
    ----------
    cov : np.ndarray [shape=(..., nb_channels, nb_channels)], symmetric (real)
        or Hermitian (complex); only the lower triangle is read

    Returns
    -------
    np.ndarray [shape=(...)], int; 0 where the covariance has no positive power

    Raises
    ------
    ParameterError
        if ``cov`` holds NaN or inf.
    """
    if not np.all(np.isfinite(cov)):
        raise ParameterError("the input holds NaN or infinite samples")
    evals = np.linalg.eigvalsh(cov)  # ascending
    top = evals[..., -1:]
    rank = np.sum(evals > RANK_TOL * top, axis=-1)
    return np.where(top[..., 0] > 0.0, rank, 0)


def project_back(moment: np.ndarray, unmixing: np.ndarray) -> np.ndarray:
    """Least-squares mixing matrix for the outputs ``y = W x``.

    ``A = M Wᵀ (W M Wᵀ)⁻¹`` minimises ``E‖x − A y‖²`` (``M = E[x xᵀ]``), so
    ``A[:, k] y_k`` is output ``k`` as it sounds in each channel, at the
    scale and sign it has in the mixture. For a square invertible ``W`` it
    is exactly ``W⁻¹`` and the images sum to the mixture.

    Parameters
    ----------
    moment : np.ndarray [shape=(nb_channels, nb_channels)]
    unmixing : np.ndarray [shape=(nb_sources, nb_channels)]

    Returns
    -------
    np.ndarray [shape=(nb_channels, nb_sources)]
    """
    k, c = unmixing.shape
    if k == c:
        return np.linalg.inv(unmixing)
    mw = moment @ unmixing.T
    return np.linalg.solve(unmixing @ mw, mw.T).T


def energy_order(moment: np.ndarray, unmixing: np.ndarray, mixing: np.ndarray) -> np.ndarray:
    """Output indices by decreasing image energy, computed from ``E[x xᵀ]``.

    The energy of image ``k`` is ``‖a_k‖² · w_kᵀ M w_k``, so no pass over the
    signal is needed to order the outputs before building them.
    """
    power = np.einsum("kc,cd,kd->k", unmixing, moment, unmixing)
    energy = np.sum(mixing ** 2, axis=0) * power
    return np.argsort(-energy, kind="stable")


def normalise_unmixing(unmixing: np.ndarray, moment: np.ndarray) -> np.ndarray:
    """Rows scaled to unit output power and signed so the largest weight is positive.

    The images do not depend on this; it only makes ``W`` (reported in the
    proposals' ``extra``) reproducible run to run.
    """
    w = np.array(unmixing, dtype=np.float64)
    power = np.einsum("kc,cd,kd->k", w, moment, w)
    w /= np.sqrt(np.maximum(power, np.finfo(float).tiny))[:, None]
    idx = np.argmax(np.abs(w), axis=1)
    w *= np.sign(w[np.arange(w.shape[0]), idx])[:, None]
    return w


def build_images(mix: np.ndarray, unmixing: np.ndarray, mixing: np.ndarray,
                 ctx: JobContext, block: int = BLOCK) -> List[np.ndarray]:
    """Source images ``A[:, k] (W x)_k``, built block by block.

    Parameters
    ----------
    mix : np.ndarray [shape=(nb_channels, nb_samples)]
    unmixing : np.ndarray [shape=(nb_sources, nb_channels)]
    mixing : np.ndarray [shape=(nb_channels, nb_sources)]

    Returns
    -------
    list of nb_sources np.ndarray [shape=(nb_channels, nb_samples)], float32
    """
    c, n = mix.shape
    k = unmixing.shape[0]
    images = [np.empty((c, n), dtype=np.float32) for _ in range(k)]
    nb_blocks = -(-n // block)
    for i, (b0, b1) in enumerate(iter_blocks(0, n, block)):
        ctx.progress(i, nb_blocks, "building the source images")
        # float64 for the product so the images add back to the mixture
        # to float32 rounding.
        y = unmixing @ np.asarray(mix[:, b0:b1], dtype=np.float64)
        for j in range(k):
            np.multiply(mixing[:, j, None], y[j, None, :], out=images[j][:, b0:b1],
                        casting="same_kind")
    ctx.progress(nb_blocks, nb_blocks, "building the source images")
    return images


# --------------------------------------------------------------------------
# Approximate joint diagonalisation
# --------------------------------------------------------------------------


def joint_diagonalize(mats: np.ndarray, ctx: JobContext, *, tol: float = 1e-10,
                      max_sweeps: int = 100, message: str = "joint diagonalisation"
                      ) -> np.ndarray:
    """Orthogonal ``V`` that makes ``Vᵀ M_i V`` as diagonal as possible, jointly.

    Jacobi rotations as in Cardoso & Souloumiac (1996), "Jacobi angles for
    simultaneous diagonalization": each sweep visits every pair ``(p, q)``
    and applies the Givens rotation that maximises the summed squared
    diagonal of all matrices, which for symmetric matrices has the closed
    form used below. Sweeps stop when no rotation moves more than ``tol``
    radians.

    Parameters
    ----------
    mats : np.ndarray [shape=(nb_mats, k, k)], symmetric matrices
    tol : float, smallest rotation angle (radians) that counts as a move
    max_sweeps : int

    Returns
    -------
    np.ndarray [shape=(k, k)], orthogonal
    """
    m = np.array(mats, dtype=np.float64)  # rotated in place
    k = m.shape[1]
    v = np.eye(k)
    for sweep in range(max_sweeps):
        ctx.progress(sweep, max_sweeps, message)
        moved = False
        for p in range(k - 1):
            for q in range(p + 1, k):
                # g = [M_pp − M_qq, M_pq + M_qp] over every matrix: the
                # criterion restricted to this pair is a quadratic form in
                # (cos 2θ, sin 2θ), maximised by G's top eigenvector.
                g = np.stack([m[:, p, p] - m[:, q, q], m[:, p, q] + m[:, q, p]])
                gg = g @ g.T
                ton = gg[0, 0] - gg[1, 1]
                toff = gg[0, 1] + gg[1, 0]
                theta = 0.5 * np.arctan2(toff, ton + np.hypot(ton, toff))
                if abs(theta) > tol:
                    moved = True
                    cs, sn = np.cos(theta), np.sin(theta)
                    rot = np.array([[cs, -sn], [sn, cs]])
                    pq = [p, q]
                    v[:, pq] = v[:, pq] @ rot
                    m[:, pq, :] = np.einsum("ji,njk->nik", rot, m[:, pq, :])
                    m[:, :, pq] = m[:, :, pq] @ rot
        if not moved:
            break
    ctx.progress(max_sweeps, max_sweeps, message)
    return v


def random_orthogonal(k: int, seed: int) -> np.ndarray:
    """A random (k, k) orthogonal matrix, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((k, k)))
    return q * np.sign(np.diag(r))[None, :]


def sym_decorrelate(w: np.ndarray) -> np.ndarray:
    """``(W Wᵀ)^{-1/2} W``: the orthogonal matrix nearest to ``W`` (symmetric decorrelation)."""
    s, u = np.linalg.eigh(w @ w.T)
    s = np.maximum(s, np.finfo(float).tiny)
    return (u / np.sqrt(s)[None, :]) @ u.T @ w


def centred_covariance(x: np.ndarray, block: int = BLOCK) -> Tuple[np.ndarray, np.ndarray]:
    """Mean and centred covariance of an in-memory float64 array, blockwise.

    Parameters
    ----------
    x : np.ndarray [shape=(nb_channels, nb_samples)]

    Returns
    -------
    mean : np.ndarray [shape=(nb_channels,)]
    cov : np.ndarray [shape=(nb_channels, nb_channels)]
    """
    mean = x.mean(axis=1)
    c, n = x.shape
    acc = np.zeros((c, c))
    for b0, b1 in iter_blocks(0, n, block):
        xb = x[:, b0:b1] - mean[:, None]
        acc += xb @ xb.T
    return mean, acc / n
