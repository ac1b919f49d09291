"""Second-order blind separation of instantaneous mixtures by decorrelation.

Model: ``x(t) = A s(t)`` with mutually uncorrelated sources whose
autocorrelations differ. Then the outputs of the right unmixing matrix are
uncorrelated not only at zero lag but at every time shift ``n``, and each
lag gives an equation in the mixing coefficients through the lagged
cross-correlations ``C^{ij}_n = E[x_i(t) x_j(t − n)]``.

Two sources (Weinstein, Feder & Oppenheim 1993). With
``V = det(A) A⁻¹ X``, i.e. ``v1 = a22 x1 − a12 x2`` and
``v2 = −a21 x1 + a11 x2``, the condition ``E[v1(t) v2(t − n)] = 0`` reads
``r1ᵀ C_n r2 = 0`` with ``r1 = (a22, −a12)`` orthogonal to the second
column of ``A`` and ``r2 = (−a21, a11)`` orthogonal to the first. Writing
the unit-norm columns by their angles, ``r1 = (cos φ, sin φ)`` and
``r2 = (cos ψ, sin ψ)``, we minimise the sum of squares over the lag set::

    J(φ, ψ) = Σ_n (r(φ)ᵀ C_n r(ψ))²

exactly: for fixed ψ, J is a quadratic form in ``r(φ)`` whose minimum over
unit vectors is the smallest eigenvalue of ``M(ψ) = Σ_n C_n r(ψ) r(ψ)ᵀ C_n``.
The profile ``λ_min(M(ψ))`` is a smooth π-periodic function of one angle,
so a fine grid finds the global minimum, Brent's method narrows it down and
a Levenberg–Marquardt fit of both angles on the residuals finishes it.

More sources (SOBI, Belouchrani et al. 1997): whiten with the zero-lag
covariance, then find the rotation that jointly diagonalises the whitened
lagged covariances, by Jacobi rotations (Cardoso & Souloumiac 1996).

Fewer sources than channels: the mixture is first reduced by whitening onto
its top principal subspace; the images are projected back onto every channel
by least squares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import numpy as np
from scipy.optimize import least_squares, minimize_scalar

from demixstudio.errors import ParameterError
from demixstudio.jobs.context import JobContext
from demixstudio.separation import _linear as lin
from demixstudio.separation.base import (Hints, LayerProposal, Method, param,
                                         params_to_dict)
from demixstudio.separation.registry import register

#: The default lag set spans the first 25 ms: long enough to take in pitch
#: periods of voices and most instruments (2–20 ms), so that sources with
#: different pitch or timbre show different autocorrelations.
DEFAULT_SPAN_S = 0.025
#: Geometric spacing samples every time scale (the formant ringing at a
#: fraction of a millisecond, the pitch period at several) with equal weight;
#: 40 points before rounding to whole samples.
DEFAULT_NB_LAGS = 40
#: Profile grid over ψ ∈ [0, π): 0.25° steps, far finer than the width of
#: the basins of J, so the best grid point lies in the global basin.
_GRID = 720


def default_lags(sr: int) -> Tuple[int, ...]:
    """The lag set used when ``lags`` is left empty, in samples at ``sr`` Hz.

    Zero plus ``DEFAULT_NB_LAGS`` lags spread geometrically from one sample
    to ``DEFAULT_SPAN_S`` seconds, rounded to whole samples and deduplicated:
    34 values from 0 to 400 at 16 kHz, 36 from 0 to 1102 at 44.1 kHz.
    """
    top = max(2, int(round(sr * DEFAULT_SPAN_S)))
    spread = np.unique(np.round(np.geomspace(1.0, top, DEFAULT_NB_LAGS)).astype(np.int64))
    return (0,) + tuple(int(n) for n in spread)


def decorrelate_2x2(covs: np.ndarray) -> np.ndarray:
    """The 2×2 unmixing matrix minimising the squared lagged cross-correlations.

    Parameters
    ----------
    covs : np.ndarray [shape=(nb_lags, 2, 2)], symmetric lagged covariances

    Returns
    -------
    np.ndarray [shape=(2, 2)]
        Rows ``r1``, ``r2`` (unit norm) with ``Σ_n (r1ᵀ C_n r2)²`` minimal;
        ``r1 x`` carries source 1 only, ``r2 x`` source 2 only.

    Raises
    ------
    ParameterError
        when the lagged covariances cannot tell two sources apart.
    """
    # Scale does not change the minimiser; unit scale keeps the numbers tame.
    c = covs / np.max(np.abs(covs))

    def profile(psi: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        psi = np.atleast_1d(psi)
        r = np.stack([np.cos(psi), np.sin(psi)])             # (2, G)
        u = np.einsum("nij,jg->gni", c, r)                   # (G, L, 2): C_n r(ψ)
        m = np.einsum("gni,gnj->gij", u, u)                  # (G, 2, 2): M(ψ)
        # λ_min(M) = Σ_n (eᵀ u_n)² with e M's minor axis: a sum of squares, so it
        # keeps full relative precision near the solution where λ_min ≪ λ_max
        # (a·d − b² would cancel; e's rounding adds only O(eps²·λ_max)). It is
        # O(G·L); the Cauchy–Binet sum over pairs of lags used before needed a
        # (G, L, L) array: 23 GB for 2000 lags.
        a, b, d = m[:, 0, 0], m[:, 0, 1], m[:, 1, 1]
        theta = 0.5 * np.arctan2(2.0 * b, a - d)            # (G,): M's major axis
        e = np.stack([-np.sin(theta), np.cos(theta)], axis=1)  # (G, 2): its minor axis
        return np.square(np.einsum("gni,gi->gn", u, e)).sum(axis=1), m

    grid = np.arange(_GRID) * (np.pi / _GRID)
    values, _ = profile(grid)
    best = int(np.argmin(values))
    step = np.pi / _GRID
    res = minimize_scalar(lambda p: float(profile(np.array([p]))[0][0]),
                          bounds=(grid[best] - step, grid[best] + step), method="bounded",
                          options={"xatol": 1e-12})
    psi = float(res.x) if res.fun <= values[best] else float(grid[best])
    _, m = profile(np.array([psi]))
    evals, evecs = np.linalg.eigh(m[0])
    phi = float(np.arctan2(evecs[1, 0], evecs[0, 0]))

    # Polish both angles jointly on the residuals themselves (Levenberg–
    # Marquardt): the profile's minimum is located only to ~√eps in ψ,
    # while the residuals r_n = r(φ)ᵀ C_n r(ψ) are smooth and, for an exact
    # model, vanish at the solution, so Gauss–Newton converges to full
    # precision in a few steps.
    def residuals(angles: np.ndarray) -> np.ndarray:
        r1 = np.array([np.cos(angles[0]), np.sin(angles[0])])
        r2 = np.array([np.cos(angles[1]), np.sin(angles[1])])
        return np.einsum("i,nij,j->n", r1, c, r2)

    def jacobian(angles: np.ndarray) -> np.ndarray:
        r1 = np.array([np.cos(angles[0]), np.sin(angles[0])])
        r2 = np.array([np.cos(angles[1]), np.sin(angles[1])])
        d1 = np.array([-np.sin(angles[0]), np.cos(angles[0])])
        d2 = np.array([-np.sin(angles[1]), np.cos(angles[1])])
        return np.stack([np.einsum("i,nij,j->n", d1, c, r2),
                         np.einsum("i,nij,j->n", r1, c, d2)], axis=1)

    start = np.array([phi, psi])
    fit = least_squares(residuals, start, jac=jacobian, method="lm",
                        xtol=1e-15, ftol=1e-15, gtol=1e-15)
    if fit.success and np.sum(fit.fun ** 2) <= np.sum(residuals(start) ** 2):
        phi, psi = fit.x
    r1 = np.array([np.cos(phi), np.sin(phi)])
    r2 = np.array([np.cos(psi), np.sin(psi)])
    w = np.stack([r1, r2])
    if abs(np.linalg.det(w)) < 1e-6:
        raise ParameterError(
            "decorrelation cannot tell the two sources apart at these lags (their "
            "autocorrelations look alike); try other lags or the 'ica' method")
    return w


@register
class Decorrelation(Method):
    """Blind separation of instantaneous mixtures by lagged decorrelation."""

    name = "decorrelation"
    title = "Decorrelation (second-order blind separation)"
    summary = ("Unmixes instantaneous (panned) mixtures by making the outputs uncorrelated "
               "at many time lags; as many sources as channels, or fewer.")
    references = (
        "E. Weinstein, M. Feder, A. V. Oppenheim, 'Multi-channel signal separation by "
        "decorrelation', IEEE Trans. Speech and Audio Processing 1(4):405–413, 1993.",
        "A. Belouchrani, K. Abed-Meraim, J.-F. Cardoso, E. Moulines, 'A blind source "
        "separation technique using second-order statistics', IEEE Trans. Signal "
        "Processing 45(2):434–444, 1997.",
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
        lags: Tuple[int, ...] = param(
            (), label="Lags (samples)", min=0,
            help="Time shifts, in samples, at which the outputs must stay uncorrelated. "
                 "Empty (the default) derives them from the sample rate: 0 and about 35 "
                 "lags spread geometrically from 1 sample to 25 ms (shortened for inputs "
                 "under 0.1 s). Two sources need at least 2 distinct lags; more sources "
                 "need a non-zero lag.")
        max_samples: int = param(
            1_000_000, label="Analysed samples", min=10_000,
            help="At most this many samples per channel, in evenly spread segments, are "
                 "used to estimate the unmixing (long files); the whole file is unmixed.")
        max_sweeps: int = param(
            100, label="Jacobi sweeps", min=1, max=10_000,
            help="Maximum sweeps of the joint diagonalisation (3 or more sources).")

    def separate(self, mix: np.ndarray, sr: int, params: "Decorrelation.Params",
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
        if params.lags:
            lags = sorted(set(int(v) for v in params.lags))
        else:
            if sr <= 0:
                raise ParameterError(f"sr={sr} must be a positive sample rate in Hz")
            # Derived lags adapt to very short inputs rather than refuse them.
            lags = [v for v in default_lags(sr) if v < n // 4] or [0, 1]
        if lags[0] < 0:
            raise ParameterError(f"lags must be 0 or more samples; got {lags[0]}")
        nonzero = [v for v in lags if v > 0]
        if k == 2 and len(lags) < 2:
            raise ParameterError("decorrelation needs at least 2 distinct lags for 2 sources; "
                                 f"got lags={tuple(lags)}")
        if k > 2 and not nonzero:
            raise ParameterError(
                f"decorrelation needs at least one non-zero lag for {k} sources; got lags=(0,)")
        if lags[-1] >= n // 2:
            raise ParameterError(
                f"lag {lags[-1]} is too long for a mixture of {n} samples; "
                f"use lags below {n // 2}")

        with ctx.stage(0.0, 0.25, "reading the mixture"):
            moment = lin.second_moment(mix, ctx)

        # Lag 0 is always estimated: the whitening / reduction needs it.
        all_lags = sorted(set(lags) | {0})
        # Segments 32x the longest lag lose at most 1/32 of their pairs at the
        # edges; 2**14 samples (~0.4 s at 44.1 kHz) or more each.
        segment = max(1 << 14, 32 * all_lags[-1])
        segments = lin.spread_segments(n, params.max_samples, segment)
        with ctx.stage(0.25, 0.55, "lagged covariances"):
            covs, _ = lin.lagged_covariances(mix, all_lags, segments, ctx)
        cov0 = covs[0]
        used = np.array([all_lags.index(v) for v in lags])

        with ctx.stage(0.55, 0.65, "estimating the mixing"):
            ctx.progress(0, 1, "estimating the mixing")
            # The whitener also checks silence and rank, in every case.
            q = lin.whitener(cov0, k)
            if k == 1:
                w = q
            elif k == 2 and c == 2:
                # The least-squares formulation on the mixture itself, so
                # the columns of A are unit-norm in the channels' own space.
                w = decorrelate_2x2(covs[used])
            elif k == 2:
                white = np.einsum("kc,ncd,jd->nkj", q, covs[used], q)
                w = decorrelate_2x2(white) @ q
            else:
                nz = np.array([all_lags.index(v) for v in nonzero])
                white = np.einsum("kc,ncd,jd->nkj", q, covs[nz], q)
                with ctx.stage(0.0, 1.0, "joint diagonalisation"):
                    v = lin.joint_diagonalize(white, ctx, max_sweeps=params.max_sweeps)
                w = v.T @ q
            ctx.progress(1, 1, "estimating the mixing")

        w = lin.normalise_unmixing(w, moment)
        a = lin.project_back(moment, w)
        order = lin.energy_order(moment, w, a)
        w, a = w[order], a[:, order]
        with ctx.stage(0.65, 1.0, "building the source images"):
            images = lin.build_images(mix, w, a, ctx)

        pdict = params_to_dict(params)
        return [LayerProposal(name=f"source {i + 1}", method=self.name, params=pdict,
                              waveform=img,
                              extra={"mixing": a[:, i].tolist(), "unmixing": w[i].tolist(),
                                     "lags": list(lags)})
                for i, img in enumerate(images)]
