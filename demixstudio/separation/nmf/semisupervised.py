"""``nmf-semisupervised``: known dictionaries for some sources, free components for the rest.

Targets with example recordings get dictionaries learned from them and held
fixed; ``free_components`` more templates are learned on the mixture itself
and explain whatever else is there (Smaragdis, Raj & Shashanka 2007,
"soprano & piano"). Layers: one per example target, plus "rest".

Tried and left out (2026-11-23): three-frame templates, as ``nmf-supervised`` has
(``context.py``; the known ones learned on the stacked examples, the free ones on the
stacked mixture). Median SDR pooled over seeds 0–2 on the benchmark's four 7 s
mixtures and three held-out sets: 3.32 / 4.52 / 6.25 / 4.92 dB against 3.79 / 4.13 /
7.15 / 5.58 with single frames (mean over seeds and sources: two speakers gain 1.2–1.4
dB in two sets and lose 1.3 dB in the third; singing with a piano falls from 10.6 to
8.2 dB). And with free templates the whole stacked mixture would have to be held at
once: three spectrograms on a long file.

Nor (2026-11-24, same sets and pooling) known dictionaries started from NNDSVDar
(Boutsidis & Gallopoulos 2008: the positive parts of the examples' leading singular
vectors, zeros filled with small random values) instead of random templates: 3.54 /
4.73 / 6.03 / 4.88 dB, lower on three of the four sets.

Nor (2026-11-24) ``nmf-hum``'s fit, with the examples in the place of the hum: the
known templates start from the examples' dictionaries and are updated on the mixture,
with the examples' own frames kept in the fit and confined to their target (a prior
from the examples, Smaragdis & Mysore 2009), an L1 weight of 0.03 and 25 iterations.
With the first source's example (the benchmark's hint: the voice, a speaker, the
speech in noise, the cello; same sets and pooling) it gained on three of the four sets,
7.32 / 3.46 / 11.33 / 7.60 dB against 3.79 / 4.13 / 7.15 / 5.58 (cello and saxophone,
the cello playing other notes than its example, from −0.9 to 8.3 dB); the templates
held fixed with the same L1 weight and 25 iterations gained too, 4.97 / 3.78 / 10.77 /
7.49. But given the *second* source's
example instead (the bass, the other speaker, the noise, the saxophone; seed 0), both
lost on every set: 2.56 / 1.81 / 4.46 / 1.72 and 2.64 / 3.79 / 3.84 / 2.58 against
6.17 / 4.68 / 4.91 / 4.30 dB (likely because a noise's or a second speaker's fixed templates
describe it well, and adapted or cut short the free components keep more of it). At 44.1 kHz
(first source) the adapted fit gained on two sets and lost on two. So the templates
stay fixed and the fit runs to convergence. For a voice or an instrument heard playing
other notes than in its example, ``nmf-hum`` with the example as the hint
(``transpose_search=0``) is that adapted fit.

Nor (2026-11-24, seed 0, the same two ways) the known templates together with copies
moved 1 and 2 semitones up and down (``spectra.transpose_magnitude``; a pitch-shifted
dictionary, as shift-invariant NMF has, for notes the example does not play): with the
first source's example 4.10 / 3.85 / 7.15 / 5.60 → 3.19 / 3.48 / 8.27 / 6.10 dB, with
the second's 6.17 / 4.68 / 4.91 / 4.30 → 7.49 / 6.24 / 4.92 / 3.28, and the cello
against the saxophone stays near 0 dB (0.4 / −1.9 → 0.8 / −1.6).

Nor (2026-11-24, ``benchmarks/nmf_variants.py``, the four 16 kHz sets, seeds 0–2
pooled, the first source's example) another number of free templates than 16: 4, 8
and 32 give 4.07 / 3.00 / 8.34 / 7.01, 3.94 / 3.42 / 8.24 / 7.28 and 3.03 / 4.11 / 7.01
/ 4.95 dB against 3.79 / 4.13 / 7.15 / 5.58. Fewer gain on three sets (the mean over the
16 mixtures: 5.6 and 5.5 dB against 5.1) and lose 0.7–1.1 dB on the first held-out
one, whose rests are a guitar with a pad, rain and a second speaker: what the free
templates must explain varies too much for one count to suit every mixture, and a
user who knows the rest is simple can lower it. Nor the masks' power at 2 (the
Wiener filter on the modelled power, ``nmf-supervised``'s): 3.26 / 3.66 / 6.49 /
5.33 dB; nor an L1 weight of 0.1 on the activations: 3.34 / 4.56 / 6.22 / 5.57.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from demixstudio.errors import ParameterError
from demixstudio.jobs.context import JobContext
from demixstudio.separation.base import Hints, LayerProposal, Method
from demixstudio.separation.nmf import common
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
    hint_kinds = ("examples",)

    @dataclass(frozen=True)
    class Params(common.EngineParams):
        components: int = common.components_param(
            32, "Templates per source", "Templates learned from each example target's recordings.")
        free_components: int = common.free_components_param(16)
        rest_name: str = common.rest_name_param()

    def separate(self, mix: np.ndarray, sr: int, params: SemiSupervisedNMF.Params,
                 hints: Hints, ctx: JobContext) -> list[LayerProposal]:
        """Masks float32 (1, bins, frames): one per example target, then the rest; sum one."""
        if not any(hints.examples.values()):
            raise ParameterError("nmf-semisupervised needs example recordings of at least one "
                                 "source (--hint example:NAME=FILE)")
        common.check_targets_are_not_rest([t for t, ex in hints.examples.items() if ex],
                                           params.rest_name, "an example is")
        # One layer per example target, and the rest.
        layers = sum(1 for ex in hints.examples.values() if ex) + 1
        m = common.open_mixture(self, mix, sr, params, ctx, layers=layers)
        notes: list[str] = []
        targets, known, sizes = common.hinted_templates(
            hints.examples, sr, m, params.components, params, ctx, "examples", (0.05, 0.4),
            notes=notes)
        free = common.free_templates(m, params.free_components, params.seed,
                                     common.FREE_LEAD)
        W = torch.cat([known, free], dim=1)
        masks, res = common.fit_and_mask(m, W, sizes + [params.free_components], params, ctx,
                                         0.4, fixed_w=range(known.shape[1]))
        names = [(t, t) for t in targets] + [(params.rest_name, None)]
        return common.proposals(self, masks, names, params, res,
                                info={"note": "; ".join(notes)} if notes else None)
