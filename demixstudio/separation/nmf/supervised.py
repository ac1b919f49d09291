"""``nmf-supervised``: dictionaries learned from examples of every source, held fixed.

Each target's example recordings (``hints.examples[target]``) are factorised
on their own into ``components`` templates; the mixture's magnitude is then
explained by all templates together with W fixed and only the activations
estimated (Smaragdis, Raj & Shashanka 2007, "speech & chimes"). Each layer
is the soft mask of its target's part of the model.

With W fixed the frames are independent problems, so long inputs are
processed block by block exactly.

By default the masks are built from *discriminative* reconstruction templates
(Weninger, Le Roux, Hershey & Watanabe 2014; see ``discriminative.py``):
learned on a mixture of the examples themselves, they rebuild each source
from the activations a mixture gives, cross-talk included.

Each template spans three frames (``context`` = 1 frame on each side; see
``context.py``): a short spectro-temporal patch, as in Smaragdis' convolutive
speech bases (2007), built as stacked frames, so each mixture frame is explained
with its neighbours by patches whose motion the examples taught. Measured
2026-11-23 on the benchmark's four 16 kHz sets (seeds 0–2 pooled, median SDR on
the four 7 s mixtures / the first, second and third held-out sets): single frames
8.19 / 6.14 / 11.62 / 6.15 dB, three-frame patches 8.22 / 6.41 / 12.33 / 6.18, five
8.23 / 6.22 / 11.52 / 6.18. At 44.1 kHz, not used to choose, single frames 8.12 /
6.57 / 10.94 / 6.09 and three-frame patches 8.22 / 6.58 / 11.96 / 6.63. Of the 16
mixtures, 12 gain at 16 kHz and 13 at 44.1 kHz (mean over seeds and sources); the
largest loss is two speakers at 44.1 kHz (4.75 → 4.28 dB). The patches need the
discriminative reconstruction templates: without them, instruments playing other
notes than their examples lose (cello and saxophone, 7.05 → 4.97 dB; with them,
7.09 → 7.45). Each frame's fit is three times as large, and so are the examples'
spectrograms (a 7 s mixture with 7 s examples: 0.6 s → 2.0 s on one core, mostly the
dictionaries and the reconstruction templates; 1.3 s since the reconstruction
templates take 30 updates, not 100, see ``discriminative.py``); ``context`` = 0 is the
single-frame method. Measured again with those 30 updates (2026-11-24, same sets and
pooling): three-frame patches 8.32 / 6.62 / 12.48 / 6.12 dB, single frames 8.27 / 6.26 /
11.53 / 6.23; at 44.1 kHz 8.36 / 6.53 / 12.14 / 6.46 against 8.08 / 6.46 / 11.44 / 6.19.
Single frames lose on six of the eight sets (up to 0.95 dB) and are 2–3× faster: in
``bench_nmf.py`` on one thread, 0.45–0.64 s for the four 7 s mixtures against 1.2–1.5 s,
where scikit-learn used the same way takes 0.5–1.4 s.

The dictionaries take 100 updates (``dictionary_iter``; 200 before, 2026-11-24).
Their fit to the examples still improves after 100 (the objective falls another
2–18 % by 200 on the benchmark's examples) but the separation hardly moves (0.13 dB
at most on a set, either way): pooled over
seeds 0–2, 8.30 / 6.49 / 12.51 / 6.07 dB against 8.32 / 6.62 / 12.48 / 6.12 on the four
16 kHz sets, and 8.38 / 6.47 / 12.12 / 6.42 against 8.28 / 6.53 / 12.14 / 6.46 at
44.1 kHz, for half the dictionaries' time (``bench_nmf.py``, one thread: 1.2–1.3 s →
0.6–0.9 s a mixture, scikit-learn 0.4–0.9 s). The benchmark's margin over
scikit-learn (mean over seeds 0–2, difference of medians) went from +2.45 to +2.42 dB on
the four 7 s mixtures and from +0.32 / +2.07 / +0.47 to +0.19 / +2.14 / +0.49 on the
held-out sets.

The dictionaries start from random templates (the run's seed). ``dictionary_start``
= "nndsvda" starts them from the examples' leading singular vectors instead
(``starts.py``): a frame drum whose example is one 1.5 s stroke separates from singing
at 4.0 dB mean SDR instead of 0.4 (held-out set 4, seeds 0–2), but over all five 16 kHz
sets the medians move by −0.31 to +0.12 dB (pooled over seeds 0–2: 8.33 / 6.43 /
12.20 / 6.19 / 6.04 dB against 8.30 / 6.49 / 12.51 / 6.07 / 6.19), so random stays the
default. The other starts, template counts, masks, divergences and adaptations tried
and not taken up, with their figures, are in ``benchmarks/NMF_NOTES.md``
("nmf-supervised", and sessions 67 and 71).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from demixstudio.errors import ParameterError
from demixstudio.jobs.context import JobContext
from demixstudio.separation.base import Hints, LayerProposal, Method, param
from demixstudio.separation.nmf import common, context, discriminative, starts
from demixstudio.separation.registry import register


@register
class SupervisedNMF(Method):
    name = "nmf-supervised"
    title = "Supervised NMF"
    summary = ("Separate sources you have clean examples of: a dictionary per source from its "
               "examples, activations fitted to the mixture.")
    references = (
        "P. Smaragdis, 'Convolutive speech bases and their application to supervised "
        "speech separation', IEEE TASLP 15(1):1–12, 2007 (the templates' context).",
        "P. Smaragdis, B. Raj, M. Shashanka, 'Supervised and semi-supervised separation of "
        "sounds from single-channel mixtures', ICA 2007, LNCS 4666:414–421.",
        "C. Févotte, J. Idier, 'Algorithms for nonnegative matrix factorization with the "
        "β-divergence', Neural Computation 23(9):2421–2456, 2011.",
        "F. Weninger, J. Le Roux, J. R. Hershey, S. Watanabe, 'Discriminative NMF and its "
        "application to single-channel source separation', Interspeech 2014.",
    )
    hint_kinds = ("examples",)

    @dataclass(frozen=True)
    class Params(common.EngineParams):
        components: int = common.components_param(
            32, "Templates per source",
            "How many spectral templates are learned from each source's examples.")
        # The sources' models are fitted separately and need not add up as magnitudes
        # do; the Wiener filter on their modelled power (p = 2) is the usual reading.
        mask_power: float = common.mask_power_param(2.0)
        # Sparse dictionaries (unit-L2 templates, L1 on the codes) separate speech
        # better when the mixture resembles the examples, but learn the examples'
        # particular notes, and instruments playing other notes then separate worse
        # (bench_nmf: +0.5 to +2 dB on speech and voice, −2 to −6 dB on cello+sax at
        # 0.1 to 1); plain KL dictionaries are the default.
        example_sparsity: float = param(
            0.0, label="Example sparsity", min=0.0, max=10.0,
            help="L1 penalty on the activations while learning the dictionaries (sparse "
                 "NMF with unit-L2 templates): sparser codes give templates more specific "
                 "to their source, which helps when the mixture sounds like the examples "
                 "(the same voice) and hurts when it holds other notes than they do.")
        # One frame each side (see the module's docstring): two frames each side
        # gained less on three of the four sets and lost to single frames on one.
        context: int = param(
            1, label="Context (frames)", min=0, max=8, advanced=True,
            help="Frames on each side stacked with each frame, so that the templates are "
                 "short spectro-temporal patches that learn how each source's spectrum "
                 "moves (convolutive bases); 0 = single-frame templates. The fit costs "
                 "(2·context + 1) times as much.")
        # The separation settles long before the dictionaries' fit to the examples
        # does (see the module's docstring): 100 updates halve their time, and 200
        # separated within 0.13 dB of them on every set.
        dictionary_iter: int = param(
            100, label="Dictionary iterations", min=1, max=100_000, advanced=True,
            help="Updates of each source's dictionary on its examples (at most). More fit "
                 "the examples more closely; on the benchmark's mixtures 200 separated about "
                 "as well as 100 (within 0.13 dB) and took twice as long.")
        # Random by default: NNDSVDa is no better on every set (benchmarks/NMF_NOTES.md,
        # sessions 67 and 71), but it is what a short example of a percussive sound needs.
        dictionary_start: str = param(
            "random", label="Dictionary start", choices=starts.STARTS, advanced=True,
            help="How each source's dictionary starts before it is fitted to the examples: "
                 "random templates (from the seed), or NNDSVDa, the examples' leading "
                 "singular vectors, which hardly depend on the seed. Try NNDSVDa when an "
                 "example is short (a second or two) and its layer takes little of its "
                 "source, as with a single drum stroke.")
        discriminative: bool = param(
            True, label="Discriminative masks",
            help="Build the masks from reconstruction templates trained on a mixture of the "
                 "examples (discriminative NMF), which learn how the sources leak into each "
                 "other's activations; off = the examples' own templates.")

    def separate(self, mix: np.ndarray, sr: int, params: SupervisedNMF.Params, hints: Hints,
                 ctx: JobContext) -> list[LayerProposal]:
        """Separate ``mix`` float32 (channels, samples) into one mask per example target.

        Needs examples of at least two targets (``hints.examples``); the masks,
        float32 (1, bins, frames), sum to one.
        """
        n = sum(1 for ex in hints.examples.values() if ex)
        if n < 2:
            raise ParameterError(
                f"nmf-supervised needs example recordings of at least two sources "
                f"(--hint example:NAME=FILE); got {n}. With one, use nmf-semisupervised")
        m = common.open_mixture(self, mix, sr, params, ctx, layers=n)
        c = params.context
        stacked = None
        if c:
            stacked = {t: context.example_magnitude(h, sr, m.cfg, f"the examples of {t!r}", c)
                       for t, h in hints.examples.items() if h}
        notes: list[str] = []
        targets, W, sizes = common.hinted_templates(
            hints.examples, sr, m, params.components, params, ctx, "examples", (0.05, 0.4),
            sparsity=params.example_sparsity, magnitudes=stacked,
            max_iter=params.dictionary_iter, notes=notes, start=params.dictionary_start)
        info = {"note": "; ".join(notes)} if notes else None
        del stacked
        recon = None
        if params.discriminative:
            with ctx.stage(0.4, 0.55, "discriminative templates"):
                recon = discriminative.reconstruction_templates(
                    W, sizes, [hints.examples[t] for t in targets], sr, m.cfg, ctx,
                    beta=params.beta, seed=params.seed, names=targets,
                    precision=params.precision, context=c)
        start = 0.55 if params.discriminative else 0.4
        if not c:
            masks, res = common.fit_and_mask(m, W, sizes, params, ctx, start,
                                             fixed_w=range(W.shape[1]), mask_templates=recon)
            return common.proposals(self, masks, [(t, t) for t in targets], params, res,
                                    info=info)
        with ctx.stage(start, 1.0, "fitting"):
            masks, res = context.fit_and_mask(
                m, W, sizes, c, ctx, beta=params.beta,
                sparsity=common.l1_weight(params.sparsity, params.beta,
                                          m.mean_frame / m.cfg.bins),
                max_iter=params.max_iter, tol=params.tol, power=params.mask_power,
                precision=params.precision, seed=params.seed, mask_templates=recon)
        return common.proposals(self, masks, [(t, t) for t in targets], params, res, info=info)
