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

How strong: opacity is a confidence. At full opacity the default strength 3
scales the other groups' posterior by e^−3 ≈ 1/20, so where the model has no
opinion a painted bin goes 95 % to its target; where the model is sure it
is another source's (a coarse brush also covers some bins of other sources:
on real mixtures a rectangle drawn over a dominant source holds about
90–99 % of its magnitude from that source, not 100 %) that evidence can
still win. Corrections made on an output layer (``not:NAME``) are meant
literally and default to a near-hard constraint (e^−10).

Where the constrained fit starts matters: from random templates, each group's
components learn a blend of the sources in the (mostly unpainted) bins, and
the paint, which holds little of the energy, steers them weakly. So, as in
ISSE's loop (the user paints on a factorisation already made), the mixture is
first factorised without constraints; each component then goes to the group
whose painted energy it is most enriched in (its share of that paint's
energy over its share of all the energy; a group without paint of its own,
such as an unpainted rest, counts as 1, "no more in the paint than
anywhere"), and the constrained fit refines the groups from those templates.
A component's energy is counted where it is the one explaining a bin (each
bin's energy times the square of the component's posterior there), so a
template does not collect the many bins it only brushes: with the plain
posterior, a saxophone template took the cello's group from its small share
of the cello's painted notes when its own notes were unpainted. A component
enriched in the paint of a second group as well (a template that blends two
sources, or one they share) goes to each of them, as copies the constrained
fit then specialises; before, it went wholesale to one group. Over the
benchmark's sets (seeds 0–2) this moved the median of per-source differences
with ``nmf`` from +2.61 to +2.76 dB (four 7 s mixtures), +1.19 to +1.34
(first 4 s), +1.42 to +1.45 (held-out) and +2.07 to +2.13 (44.1 kHz), and
lowered none of them; 0–2 of the 16 components qualify in a run. That start is
still one local optimum among many.

The start's factorisation carries a light temporal-continuity prior on the
activations (Virtanen 2007: the squared differences of consecutive gains over
their squares, weighted ``continuity`` = 0.1 against the data). Its job there
is to make components that follow one source's events (a note, a word) rather
than blend two sources frame by frame, so a rectangle over part of an event
labels the whole of it; the constrained fit after it is free of the prior. The
weight was picked from 0.03, 0.1, 0.3 and 1 on the benchmark's four 7 s
mixtures (seeds 0–2; difference of medians / median of per-source differences
with ``nmf``: +4.64 / +3.01, +5.25 / +3.81, +4.15 / +3.47, +3.77 / +2.43;
without it +4.61 / +2.76), then checked on sets not used to pick it: held-out
mixtures +2.88 / +1.93 (without it +2.08 / +1.45), the first 4 s +3.63 / +1.36
(+2.55 / +1.34), but the same recordings at 44.1 kHz +1.75 / +2.00 (+2.36 /
+2.13): not a gain everywhere. In the constrained fit as well it helps less
(+5.28 / +3.55), and in plain ``nmf`` (the prior on its only fit) it lowers the
median from 3.75 to 2.84 dB, so neither has it. With ``restarts`` > 1 the whole
start-and-fit is repeated from other seeds and the fit with the lowest
constrained objective (the highest likelihood under the paint) is kept, the
usual remedy for EM's local optima. It is off by default: each restart costs
a full fit, and the likelihood is only a loose guide to the separation (a fit
whose templates mix the sources in the unpainted bins often explains the
mixture better); it mostly helps where the fit has two very different
outcomes.

A refinement (a rerun with corrections, ``Hints.previous`` holding the state
this method reported with the run's layers: its templates and group sizes)
starts from the corrected run's templates instead of a new start, as ISSE's
loop does: the corrections act on the separation they were made on. From a new
start, the constrained fit could land in another optimum and undo what was
right (cello+sax at 16 kHz: a round of corrections took 15.6 / 13.6 dB to
10.4 / 6.3; from the run's templates it stays at 16.1 / 13.0). Over the
benchmark's sets (seeds 0–2, one round of simulated corrections) the median
SDR after the round is 7.07 dB against 6.81 from a new start (four 7 s
mixtures), 5.67 against 5.55 (first 4 s), 5.28 against 5.25 (held-out) and
6.80 against 6.67 (44.1 kHz); keeping whichever of the two fits has the lower
constrained objective was no better than the warm start alone. The rerun also
skips the free factorisation, so it costs about half as much. With ``long_window``
the state holds both fits' templates and each fit continues from its own. A state
that does not fit the new run (other layers, rank, rate or windows) is ignored whole.

Why the components are labelled as below: on the benchmark's held-out sets the
grouped start's components are nearly pure (labelled by the true sources, an
oracle, they separate at 8.57 / 9.83 dB on the second and third sets, where the
paint's labels gave 5.59 / 2.35), and what goes wrong is the labels of components
that hold almost none of any paint: in singing over drums, the two drum components
under 1 kHz that hold half the mixture's energy have enrichments of 0.05 and 0.03,
and the rule's choice for them is noise.

So a component that no paint holds (enrichment under ``timbre_below`` = 0.1 in every
painted group: a tenth of what it would hold if the paint sampled it like the mixture)
goes to the group whose well-painted components' mean timbre is nearest (their MFCCs,
``grouping.template_features``, standardised over the components and weighted by
energy). Only between painted groups: beside a group without paint (an unpainted
rest) such a component goes there, as unpainted sound does. The constrained fit's
median SDR on the four 16 kHz sets (seeds 0–2 pooled): 8.23 / 4.69 / 6.25 / 3.89 dB
against 8.23 / 4.56 / 6.25 / 2.13 without it (singing over drums 1.3 → 7.2 dB).

An enrichment is an estimate, and a paint holding a sliver of the mixture's energy
(one small stroke) makes a poor one: every component of its target that the stroke
misses gets 0 and loses to its slight enrichment in a larger paint of the other
source. Cello over rain (fourth held-out set): one small rectangle of cello, a fifth
of the energy painted as rain, and the cello's components all went to the rain
(0.0 dB). So each paint's enrichments are smoothed as if it also held
``enrichment_prior`` = 0.2 % of the mixture's energy, spread like the mixture
(additive smoothing towards 1; a group without paint is the limit of none). A sliver
then reads as no paint, and what the other paints do not claim goes to its group; a
paint holding 2–34 % of the energy, as the benchmark's others do, is barely moved.

Pooled median SDR (seeds 0–2) on the five 16 kHz sets, without → with: 9.32 / 4.71 /
7.09 / 4.10 / 2.19 → 9.32 / 4.63 / 7.78 / 4.50 / 4.46 dB (cello over rain 0.0 → 7.6).
Not used to choose: seeds 3–4, 8.12 / 4.02 / 7.37 / 5.63 / 4.15 → 8.12 / 4.37 / 8.47 /
5.63 / 5.17; at 44.1 kHz, 7.51 / 5.28 / 5.16 / 2.72 / 3.78 → 7.51 / 5.28 / 5.16 / 3.51 /
4.46; the first 4 s of the four mixtures, 8.10 → 8.10 (two speakers lose 1.2 dB
there). From 0.4 % the smoothing brings one component of cello over saxophone under
``decisive`` (seed 2), and that mixture loses 4 dB (the mean of seeds 0–2), so the
prior stays at 0.2 % (``benchmarks/NMF_NOTES.md``, "Session 70").

The paint is also ambiguous about components it holds some of in two groups: a
rectangle over one source's dominant bins also covers some of the other source,
so a template of one can be slightly more enriched in the other's paint. With two
or more painted groups, the templates' mel spectra are split into one part per
painted group by the NMF that ``nmf`` groups with (``grouping.nmf_clusters``;
Spiertz & Gnann 2009), and each part is named after the group whose paint it
holds most of (``paint_named_parts``). A component whose largest enrichment is
under ``decisive`` = 4 times its second goes to its part's group, provided the
decisive components agree with the parts (at least ``parts_agree`` = 0.7 of their
energy lies in the part named after their label; where the spectra do not follow
the sources, as with two voices, the paint's label stands). Pooled median SDR,
seeds 0–2, on the four 16 kHz sets: 9.32 / 4.71 / 7.09 / 4.10 dB against 8.23 /
4.69 / 6.25 / 3.89 without it; at 44.1 kHz 7.51 / 5.28 / 5.16 / 2.72 against 6.85 /
5.28 / 4.93 / 2.43. On runs not used to choose the two numbers (seeds 3 and 4 at
16 kHz, 48 kHz, the first 4 s, 8 kHz) it loses nowhere by more than 0.03 dB.
Giving every component to its part (not just the ambiguous ones), or skipping
the agreement check, gained more on some sets and lost 1–2 dB on others.

Two windows (``long_window``, on by default since 2026-11-26). The whole start and
constrained fit run twice: on the program's STFT and on a window and hop twice as
long (``common.analysis_config``; 128 ms at 16 kHz, 93 ms at 44.1 kHz), the paint read
on each grid. The masks are the average of the two fits' (the long one's spread onto
the program's grid as ``nmf-hum``'s are), so they still sum to one. One window trades
time against frequency resolution: the long one separates the bass's close partials
and sustained notes better, the program's the onsets, and each fit lands in its own
local optimum, so their errors are partly independent and their average errs less
than either. Nothing is tuned: the factor 2 and the plain average were fixed before
any run. Pooled median SDR, the program's window alone → the average (``nmf_variants``
pooling; five 16 kHz sets, the four 7 s mixtures first): seeds 0–2, 9.32 / 4.63 /
7.78 / 4.50 / 4.46 → 10.02 / 5.55 / 7.75 / 4.88 / 4.94 dB; seeds 3–4 (not used to
decide), 8.12 / 4.37 / 8.47 / 5.63 / 5.17 → 9.06 / 5.34 / 8.43 / 5.05 / 5.55; at 44.1
kHz (seeds 0–2, the four mixtures and held-out sets 1 and 3) 7.51 / 5.28 / 3.51 →
7.70 / 5.01 / 4.12. Nine of thirteen gain (+0.2 to +1.0 dB), the mean change is
+0.36 dB; the losses are held-out 3 at seeds 3–4 (−0.58: singing over drums, whose
hits the long window smears, 8.7 / 9.5 → 6.5 / 6.2 dB at seeds 0–1), held-out 1 at
44.1 kHz (−0.27) and two of −0.04. The median of per-source differences with ``nmf``
rises on ten of the thirteen and falls on two (−0.28, −0.35). Averaging the masks
geometrically instead, or adding a third window half the program's, gained less
(``benchmarks/NMF_NOTES.md``, session 77).
It costs a second fit (10 minutes of stereo at 44.1 kHz: 87 s against 42 s); the
fits run one after the other and each keeps only its templates, activations and
painted blocks' penalties once done, so the peak memory grows by those (716 against
631 MB above the call's on those 10 minutes), not by a second set of masks. For
percussive material, or when speed matters more, turn it off.

The measurements behind these defaults and what was tried and left out (other
starts and component counts, ``strength``, a continuation, pooled fits, other
labellings, a longer window at 44.1 kHz, and the diagnostics of the held-out and
44.1 kHz sets) are in ``benchmarks/NMF_NOTES.md`` ("nmf-paint").

Paint names:
- ``NAME`` — this energy belongs to target NAME (a layer NAME is made);
- the rest layer's name (``rest`` by default) — this energy belongs to none of
  the targets;
- ``not:NAME`` — this energy does not belong to NAME: push it to the other
  layers. This is how painting on an output layer refines it: re-run with the
  strokes made on layer NAME given as ``not:NAME``.

Memory: the penalties are built block by block on the mixture's frame blocks
(one (groups, bins, B) float32 array per painted block, never a full-length
one; a block without paint costs nothing), and a restart keeps only the best
fit so far.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from demixstudio.audio.stft import StftConfig
from demixstudio.errors import ParameterError
from demixstudio.jobs.context import JobContext
from demixstudio.separation.base import Hints, LayerProposal, Method, PaintHint, param
from demixstudio.separation.nmf import common, engine, grouping, spectra
from demixstudio.separation.registry import register

NOT = "not:"
#: Seeds of successive restarts are this far apart.
SEED_STEP = 1009
#: Where a run's state keeps each fit's group sizes, by the key of its templates (the
#: program's window's fit, the long window's).
SIZES = {"templates": "sizes", "templates_long": "sizes_long"}


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
        "T. Virtanen, 'Monaural sound source separation by nonnegative matrix factorization "
        "with temporal continuity and sparseness criteria', IEEE TASLP 15(3), 2007 (the "
        "grouped start's continuity prior).",
    )
    hint_kinds = ("paint",)

    @dataclass(frozen=True)
    class Params(common.EngineParams):
        # Few components per group: a group with many can model the other sources
        # in the unpainted bins too, and the paint then generalises less. With the
        # "grouped" start the sizes only set the rank (Σ of them); the paint decides
        # how many components each group gets.
        components: int = common.components_param(
            8, "Templates per target",
            "Components of each painted target (with the grouped start, the rank is the sum "
            "of these and the free ones, and the paint decides how they are shared out).")
        free_components: int = common.free_components_param(8)
        init: str = param(
            "grouped", label="Start from", choices=("grouped", "random"),
            help="grouped: factorise the mixture first, give each component to the group "
                 "whose paint holds most of its energy (relative to the mixture), then refine "
                 "under the paint's constraints; random: the constrained fit starts from "
                 "random templates.")
        strength: float = param(
            3.0, label="Paint strength", min=0.0, max=100.0,
            help="Penalty of full-opacity paint on the other groups' posterior "
                 "(exp(−strength·opacity)): 3 ≈ 95 % confidence (clear evidence of another "
                 "source can still win a painted bin); 10 is nearly a hard constraint.")
        veto_strength: float = param(
            10.0, label="'not:' strength", min=0.0, max=100.0,
            help="Penalty of full-opacity 'not:NAME' paint on NAME's posterior: a "
                 "correction made on an output layer, so nearly a hard constraint.")
        continuity: float = param(
            0.1, label="Start continuity", min=0.0, max=10.0,
            help="grouped start: weight of a temporal-continuity prior on the activations of "
                 "the first, unconstrained factorisation (Virtanen 2007), relative to the data; "
                 "components whose gains vary slowly follow one source's notes and words, so "
                 "the paint labels them better. 0 = off.")
        timbre_below: float = param(
            0.1, label="Label by timbre below", min=0.0, max=1.0, advanced=True,
            help="grouped start: a component whose enrichment in every paint is under this "
                 "(the paint holds next to none of it) goes to the group whose well-painted "
                 "components' timbre (MFCCs) is nearest, not to its slightly larger "
                 "enrichment (beside an unpainted group it goes there); 0 = off.")
        decisive: float = param(
            4.0, label="Decisive enrichment ratio", min=1.0, max=100.0, advanced=True,
            help="grouped start, two or more painted targets: a component whose largest "
                 "enrichment is less than this many times its second is ambiguous and goes "
                 "to the painted group whose spectral part it belongs to (an NMF of the "
                 "templates' mel spectra, one part per painted group), when the decisive "
                 "components agree with those parts; 1 = off.")
        parts_agree: float = param(
            0.7, label="Parts must agree on", min=0.0, max=1.0, advanced=True,
            help="grouped start: the share of the decisive components' energy whose part "
                 "matches their paint's label, below which the parts are not trusted and "
                 "the ambiguous components keep the paint's label.")
        # A paint holding a sliver of the mixture's energy (one small stroke) gives every
        # component it misses an enrichment of 0, as if each were known not to be its
        # target's; smoothed, such a paint says little and a larger one is barely moved
        # (see the module's docstring and benchmarks/NMF_NOTES.md, "Session 70").
        enrichment_prior: float = param(
            0.002, label="Enrichment prior", min=0.0, max=1.0, advanced=True,
            help="grouped start: each paint's enrichments are estimated as if the paint "
                 "also held this share of the mixture's energy, spread like the mixture "
                 "(additive smoothing towards 1, 'no more in the paint than anywhere'): a "
                 "paint holding much less than this is weak evidence, and the components "
                 "the other paints do not claim go to its group; 0 = off.")
        long_window: bool = param(
            True, label="Also fit a long window",
            help="Fit a second time on a window and hop twice the program's and average "
                 "the two fits' masks: the long window resolves close partials the "
                 "program's blurs, the program's the onsets the long one smears, and their "
                 "average errs less than either (about twice the time).")
        restarts: int = param(
            1, label="Restarts", min=1, max=50,
            help="Runs from different random starts; the one that best explains the mixture "
                 "under the paint is kept (each costs a full fit).")
        rest_name: str = common.rest_name_param()

    def separate(self, mix: np.ndarray, sr: int, params: PaintNMF.Params, hints: Hints,
                 ctx: JobContext) -> list[LayerProposal]:
        """Masks float32 (1, bins, frames): one per painted target, then the rest; sum one."""
        if params.beta != 1.0:
            raise ParameterError(f"nmf-paint's posterior constraints need beta=1 (KL); "
                                 f"got beta={params.beta}")
        rest = params.rest_name
        targets = self._targets(hints, rest)
        names = targets + [rest]
        base_sizes = [params.components] * len(targets) + [params.free_components]
        prog = StftConfig.for_rate(sr)
        # The long window's fit first: its masks are spread onto the program's grid,
        # and the program's fit's are then blended into them in place.
        grids = [("templates", prog)]
        if params.long_window:
            grids.insert(0, ("templates_long",
                             common.analysis_config(sr, common.LONG_WINDOW * prog.n_fft / sr)))
        # A state that does not fit every one of this run's fits is ignored whole, so a
        # rerun continues the run it refines or is exactly a fresh one.
        warm = {key: self._previous_fit(hints.previous, names, base_sizes, cfg.bins, sr, key)
                for key, cfg in grids}
        if any(w is None for w in warm.values()):
            warm = dict.fromkeys(warm)
        state = {"method": self.name, "sr": sr, "groups": list(names),
                 "components": list(base_sizes)}
        # Every fit before any masks: a fit keeps only its templates, activations and
        # painted blocks' penalties (a few % of a spectrogram), so one fit's masks are
        # never held while another fit holds its spectrogram.
        fits = []
        for i, (key, cfg) in enumerate(grids):
            lo, hi = 0.95 * i / len(grids), 0.95 * (i + 1) / len(grids)
            with ctx.stage(lo, hi, "fitting" if key == "templates" else "fitting (long window)"):
                m = common.open_mixture(self, mix, sr, params, ctx, layers=len(names), cfg=cfg)
                W, sizes, res, H, pen = self._fit(m, mix, sr, hints, names, base_sizes,
                                                  params, ctx, warm[key])
                common.release_spectrogram(m)
            fits.append(common.GroupFit(W, H, common.slices(sizes), pen, m, res))
            state[key] = W.cpu().numpy()
            state[SIZES[key]] = list(sizes)
        del W, H, pen  # the fits hold them, and drop each once its masks are made
        with ctx.stage(0.95, 1.0, "masks"):
            ctx.progress(0, 1, "masks")
            # The masks are the constrained posteriors, the fits' averaged.
            masks = common.averaged_masks(fits, params)
        return common.proposals(self, masks, [(t, t) for t in targets] + [(rest, None)],
                                params, res, state)

    def _fit(self, m: common.Mixture, mix: np.ndarray, sr: int, hints: Hints,
             names: list[str], base_sizes: list[int], params: PaintNMF.Params,
             ctx: JobContext, warm: tuple[np.ndarray, list[int]] | None
             ) -> tuple[torch.Tensor, list[int], engine.FitResult, list[torch.Tensor],
                        list[torch.Tensor | None]]:
        """The best of ``params.restarts`` constrained fits on ``m``'s grid: its templates,
        group sizes, fit and activation blocks (as :meth:`_fit_once`), and the
        penalty blocks (:meth:`_penalty_blocks`), which its masks need. ``warm``: the
        templates and group sizes of the run being refined on this grid, or None."""
        times = m.cfg.frame_times(mix.shape[1], sr)
        freqs = m.cfg.bin_freqs(sr)
        pen = self._penalty_blocks(m, hints, names, times, freqs, params.strength,
                                   params.veto_strength)
        if warm is not None:
            warm = torch.as_tensor(warm[0]).to(m.device).clone(), warm[1]
        best = None
        n = params.restarts
        for r in range(n):
            seed = params.seed + SEED_STEP * r
            with ctx.stage(0.05 + 0.9 * r / n, 0.05 + 0.9 * (r + 1) / n,
                           f"fit {r + 1} of {n}" if n > 1 else None):
                fit = self._fit_once(m, hints, names, times, freqs, pen, base_sizes, params,
                                     seed, ctx, warm if r == 0 else None)
            if best is None or fit[2].objective[-1] < best[2].objective[-1]:
                best = fit
            del fit
        return (*best, pen)

    @staticmethod
    def _targets(hints: Hints, rest: str) -> list[str]:
        """The painted targets (one layer each, before the rest), in the paint's order.

        Only positive paint makes a target: a layer built from 'not:' strokes alone
        would be "everything except this", and the rest painted alone would be the
        whole mixture, so both are refused, as is a 'not:' stroke for a layer the
        run does not make (a typo, or a layer's display name after a rename)."""
        if not hints.paint:
            raise ParameterError("nmf-paint needs painted hints (--hint paint:NAME=FILE)")
        for name, hint in hints.paint.items():
            if not isinstance(hint, PaintHint):
                raise ParameterError(
                    f"the paint of {name!r} is a {type(hint).__name__}; give a PaintHint "
                    f"(mask=(bins, frames) weights with their times=, freqs=, or rects=)")
        targets = [n for n in hints.paint if not n.startswith(NOT) and n != rest]
        if not targets:
            raise ParameterError(
                f"nmf-paint needs paint on at least one target besides the rest ({rest!r}): "
                f"painted only {', '.join(repr(n) for n in hints.paint)}")
        for name in hints.paint:
            base = name[len(NOT):] if name.startswith(NOT) else None
            if base is not None and base not in targets and base != rest:
                made = ", ".join(repr(n) for n in targets + [rest])
                raise ParameterError(
                    f"{name!r} corrects a layer this run does not make: nothing is painted "
                    f"as {base!r} (the layers are {made})")
        return targets

    def _previous_fit(self, state: dict, names: list[str], base: list[int], bins: int,
                      sr: int, key: str = "templates") -> tuple[np.ndarray, list[int]] | None:
        """The templates float32 (bins, K) and group sizes of the run being refined
        (``Hints.previous``) on one of its grids (``key``: "templates" for the
        program's, "templates_long" for the long window's, of ``bins`` bins), or None
        when there is none or it does not fit this run (another method, rate, set of
        layers or number of components asked for, ``base``, or a window the run did
        not fit on: then the fit starts afresh)."""
        if not state or state.get("method") != self.name or state.get("sr") != sr:
            return None
        W = np.asarray(state.get(key, ()), dtype=np.float32)
        sizes = [int(x) for x in state.get(SIZES[key], ())]
        # The grouped start may add copies of components to the rank asked for
        # (``_grouped_start``), never fewer.
        if (state.get("groups") != names or state.get("components", base) != base
                or W.shape != (bins, sum(sizes)) or sum(sizes) < sum(base)
                or not np.isfinite(W).all() or (W < 0).any()):
            return None
        return W, sizes

    def _fit_once(self, m: common.Mixture, hints: Hints, names: list[str], times: np.ndarray,
                  freqs: np.ndarray, pen: list[torch.Tensor | None], sizes: list[int],
                  params: PaintNMF.Params, seed: int, ctx: JobContext,
                  warm: tuple[torch.Tensor, list[int]] | None = None
                  ) -> tuple[torch.Tensor, list[int], engine.FitResult, list[torch.Tensor]]:
        """One start and constrained fit: W float32 (bins, K) ordered by group, the group
        sizes, the fit, and the activation blocks float32 (K, B).

        ``warm``: the templates and group sizes of the run being refined, to start
        from instead of a new start (ISSE's loop: the corrections act on the
        separation the user made them on; a new start could land elsewhere and undo
        what was right)."""
        split = 0.0
        if warm is not None:
            W, sizes = warm
        else:
            W = common.free_templates(m, sum(sizes), seed)
            if params.init == "grouped":
                split = 0.5
                with ctx.stage(0.0, split, "factorising"):
                    W, sizes = self._grouped_start(m, W, hints, names, times, freqs, params,
                                                   seed, ctx)
        H = spectra.init_activations(m.V, W.shape[1], seed)
        lam = common.l1_weight(params.sparsity, params.beta, m.mean_frame / m.cfg.bins)
        with ctx.stage(split, 1.0, "fitting"):
            res = engine.fit(m.V, W, H, ctx, beta=1.0, sparsity=lam, max_iter=params.max_iter,
                             tol=params.tol, groups=common.slices(sizes), penalties=pen,
                             precision=params.precision, message="fitting")
        if not res.objective:  # max_iter = 0: score the start
            res.objective.append(float("inf"))
        return W, sizes, res, H

    @staticmethod
    def _grouped_start(m: common.Mixture, W: torch.Tensor, hints: Hints, names: list[str],
                       times: np.ndarray, freqs: np.ndarray, params: PaintNMF.Params,
                       seed: int, ctx: JobContext) -> tuple[torch.Tensor, list[int]]:
        """Factorise without constraints, then group the components by the paint.

        Returns W float32 (bins, K') with its columns ordered by group, and the
        size of each group (every group gets at least one component). K' ≥ K: a
        component two paints hold goes to both groups (``group_components``).
        """
        K = W.shape[1]
        H = spectra.init_activations(m.V, K, seed)
        engine.fit(m.V, W, H, ctx, beta=1.0, max_iter=params.max_iter, tol=params.tol,
                   continuity=params.continuity, precision=params.precision,
                   message="factorising")
        G = len(names)
        index = {n: i for i, n in enumerate(names)}
        # 'not:' paint says only what a bin is not; it acts in the constrained fit.
        painted = [(index[n], h) for n, h in hints.paint.items() if not n.startswith(NOT)]
        # E[k, g]: the energy component k explains under g's paint, counted where k
        # is the one explaining it: Σ_ft paint_g V q(k|f,t)², with q the posterior
        # W_fk H_kt / Λ_ft. With q¹ a component would also collect the many bins it
        # only brushes (a sax template's share of a cello note's overlapping
        # harmonics) and be labelled by that leakage when its own notes are left
        # unpainted. E[k, G]: the same over the whole mixture. The paint is read a
        # block at a time. Σ_ft X V q² = Σ_t H_kt² Σ_f W_fk² (X V / Λ²)_ft.
        E = np.zeros((K, G + 1))  # float64, on the CPU (MPS has no float64)
        W2t = (W * W).t().contiguous()
        t0 = 0
        for Vb, Hb in zip(m.V, H):
            b = Vb.shape[1]
            model = (W @ Hb).clamp_min(engine.EPS)
            R = (Vb / model).div_(model)
            H2 = Hb * Hb
            E[:, G] += ((W2t @ R) * H2).sum(1).cpu().numpy()
            paint = np.zeros((G, freqs.size, b), dtype=np.float32)
            for g, hint in painted:
                np.maximum(paint[g], hint.on_grid(times[t0:t0 + b], freqs), out=paint[g])
            for g in range(G):
                if paint[g].any():
                    Pg = torch.as_tensor(paint[g]).to(m.device)
                    E[:, g] += ((W2t @ (R * Pg)) * H2).sum(1).cpu().numpy()
            t0 += b
        sr = int(round(float(freqs[1]) * m.cfg.n_fft))  # the bins' spacing is sr / n_fft
        Wn = W.cpu().numpy()
        features = parts = None
        if params.timbre_below > 0:
            features = grouping.template_features(Wn, sr, m.cfg.n_fft)
        if params.decisive > 1 and int((E[:, :G].sum(0) > 0).sum()) >= 2:
            parts = paint_named_parts(E, grouping.mel_spectra(Wn, sr, m.cfg.n_fft), seed)
        columns, labels = group_components(E, features, params.timbre_below, parts,
                                           params.decisive, params.parts_agree,
                                           params.enrichment_prior)
        take = torch.as_tensor(columns, device=m.device)
        return W[:, take].contiguous(), np.bincount(labels, minlength=G).tolist()

    @staticmethod
    def _penalty_blocks(m: common.Mixture, hints: Hints, names: list[str], times: np.ndarray,
                        freqs: np.ndarray, strength: float, veto_strength: float
                        ) -> list[torch.Tensor | None]:
        """Multipliers exp(−Λ_g), one float32 (groups, bins, B) tensor per frame block of
        ``m.V``, built from the paint a block at a time; None for a block without paint.

        Λ_g = strength · (paint of every other group) + veto_strength · (paint of "not:g").
        """
        G = len(names)
        index: dict[str, int] = {n: i for i, n in enumerate(names)}
        out = []
        t0 = 0
        touched = False
        for Vb in m.V:
            b = Vb.shape[1]
            lam = np.zeros((G, freqs.size, b), dtype=np.float32)
            for name, hint in hints.paint.items():
                w = hint.on_grid(times[t0:t0 + b], freqs)
                touched = touched or bool(w.any())
                if name.startswith(NOT):
                    lam[index[name[len(NOT):]]] += veto_strength * w
                else:
                    g = index[name]
                    for j in range(G):
                        if j != g:
                            lam[j] += strength * w
            t0 += b
            if not lam.any():
                # Unconstrained: no memory, and the engine's plain products, about twice as
                # fast (a user paints a few regions, so on a long input most blocks are
                # like this).
                out.append(None)
                continue
            np.negative(lam, out=lam)
            np.exp(lam, out=lam)
            out.append(torch.as_tensor(lam).to(m.device))
        if not touched:
            # Without a single painted bin the fit is plain NMF and the layers' names
            # would be arbitrary: say so rather than hand back unrelated layers.
            raise ParameterError(
                f"the paint covers nothing inside the input (0–{times[-1]:.2f} s, "
                f"0–{freqs[-1]:.0f} Hz, with a non-zero weight): paint over the target first")
        return out


def group_components(E: np.ndarray, features: np.ndarray | None = None,
                     timbre_below: float = 0.0, parts: np.ndarray | None = None,
                     decisive: float = 1.0, parts_agree: float = 0.7,
                     prior: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The grouped start's assignment of components to groups, from their energies.

    ``E``: float (K, G + 1); ``E[k, g]`` is the energy component k explains under
    group g's paint, ``E[k, G]`` over the whole mixture (see ``_grouped_start``).
    Returns (columns, labels), int arrays of one length ≥ K sorted by label: the
    component behind each column of the grouped templates, and its group.

    A component goes to the group whose paint it is most enriched in (its share
    of that paint's energy over its share of all the energy; a group without
    paint counts as 1, "no more in the paint than anywhere"), and a group nothing
    went to takes its most enriched component from a group that has several.
    A component enriched in the paint of another group too (≥ 1: more of that
    paint's energy than of the mixture's) holds evidence of both sources: a
    template that blends them, or one they share. Given wholesale to one group it
    would take the other source's energy wherever that is unpainted; so each such
    group also gets a copy, and the constrained fit specialises the copies (the
    paint pulls each copy's activations to its own group's bins). Only painted
    groups count: an unpainted group's enrichment of 1 is a convention, not
    evidence.

    ``features`` float (K, d) and ``timbre_below``: components no paint holds
    are labelled by timbre (``_label_unpainted_by_timbre``). ``parts`` int (K,),
    a painted group per component from the templates' spectra
    (``paint_named_parts``), with ``decisive`` > 1: components whose paint is
    ambiguous take their part's group (``_label_ambiguous_by_part``).

    ``prior`` > 0: each painted group's enrichments are smoothed as if its paint
    also held ``prior`` of the mixture's energy spread like the mixture,
    ``(h·e + prior) / (h + prior)`` with ``h`` the share of the mixture's energy its
    paint holds. A paint holding far less than ``prior`` then reads as no paint
    (enrichments near 1, the limit ``h`` → 0), one holding far more is barely moved,
    and no enrichment crosses 1, so the copies are the same.
    """
    K, G = E.shape[0], E.shape[1] - 1
    share = E / np.maximum(E.sum(0, keepdims=True), 1e-300)
    enrich = share[:, :G] / np.maximum(share[:, G:], 1e-300)
    has_paint = E[:, :G].sum(0) > 0
    if prior > 0:
        held = E[:, :G].sum(0) / max(float(E[:, G].sum()), 1e-300)
        enrich = (held * enrich + prior) / (held + prior)
    enrich[:, ~has_paint] = 1.0
    label = enrich.argmax(1)
    if features is not None and timbre_below > 0:
        label = _label_unpainted_by_timbre(E, enrich, label, has_paint, features, timbre_below)
    if parts is not None and decisive > 1:
        label = _label_ambiguous_by_part(E, enrich, label, has_paint, parts, timbre_below,
                                         decisive, parts_agree)
    for g in range(G):
        if not (label == g).any():
            counts = np.bincount(label, minlength=G)
            k = int(np.where(counts[label] > 1, enrich[:, g], -1.0).argmax())
            label[k] = g
    extra = (enrich >= 1.0) & has_paint[None, :]
    extra[np.arange(K), label] = False
    columns = np.concatenate([np.arange(K), np.nonzero(extra)[0]])
    labels = np.concatenate([label, np.nonzero(extra)[1]])
    order = np.argsort(labels, kind="stable")
    return columns[order], labels[order]


def _label_unpainted_by_timbre(E: np.ndarray, enrich: np.ndarray, label: np.ndarray,
                               has_paint: np.ndarray, features: np.ndarray, below: float
                               ) -> np.ndarray:
    """Labels with the components no paint holds (enrichment under ``below`` in every
    painted group) moved to the painted group whose well-painted components have the
    nearest mean timbre: the energy-weighted mean of their standardised features
    (``features`` float (K, d)). Unchanged where fewer than two painted groups have a
    well-painted component. A component that went to a group without paint stays
    there: that group is where unpainted sound goes (an unpainted rest)."""
    weak = (enrich[:, has_paint] < below).all(1) & has_paint[label]
    groups = [g for g in np.nonzero(has_paint)[0] if ((label == g) & ~weak).any()]
    if len(groups) < 2 or not weak.any():
        return label
    X = (features - features.mean(0)) / (features.std(0) + 1e-9)
    energy = E[:, -1]
    means = []
    for g in groups:
        own = (label == g) & ~weak
        w = energy[own] / max(float(energy[own].sum()), 1e-300)
        means.append((X[own] * w[:, None]).sum(0))
    dist = ((X[weak][:, None, :] - np.array(means)[None]) ** 2).sum(2)
    out = label.copy()
    out[weak] = np.array(groups)[dist.argmin(1)]
    return out


def paint_named_parts(E: np.ndarray, spectra: np.ndarray, seed: int) -> np.ndarray:
    """A painted group per component (int (K,)) from the templates' spectra alone.

    ``spectra`` float (m, K): the templates' mel spectra (``grouping.mel_spectra``).
    They are split into one part per painted group by the NMF that ``nmf`` groups
    with (``grouping.nmf_clusters``), and the parts are named after the groups by
    the one-to-one assignment that puts the most paint in its own part: part j's
    claim on group g is the sum over its components of their shares of g's paint
    (``E[:, g]`` over its total; ``E`` as in ``group_components``)."""
    G = E.shape[1] - 1
    painted = np.nonzero(E[:, :G].sum(0) > 0)[0]
    if painted.size < 2:
        raise ValueError("spectral parts need at least two painted groups")
    labels = grouping.nmf_clusters(spectra, int(painted.size), seed)
    share = E[:, painted] / E[:, painted].sum(0, keepdims=True)
    claim = np.array([share[labels == j].sum(0) for j in range(painted.size)])
    rows, cols = linear_sum_assignment(-claim)
    name = np.empty(painted.size, dtype=int)
    name[rows] = painted[cols]
    return name[labels]


def _label_ambiguous_by_part(E: np.ndarray, enrich: np.ndarray, label: np.ndarray,
                             has_paint: np.ndarray, parts: np.ndarray, below: float,
                             decisive: float, agree: float) -> np.ndarray:
    """Labels with the components the paint is ambiguous about moved to their part.

    Ambiguous: labelled with a painted group, some paint holds it (largest
    enrichment ≥ ``below``, so not a component left to the timbre rule), but its
    largest enrichment is under ``decisive`` times its second. A brush's
    rectangle also covers some of the other source, so a template of one source
    can be a little more enriched in the other's paint; its spectrum then says
    more than the paint does. The parts are trusted only where they agree with
    the paint: at least ``agree`` of the decisive components' energy (``E[:, -1]``)
    lies in a part named after their label. Unchanged otherwise, or with fewer
    than two painted groups."""
    if int(has_paint.sum()) < 2:
        return label
    pe = np.sort(enrich[:, has_paint], axis=1)
    top, second = pe[:, -1], pe[:, -2]
    on_paint = has_paint[label] & (top >= below)
    ambiguous = on_paint & (top < decisive * second)
    sure = on_paint & ~ambiguous
    energy = E[:, -1]
    total = float(energy[sure].sum())
    if not ambiguous.any() or total <= 0:
        return label
    if float(energy[sure & (parts == label)].sum()) < agree * total:
        return label
    out = label.copy()
    out[ambiguous] = parts[ambiguous]
    return out
