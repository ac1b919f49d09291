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
from demixstudio.separation.base import Hints, LayerProposal, Method, param
from demixstudio.separation.nmf import common, engine
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
        components: int = common.components_param(
            32, "Templates per target", "Templates learned from each hummed hint.")
        # Fewer free templates than hinted ones: free ones explain only what the hint
        # does not, and many of them would absorb the target too.
        free_components: int = common.free_components_param(8)
        prior_weight: float = param(
            1.0, label="Prior weight", min=0.0, max=100.0,
            help="How hard the hint's templates pull on the target's at the start "
                 "(1 = as hard as the data).")
        anneal: float = param(
            0.5, label="Anneal", min=0.0, max=1.0,
            help="Fraction of the iterations over which the prior's weight falls to zero "
                 "(0 = it never falls: the hint must match well).")
        rest_name: str = common.rest_name_param()

    def separate(self, mix: np.ndarray, sr: int, params: HumNMF.Params, hints: Hints,
                 ctx: JobContext) -> list[LayerProposal]:
        """Masks float32 (1, bins, frames): one per hummed target, then the rest; sum one."""
        if not any(hints.hums.values()):
            raise ParameterError("nmf-hum needs a hummed, sung or whistled hint of at least one "
                                 "target (--hint hum:NAME=FILE)")
        m = common.open_mixture(self, mix, sr, params, ctx)
        targets, hinted, sizes = common.hinted_templates(
            hints.hums, sr, m, params.components, params, ctx, "hum", (0.05, 0.3))
        kh = hinted.shape[1]
        # The target's components start from the hint (slightly perturbed, so that
        # none is an exact copy the data cannot move) and the prior pulls towards it.
        jitter = engine.random_init((m.cfg.bins, kh), 1.0, params.seed + 3, m.device)
        free = common.free_templates(m, params.free_components, params.seed)
        W = torch.cat([hinted * jitter, free], dim=1)
        prior = engine.WPrior(columns=range(kh), templates=hinted.clone(),
                              weight=params.prior_weight,
                              anneal_iters=int(round(params.anneal * params.max_iter)))
        # The annealing must run its course before convergence is judged.
        masks, res = common.fit_and_mask(m, W, sizes + [params.free_components], params, ctx,
                                         0.3, prior=prior, min_iter=prior.anneal_iters)
        names = [(t, t) for t in targets] + [(params.rest_name, None)]
        return common.proposals(self, masks, names, params, res)
