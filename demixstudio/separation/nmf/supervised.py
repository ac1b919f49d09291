"""``nmf-supervised``: dictionaries learned from examples of every source, held fixed.

Each target's example recordings (``hints.examples[target]``) are factorised
on their own into ``components`` templates; the mixture's magnitude is then
explained by all templates together with W fixed and only the activations
estimated (Smaragdis, Raj & Shashanka 2007, "speech & chimes"). Each layer
is the soft mask of its target's part of the model.

With W fixed the frames are independent problems, so long inputs are
processed block by block exactly.
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
class SupervisedNMF(Method):
    name = "nmf-supervised"
    title = "Supervised NMF"
    summary = ("Separate sources you have clean examples of: a dictionary per source from its "
               "examples, activations fitted to the mixture.")
    references = (
        "P. Smaragdis, B. Raj, M. Shashanka, 'Supervised and semi-supervised separation of "
        "sounds from single-channel mixtures', ICA 2007, LNCS 4666:414–421.",
        "C. Févotte, J. Idier, 'Algorithms for nonnegative matrix factorization with the "
        "β-divergence', Neural Computation 23(9):2421–2456, 2011.",
    )

    @dataclass(frozen=True)
    class Params(common.EngineParams):
        components: int = param(
            32, label="Templates per source", min=1, max=1024,
            help="How many spectral templates are learned from each source's examples.")
        example_sparsity: float = param(
            0.1, label="Example sparsity", min=0.0, max=10.0,
            help="L1 penalty on the activations while learning the dictionaries: sparser "
                 "codes give templates that are more specific to their source.")

    def separate(self, mix: np.ndarray, sr: int, params: SupervisedNMF.Params, hints: Hints,
                 ctx: JobContext) -> list[LayerProposal]:
        """Separate ``mix`` float32 (channels, samples) into one mask per example target.

        Needs examples of at least two targets (``hints.examples``); the masks,
        float32 (1, bins, frames), sum to one.
        """
        self.check_input(mix)
        targets = [t for t, ex in hints.examples.items() if ex]
        if len(targets) < 2:
            raise ParameterError(
                f"nmf-supervised needs example recordings of at least two sources "
                f"(--hint example:NAME=FILE); got {len(targets)}. With one, use nmf-semisupervised")
        with ctx.stage(0.0, 0.05, "spectrogram"):
            ctx.progress(0, 1, "spectrogram")
            m = common.load_mixture(mix, sr, params)
        with ctx.stage(0.05, 0.4, "learning the dictionaries"):
            dicts = common.dictionaries({t: hints.examples[t] for t in targets}, sr, m,
                                        params.components, params, ctx, "examples",
                                        sparsity=params.example_sparsity)
        W = torch.cat([dicts[t] for t in targets], dim=1)
        K = W.shape[1]
        groups = common.slices([dicts[t].shape[1] for t in targets])
        H = spectra.init_activations(m.V, K, params.seed)
        lam = common.l1_weight(params.sparsity, params.beta, m.mean_frame / m.cfg.bins)
        with ctx.stage(0.4, 0.95, "fitting the activations"):
            res = engine.fit(m.V, W, H, ctx, beta=params.beta, fixed_w=range(K), sparsity=lam,
                             max_iter=params.max_iter, tol=params.tol,
                             message="fitting the activations")
        with ctx.stage(0.95, 1.0, "masks"):
            ctx.progress(0, 1, "masks")
            masks = spectra.group_masks(W, H, groups, m.frames, power=params.mask_power)
        info = {"iterations": res.iterations, "converged": res.converged}
        return common.mask_proposals(masks, [(t, t) for t in targets], self.name,
                                     params_to_dict(params), info)
