"""Independent component analysis of instantaneous mixtures: FastICA and JADE.

Model: ``x(t) = A s(t)`` with statistically independent, non-Gaussian
sources. Both algorithms first whiten the mixture (``z = Q x`` with
``E[z zᵀ] = I``, onto the top principal subspace when fewer sources than
channels are asked for); what remains is an orthogonal rotation, found from
higher-order statistics:

* FastICA (Hyvärinen 1999), symmetric version: the fixed-point iteration
  ``W ← E[g(W z) zᵀ] − diag(E[g'(W z)]) W`` followed by symmetric
  decorrelation ``W ← (W Wᵀ)^{-1/2} W``, with ``g`` = tanh, cube or
  ``y·exp(−y²/2)``. The contrast is an approximation of negentropy. The
  default is exp, which Hyvärinen (1999, sec. "choice of the
  nonlinearity") recommends when the sources are highly super-Gaussian or
  robustness matters, both true of speech and music; tanh is the usual
  general-purpose choice elsewhere (scikit-learn's default).
* JADE (Cardoso & Souloumiac 1993): joint approximate diagonalisation of
  the fourth-order cumulant matrices of ``z`` by Jacobi rotations.

The rotation is estimated on a bounded, evenly spread subsample; the source
images are then built block by block over the whole input by projecting each
output back through the least-squares mixing matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from demixstudio.jobs.context import JobContext
from demixstudio.separation import _linear as lin
from demixstudio.separation.base import (Hints, LayerProposal, Method, param,
                                         params_to_dict)
from demixstudio.separation.registry import register

#: Up to this many sources, init="auto" starts FastICA from JADE, which makes
#: the result independent of the seed and saves iterations: the cumulant
#: products cost k²(k+1)²/4 per sample, negligible next to FastICA for a few
#: sources and dominant beyond about 8.
JADE_INIT_MAX = 8
#: ICA uses no time structure, so the subsample of a long file is made of
#: many short segments (~0.1 s) that sample its every passage.
ICA_SEGMENT = 4096


def fastica(z: np.ndarray, ctx: JobContext, *, nonlinearity: str = "exp",
            max_iter: int = 200, tol: float = 1e-8, seed: int = 0,
            w_init: Optional[np.ndarray] = None) -> Tuple[np.ndarray, int, bool]:
    """Symmetric FastICA on whitened data.

    Parameters
    ----------
    z : np.ndarray [shape=(k, nb_samples)], whitened (``E[z zᵀ] = I``), centred
    nonlinearity : {"exp", "tanh", "cube"}
    max_iter : int
    tol : float
        Stop when ``max |1 − |w_newᵀ w|| < tol``, i.e. when no row turns by
        more than about ``√(2 tol)`` radians in an iteration.
    seed : int, for the random orthogonal start
    w_init : np.ndarray [shape=(k, k)] or None
        Starting rotation; a random orthogonal one from ``seed`` when None.

    Returns
    -------
    w : np.ndarray [shape=(k, k)], orthogonal; ``W z`` are the independent components
    nb_iter : int, iterations run
    converged : bool, whether ``tol`` was reached within ``max_iter``
    """
    k, n = z.shape
    # The iteration runs in float32: tanh/exp are ~5x faster than in float64
    # and the sums of ~1e6 products lose ~1e-5 relative accuracy, far below
    # the statistical error of the estimate itself. W stays in float64.
    buf = np.empty((2 * k, n), dtype=np.float32)
    buf[:k] = z
    zf = buf[:k]
    y = buf[k:]  # outputs, then g(outputs), in place
    w = lin.random_orthogonal(k, seed) if w_init is None else lin.sym_decorrelate(w_init)
    tmp = np.empty((k, n), dtype=np.float32) if nonlinearity == "exp" else None
    converged = False
    nb_iter = 0
    for it in range(max_iter):
        ctx.progress(it, max_iter, "FastICA")
        nb_iter = it + 1
        np.matmul(w.astype(np.float32), zf, out=y)
        if nonlinearity == "tanh":
            np.tanh(y, out=y)
            # One product gives E[g zᵀ] and E[g²]; tanh' = 1 − tanh².
            prod = (y @ buf.T).astype(np.float64) / n
            gz = prod[:, :k]
            gp = 1.0 - np.diag(prod[:, k:])
        elif nonlinearity == "cube":
            # E[3 y²] = 3 for a row of an orthogonal W on whitened data.
            gp = 3.0 * np.einsum("ij,ij->i", w, w)
            np.power(y, 3, out=y)
            gz = (y @ zf.T).astype(np.float64) / n
        else:  # "exp": g = y e, g' = (1 − y²) e with e = exp(−y²/2)
            np.multiply(y, y, out=tmp)
            np.multiply(tmp, -0.5, out=tmp)
            np.exp(tmp, out=tmp)                       # e
            e_mean = tmp.mean(axis=1, dtype=np.float64)
            np.multiply(y, tmp, out=y)                 # g = y e
            # E[y² e] = E[y g]; y is gone, but y = w z, so E[g yᵀ] = E[g zᵀ] wᵀ.
            gz = (y @ zf.T).astype(np.float64) / n
            ysq_mean = np.einsum("ij,ij->i", gz, w)
            gp = e_mean - ysq_mean
        w_new = lin.sym_decorrelate(gz - gp[:, None] * w)
        lim = float(np.max(np.abs(np.abs(np.einsum("ij,ij->i", w_new, w)) - 1.0)))
        w = w_new
        if lim < tol:
            converged = True
            break
    ctx.progress(max_iter, max_iter, "FastICA")
    return w, nb_iter, converged


def jade(z: np.ndarray, ctx: JobContext, *, max_sweeps: int = 100,
         block: int = lin.BLOCK) -> np.ndarray:
    """JADE: joint diagonalisation of the fourth-order cumulant matrices.

    For whitened ``z`` the cumulant matrix ``Q^{ij}`` has entries ``[p, q]``
    ``cum(z_i, z_j, z_p, z_q) = E[z_i z_j z_p z_q] − δ_ij δ_pq − δ_ip δ_jq
    − δ_iq δ_jp``.
    All fourth moments come from one product of the pairwise products
    ``z_i z_j`` (i ≤ j) with themselves, block by block. The matrices with
    ``i ≠ j`` stand for both ``Q^{ij}`` and ``Q^{ji}`` and are weighted by √2
    so that the criterion is JADE's sum over all ``(i, j)``.

    Parameters
    ----------
    z : np.ndarray [shape=(k, nb_samples)], whitened, centred

    Returns
    -------
    np.ndarray [shape=(k, k)], orthogonal; ``W z`` are the independent components.
    """
    k, n = z.shape
    ii, jj = np.triu_indices(k)
    m = ii.size
    moments = np.zeros((m, m))
    nb_blocks = -(-n // block)
    for bi, (b0, b1) in enumerate(lin.iter_blocks(0, n, block)):
        ctx.progress(bi, nb_blocks, "fourth-order cumulants")
        zb = z[:, b0:b1]
        p = zb[ii] * zb[jj]  # (m, B): z_i z_j
        moments += p @ p.T
    moments /= n
    eye = np.eye(k)
    cum = np.empty((m, k, k))
    pair_index = np.full((k, k), -1)
    pair_index[ii, jj] = np.arange(m)
    pair_index[jj, ii] = np.arange(m)
    for a, (i, j) in enumerate(zip(ii, jj)):
        e4 = moments[a][pair_index]  # (k, k): E[z_i z_j z_p z_q]
        q = (e4 - eye[i, j] * eye - np.outer(eye[:, i], eye[j]) - np.outer(eye[:, j], eye[i]))
        cum[a] = q if i == j else np.sqrt(2.0) * q
    cum = 0.5 * (cum + cum.transpose(0, 2, 1))
    v = lin.joint_diagonalize(cum, ctx, max_sweeps=max_sweeps, message="JADE rotations")
    return v.T


@register
class ICA(Method):
    """Independent component analysis (FastICA or JADE) of instantaneous mixtures."""

    name = "ica"
    title = "ICA (FastICA / JADE)"
    summary = ("Unmixes instantaneous (panned) mixtures into statistically independent "
               "sources; as many sources as channels, or fewer.")
    references = (
        "A. Hyvärinen, 'Fast and robust fixed-point algorithms for independent component "
        "analysis', IEEE Trans. Neural Networks 10(3):626–634, 1999.",
        "J.-F. Cardoso, A. Souloumiac, 'Blind beamforming for non-Gaussian signals', "
        "IEE Proceedings F 140(6):362–370, 1993.",
        "J.-F. Cardoso, A. Souloumiac, 'Jacobi angles for simultaneous diagonalization', "
        "SIAM J. Matrix Anal. Appl. 17(1):161–164, 1996.",
    )
    min_channels = 2

    @dataclass(frozen=True)
    class Params:
        sources: int = param(
            0, label="Sources", min=0, max=64,
            help="How many sources to separate; 0 = as many as the mixture has channels. "
                 "Fewer than channels: the mixture is first reduced to its strongest "
                 "principal directions.")
        algorithm: str = param(
            "fastica", label="Algorithm", choices=("fastica", "jade"),
            help="fastica: fixed-point negentropy maximisation (fast, robust); "
                 "jade: joint diagonalisation of fourth-order cumulants (no iterations "
                 "to tune; slower beyond ~10 sources).")
        nonlinearity: str = param(
            "exp", label="Nonlinearity", choices=("exp", "tanh", "cube"),
            help="FastICA contrast G: exp (G = −exp(−y²/2); Hyvärinen's choice for "
                 "highly super-Gaussian sources, which speech and most music are, and the "
                 "most robust to outliers), tanh (G = log cosh y; the general-purpose "
                 "default of most ICA packages), cube (G = y⁴, kurtosis; fast, sensitive "
                 "to outliers).")
        max_iter: int = param(
            200, label="Iterations", min=1, max=10_000,
            help="Maximum FastICA iterations (or JADE sweeps).")
        tol: float = param(
            1e-8, label="Tolerance", advanced=True, min=1e-14, max=0.1,
            help="FastICA stops when max |1 − |w_new·w_old|| over the unmixing vectors "
                 "falls below this (about half the squared angle they turn, in rad²).")
        init: str = param(
            "auto", label="FastICA start", choices=("auto", "jade", "random"),
            help="Where FastICA starts. jade: from the JADE rotation, which Jacobi "
                 "sweeps find deterministically and which usually lies close to FastICA's "
                 "solution, so few iterations follow and the result does not depend on a "
                 "seed; random: a random rotation from 'seed'; auto: jade up to 8 sources "
                 "(JADE's cost grows as sources^4), random beyond.")
        seed: int = param(
            0, label="Seed", advanced=True, min=0,
            help="Seed of FastICA's random starting rotation (init=random, or auto "
                 "with more than 8 sources).")
        max_samples: int = param(
            1_000_000, label="Analysed samples", min=1_000,
            help="At most this many samples per channel, in evenly spread segments, are "
                 "used to estimate the unmixing (long files); the whole file is unmixed.")

    def separate(self, mix: np.ndarray, sr: int, params: "ICA.Params",
                 hints: Hints, ctx: JobContext) -> List[LayerProposal]:
        """Separate ``mix`` float32 (channels, samples) into source images.

        Returns one waveform proposal per source, float32 (channels, samples):
        the source as it sounds in each channel, loudest first. With as many
        sources as channels the images sum to the mixture.
        """
        self.check_input(mix)
        lin.validate_mix(mix)
        c, n = mix.shape
        k = lin.resolve_sources(params.sources, c, self.name)

        with ctx.stage(0.0, 0.2, "reading the mixture"):
            moment = lin.second_moment(mix, ctx)

        with ctx.stage(0.2, 0.3, "whitening"):
            ctx.progress(0, 1, "whitening")
            segments = lin.spread_segments(n, params.max_samples, ICA_SEGMENT)
            x = lin.gather(mix, segments)
            mean, cov = lin.centred_covariance(x)
            q = lin.whitener(cov, k)
            # z = Q (x − mean); x is centred in place to spare a copy.
            x -= mean[:, None]
            z = q @ x
            del x
            ctx.progress(1, 1, "whitening")

        info: Dict[str, Any] = {"algorithm": params.algorithm}
        with ctx.stage(0.3, 0.7, params.algorithm):
            if k == 1:
                rot = np.ones((1, 1))
            elif params.algorithm == "jade":
                rot = jade(z, ctx, max_sweeps=params.max_iter)
            else:
                start = None
                if params.init == "jade" or (params.init == "auto" and k <= JADE_INIT_MAX):
                    with ctx.stage(0.0, 0.3, "JADE start"):
                        start = jade(z, ctx, max_sweeps=params.max_iter)
                with ctx.stage(0.3 if start is not None else 0.0, 1.0, "FastICA"):
                    rot, nb_iter, converged = fastica(
                        z, ctx, nonlinearity=params.nonlinearity, max_iter=params.max_iter,
                        tol=params.tol, seed=params.seed, w_init=start)
                # Reported rather than warned: the result is still usable, and
                # the editor can say so next to the layer.
                info.update(start="jade" if start is not None else "random",
                            iterations=nb_iter, converged=converged)
        del z
        w = lin.normalise_unmixing(rot @ q, moment)
        a = lin.project_back(moment, w)
        order = lin.energy_order(moment, w, a)
        w, a = w[order], a[:, order]
        with ctx.stage(0.7, 1.0, "building the source images"):
            images = lin.build_images(mix, w, a, ctx)

        pdict = params_to_dict(params)
        return [LayerProposal(name=f"source {i + 1}", method=self.name, params=pdict,
                              waveform=img,
                              extra={"mixing": a[:, i].tolist(), "unmixing": w[i].tolist(),
                                     **info})
                for i, img in enumerate(images)]
