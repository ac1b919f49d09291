"""``nmf-semisupervised``: known dictionaries for some sources, free components for the rest.

Targets with example recordings get dictionaries learned from them and held
fixed; ``free_components`` more templates are learned on the mixture itself
and explain whatever else is there (Smaragdis, Raj & Shashanka 2007,
"soprano & piano"). Layers: one per example target, plus "rest".
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
class SemiSupervisedNMF(Method):
    name = "nmf-semisupervised"
    title = "Semi-supervised NMF"
    summary = ("Pull out the sources you have clean examples of; free components learned on "
               "the mixture take the rest.")
    references = (
        "P. Smaragdis, B. Raj, M. Shashanka, 'Supervised and semi-supervised separation of "
        "sounds from single-channel mixtures', ICA 2007, LNCS 4666:414–421.",
    )

    @dataclass(frozen=True)
    class Params(common.EngineParams):
        components: int = param(32, label="Templates per source", min=1, max=1024,
                                help="Templates learned from each example target's recordings.")
        free_components: int = param(16, label="Free templates", min=1, max=1024,
                                     help="Templates learned on the mixture for everything else.")
        rest_name: str = param("rest", label="Rest layer", help="Name of the layer of the rest.")

    def separate(self, mix: np.ndarray, sr: int, params: SemiSupervisedNMF.Params,
                 hints: Hints, ctx: JobContext) -> list[LayerProposal]:
        """Masks float32 (1, bins, frames): one per example target, then the rest; sum one."""
        self.check_input(mix)
        targets = [t for t, ex in hints.examples.items() if ex]
        if not targets:
            raise ParameterError("nmf-semisupervised needs example recordings of at least one "
                                 "source (--hint example:NAME=FILE)")
        with ctx.stage(0.0, 0.05, "spectrogram"):
            ctx.progress(0, 1, "spectrogram")
            m = common.load_mixture(mix, sr, params)
        with ctx.stage(0.05, 0.4, "learning the dictionaries"):
            dicts = common.dictionaries({t: hints.examples[t] for t in targets}, sr, m,
                                        params.components, params, ctx, "examples")
        known = torch.cat([dicts[t] for t in targets], dim=1)
        kf = params.free_components
        scale = float(np.sqrt(m.mean_frame / m.cfg.bins / kf))
        free = engine.random_init((m.cfg.bins, kf), scale, params.seed, m.device)
        W = torch.cat([known, free], dim=1)
        K = W.shape[1]
        groups = common.slices([dicts[t].shape[1] for t in targets] + [kf])
        H = spectra.init_activations(m.V, K, params.seed)
        lam = common.l1_weight(params.sparsity, params.beta, m.mean_frame / m.cfg.bins)
        with ctx.stage(0.4, 0.95, "fitting"):
            res = engine.fit(m.V, W, H, ctx, beta=params.beta, fixed_w=range(known.shape[1]),
                             sparsity=lam, max_iter=params.max_iter, tol=params.tol,
                             message="fitting")
        with ctx.stage(0.95, 1.0, "masks"):
            ctx.progress(0, 1, "masks")
            masks = spectra.group_masks(W, H, groups, m.frames, power=params.mask_power)
        names = [(t, t) for t in targets] + [(params.rest_name, None)]
        info = {"iterations": res.iterations, "converged": res.converged}
        return common.mask_proposals(masks, names, self.name, params_to_dict(params), info)
