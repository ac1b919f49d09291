"""``nmf-paint``: separation guided by painted time–frequency hints.

Each painted target (``hints.paint[target]``, weights in [0, 1] on the
program's STFT grid; the brush's opacity is the confidence) owns a group of
components, and "rest" one more. The paint becomes per-bin constraints on the
posterior over the groups, as in ISSE (Bryan & Mysore 2013): in the EM view of
KL-NMF each bin's energy is shared among the components by the posterior
``q(k | f, t) ∝ W_fk H_kt``; a bin painted for target g with opacity α has the
posterior of every *other* group scaled by ``exp(−strength · α)``. Unpainted
bins are free. The soft masks are these constrained posteriors, so painted
energy lands in its target's layer and the factorisation spreads what it
learns there to the unpainted bins.

Paint names:
- ``NAME`` — this energy belongs to target NAME (a layer NAME is made);
- the rest layer's name (``rest`` by default) — this energy belongs to none of
  the targets;
- ``not:NAME`` — this energy does not belong to NAME: push it to the other
  layers. This is how painting on an output layer refines it: re-run with the
  strokes made on layer NAME given as ``not:NAME``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from demixstudio.errors import ParameterError
from demixstudio.jobs.context import JobContext
from demixstudio.separation.base import (
    Hints,
    LayerProposal,
    Method,
    param,
    params_to_dict,
)
from demixstudio.separation.nmf import common, engine, spectra
from demixstudio.separation.registry import register

NOT = "not:"


@register
class PaintNMF(Method):
    name = "nmf-paint"
    title = "Paint to separate"
    summary = ("Paint roughly where a sound is on the spectrogram; NMF with posterior "
               "constraints pulls out everything that belongs with it.")
    references = (
        "N. J. Bryan, G. J. Mysore, 'An efficient posterior regularized latent variable "
        "model for interactive sound source separation', ICML 2013.",
        "N. J. Bryan, G. J. Mysore, G. Wang, 'ISSE: an interactive source separation "
        "editor', ACM CHI 2014.",
    )

    @dataclass(frozen=True)
    class Params(common.EngineParams):
        # Few components per group: a group with many can model the other sources
        # in the unpainted bins too, and the paint then generalises less.
        components: int = param(8, label="Templates per target", min=1, max=1024,
                                help="Components of each painted target.")
        free_components: int = param(8, label="Rest templates", min=1, max=1024,
                                     help="Components of the rest.")
        strength: float = param(
            10.0, label="Paint strength", min=0.0, max=100.0,
            help="Penalty of full-opacity paint on the other groups' posterior "
                 "(exp(−strength·opacity)); 10 is nearly a hard constraint.")
        rest_name: str = param("rest", label="Rest layer", help="Name of the layer of the rest.")

    def separate(self, mix: np.ndarray, sr: int, params: PaintNMF.Params, hints: Hints,
                 ctx: JobContext) -> list[LayerProposal]:
        """Masks float32 (1, bins, frames): one per painted target, then the rest; sum one."""
        self.check_input(mix)
        if params.beta != 1.0:
            raise ParameterError(f"nmf-paint's posterior constraints need beta=1 (KL); "
                                 f"got beta={params.beta}")
        rest = params.rest_name
        targets: list[str] = []
        for name in hints.paint:
            base = name.removeprefix(NOT)
            if base != rest and base not in targets:
                targets.append(base)
        if not targets and not hints.paint:
            raise ParameterError("nmf-paint needs painted hints (--hint paint:NAME=FILE)")
        with ctx.stage(0.0, 0.05, "spectrogram"):
            ctx.progress(0, 1, "spectrogram")
            m = common.load_mixture(mix, sr, params)
        names = targets + [rest]
        times = m.cfg.frame_times(mix.shape[1], sr)
        freqs = m.cfg.bin_freqs(sr)
        # Λ_g = strength · (paint of every other group + paint of "not:g").
        penalty = self._penalties(hints, names, times, freqs, params.strength)
        pen_blocks = []
        t0 = 0
        for Vb in m.V:
            b = Vb.shape[1]
            pen_blocks.append(torch.as_tensor(
                np.ascontiguousarray(penalty[:, :, t0:t0 + b])).to(m.device))
            t0 += b
        del penalty
        sizes = [params.components] * len(targets) + [params.free_components]
        K = sum(sizes)
        scale = float(np.sqrt(m.mean_frame / m.cfg.bins / K))
        W = engine.random_init((m.cfg.bins, K), scale, params.seed, m.device)
        H = spectra.init_activations(m.V, K, params.seed)
        groups = common.slices(sizes)
        lam = common.l1_weight(params.sparsity, params.beta, m.mean_frame / m.cfg.bins)
        with ctx.stage(0.05, 0.95, "fitting"):
            res = engine.fit(m.V, W, H, ctx, beta=1.0, sparsity=lam, groups=groups,
                             penalties=pen_blocks, max_iter=params.max_iter, tol=params.tol,
                             message="fitting")
        with ctx.stage(0.95, 1.0, "masks"):
            ctx.progress(0, 1, "masks")
            masks = spectra.group_masks(W, H, groups, m.frames, power=params.mask_power,
                                        penalties=pen_blocks)
        layer_names = [(t, t) for t in targets] + [(rest, None)]
        info = {"iterations": res.iterations, "converged": res.converged}
        return common.mask_proposals(masks, layer_names, self.name, params_to_dict(params), info)

    @staticmethod
    def _penalties(hints: Hints, names: list[str], times: np.ndarray, freqs: np.ndarray,
                   strength: float) -> np.ndarray:
        """Multipliers exp(−Λ_g): float32 (groups, bins, frames)."""
        G = len(names)
        lam = np.zeros((G, freqs.size, times.size), dtype=np.float32)
        index: dict[str, int] = {n: i for i, n in enumerate(names)}
        for name, hint in hints.paint.items():
            w = hint.on_grid(times, freqs)
            if name.startswith(NOT):
                lam[index[name[len(NOT):]]] += w
            else:
                g = index[name]
                for j in range(G):
                    if j != g:
                        lam[j] += w
        lam *= -strength
        np.exp(lam, out=lam)
        return lam
