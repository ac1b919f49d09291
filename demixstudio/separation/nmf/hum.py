"""``nmf-hum``: separation by humming (a vocalized hint).

The user hums, sings or whistles the target (``hints.hums[target]``), at any
pitch and timbre and not necessarily in time with the mixture. The hint is
factorised on its own; its templates initialise the target's components and
pull on them through a prior whose weight anneals to zero over the first
part of the iterations, so a rough imitation steers the factorisation at the
start and the mixture's own data decide the details at the end. Free
components explain the rest (Smaragdis & Mysore 2009).
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


@register
class HumNMF(Method):
    name = "nmf-hum"
    title = "Separation by humming"
    summary = ("Hum, sing or whistle the part you want: its templates guide the target's "
               "components; free components take the rest.")
    references = (
        "P. Smaragdis, G. J. Mysore, 'Separation by humming: user-guided sound extraction "
        "from monophonic mixtures', IEEE WASPAA 2009, 69–72.",
    )

    @dataclass(frozen=True)
    class Params(common.EngineParams):
        components: int = param(32, label="Templates per target", min=1, max=1024,
                                help="Templates learned from each hummed hint.")
        free_components: int = param(32, label="Free templates", min=1, max=1024,
                                     help="Templates for everything that is not a target.")
        prior_weight: float = param(
            1.0, label="Prior weight", min=0.0, max=100.0,
            help="How hard the hint's templates pull on the target's at the start "
                 "(1 = as hard as the data).")
        anneal: float = param(
            0.5, label="Anneal", min=0.0, max=1.0,
            help="Fraction of the iterations over which the prior's weight falls to zero "
                 "(0 = it never falls: the hint must match well).")
        rest_name: str = param("rest", label="Rest layer", help="Name of the layer of the rest.")

    def separate(self, mix: np.ndarray, sr: int, params: HumNMF.Params, hints: Hints,
                 ctx: JobContext) -> list[LayerProposal]:
        """Masks float32 (1, bins, frames): one per hummed target, then the rest; sum one."""
        self.check_input(mix)
        targets = [t for t, h in hints.hums.items() if h]
        if not targets:
            raise ParameterError("nmf-hum needs a hummed, sung or whistled hint of at least one "
                                 "target (--hint hum:NAME=FILE)")
        with ctx.stage(0.0, 0.05, "spectrogram"):
            ctx.progress(0, 1, "spectrogram")
            m = common.load_mixture(mix, sr, params)
        with ctx.stage(0.05, 0.3, "learning the hints"):
            dicts = common.dictionaries({t: hints.hums[t] for t in targets}, sr, m,
                                        params.components, params, ctx, "hum")
        hinted = torch.cat([dicts[t] for t in targets], dim=1)
        kf = params.free_components
        scale = float(np.sqrt(m.mean_frame / m.cfg.bins / kf))
        free = engine.random_init((m.cfg.bins, kf), scale, params.seed, m.device)
        kh = hinted.shape[1]
        # The target's components start from the hint (slightly perturbed, so that
        # none is an exact copy the data cannot move) and the prior pulls towards it.
        jitter = engine.random_init((m.cfg.bins, kh), 1.0, params.seed + 3, m.device)
        W = torch.cat([hinted * jitter, free], dim=1)
        K = W.shape[1]
        groups = common.slices([dicts[t].shape[1] for t in targets] + [kf])
        prior = engine.WPrior(columns=range(kh), templates=hinted.clone(),
                              weight=params.prior_weight,
                              anneal_iters=int(round(params.anneal * params.max_iter)))
        H = spectra.init_activations(m.V, K, params.seed)
        lam = common.l1_weight(params.sparsity, params.beta, m.mean_frame / m.cfg.bins)
        with ctx.stage(0.3, 0.95, "fitting"):
            # The annealing must run its course before convergence is judged.
            res = engine.fit(m.V, W, H, ctx, beta=params.beta, sparsity=lam, prior=prior,
                             max_iter=params.max_iter, tol=params.tol,
                             min_iter=prior.anneal_iters, message="fitting")
        with ctx.stage(0.95, 1.0, "masks"):
            ctx.progress(0, 1, "masks")
            masks = spectra.group_masks(W, H, groups, m.frames, power=params.mask_power)
        names = [(t, t) for t in targets] + [(params.rest_name, None)]
        info = {"iterations": res.iterations, "converged": res.converged}
        return common.mask_proposals(masks, names, self.name, params_to_dict(params), info)
