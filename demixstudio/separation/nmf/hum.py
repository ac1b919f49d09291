"""``nmf-hum``: separation by humming (a vocalized hint).

The user hums, sings or whistles the target (``hints.hums[target]``), at any
pitch and timbre and not necessarily in time with the mixture
(Smaragdis & Mysore 2009). The hint is factorised on its own, and its
templates are where the target's components start. Then the mixture and the
hint are factorised *together*: the hint's frames are appended to the
mixture's, and their posterior is confined to the target's group, so the
target's components must go on explaining the hint while they learn the
mixture, and free components explain the rest of the mixture. This is the
hint acting as a prior on the target's templates in the MAP sense: in the EM
view of KL-NMF the hint's frames add their expected counts to the target's
template statistics at every iteration, as a Dirichlet prior built from the
hint would (PLCA with priors), with a weight of ``hint_weight`` times the
whole mixture.

That weight is the whole hint's against the whole mixture, not a frame's against
a frame: how long the user hums and how long the recording is should not decide
how firmly the target's templates are held to the hint. Weighted per frame, a 10 s
hum on a four-minute song would count 4 % of what it counts on a 10 s excerpt, and
a long hum on a short clip several times the mixture. On the benchmark's hints
(0.7–1.5 times as long as their mixtures) the two rules agree; with the mixtures or
the hints made 8 times as long, the whole hint's weight separates better on seven of
the eight sets. ``hint_weight`` is flat around 1, the default (figures, and the
weights from 0.05 to 5, in ``benchmarks/NMF_NOTES.md``, "nmf-hum").

Why not only an annealed prior towards the hint's templates (the other
reading of the paper, still here as ``prior_weight``/``anneal``): once the
prior has faded, nothing stops the target's components drifting to whatever
in the mixture they explain best, and when the hint holds other notes than
the mixture (another excerpt, another pitch) many of them end up modelling
the other source. Measured on the benchmark's four mixtures (three seeds),
keeping the hint's data in the fit raises the median SDR from about 3.4 to
5.8 dB; adding the annealed prior on top of it lowers it again (to about 4.0),
so it is off by default.

Two speakers are beyond it: with the target's own recording as the hint (an oracle)
the benchmark's pairs of speakers separate at 2–4 dB, little or no better than with
the other excerpt (0.8–4.5 dB), where the same oracle lifts cello+sax, trumpet+piano
and singing over drums by 5–10 dB (``benchmarks/NMF_NOTES.md``). The target's layer
passes 76–93 % of the target's energy and 36–73 % of the other speaker's: the
target's templates fit both voices. ``nmf-supervised``, with an example of each
speaker, is the method there.

So is a voice over loud drums: on a song's vocals over its drums (held-out set 4) the
target's templates take the drum hits, which hold their energy in a tenth of the
frames, even with the vocals' own recording as the hint (−1.4 dB; the vocals' mask
passes 94 % of the drums' energy). The hum on ``hpss``'s harmonic layer of that
mixture gives the vocals 5.0–8.9 dB (seeds 0–2); it is advice, not the default,
because the same route loses on the acceptance's mixtures (``benchmarks/NMF_NOTES.md``,
session 73).

The joint fit is capped at few iterations (25 by default): it starts from the
hint's templates, and the longer it runs, the more of the target the free
components take (the separation peaks early; the measurements are at
``Params.max_iter``).

The fit looks at the mixture and the hint through a window of at least 64 ms
(:data:`WINDOW_S`), the program's at 16 kHz: at 44.1 and 48 kHz, where the
program's is 46 ms, it uses one twice as long (twice the frequency resolution),
and the masks are put back on the program's grid (0.5–0.9 dB more median SDR at 44.1 kHz on every
benchmark set; figures at :data:`WINDOW_S`).

Two windows (``long_window``, on by default since 2026-11-26), as ``nmf-paint`` has:
the whole fit runs again on a window twice as long (128 ms at 16 kHz, 186 ms at
44.1 kHz), and the masks are the average of the two fits'. The long fit runs first,
and the pitch search runs on its grid only: its bins are half as wide (8 Hz at
16 kHz), so a hint's partials a semitone or two apart are told apart better (on
the 64 ms window the search moved the in-tune trumpet of held-out set 3 two
semitones down at every seed; on the long one it leaves it). Nothing was tuned
on our files: the factor 2 and the plain average are ``nmf-paint``'s, fixed before
any run. Measured (``benchmarks/nmf_variants.py``, hint as it is, pooled median SDR;
sets 0, held-out 1–4), the 64 ms window alone → both:

- 16 kHz, seeds 0–2: 7.32 / 3.98 / 11.49 / 7.18 / 4.81 → 7.81 / 4.81 / 11.70 / 7.70 / 4.25;
- 16 kHz, seeds 3–4: 7.36 / 5.40 / 11.57 / 6.52 / 4.46 → 7.58 / 4.85 / 11.50 / 7.83 / 4.34;
- 44.1 kHz, seeds 0–2 (sets 0, 1, 3): 6.67 / 3.50 / 7.28 → 7.03 / 3.96 / 7.63.

Nine of the thirteen gain, four lose (held-out 4 in both seed groups, −0.56 and
−0.12; held-out 1 at seeds 3–4, −0.55; the second held-out set, −0.07); the mean
change is +0.26 dB, and the median of per-source differences with ``nmf`` rises on
nine. Held-out 4's loss is spread over its mixtures (its vocals over drums lose
0.9 dB at seeds 0–2 and gain 4.4 at seeds 3–4). The first build searched on the
64 ms grid and kept that move for both fits; it gained less (7.81 / 4.32 / 11.79 /
6.84 / 4.25 at seeds 0–2). Cost: about twice the time.

A hint hummed in another key is moved before anything is learned from it:
by ``transpose`` semitones, and then to the pitch within ``transpose_search``
semitones (3 by default, 0 = none) where the mixture explains it best (see
:mod:`transposition`, and its limits). The search is on by default, over a
narrow range: people hum "roughly" a few semitones off, and a hint 3
semitones off otherwise separates little better than no hint, while a move
of a well-pitched hint into another source's register, the search's failure,
needs that source within the range. The search's best pitch is taken only
when it explains the hint clearly better than where the user put it
(``MOVE_MARGIN``). Measured with ``bench_nmf.py --only hum`` (seeds 0–2, the
mean over seeds of the difference of the medians / of the median of
per-source differences against ``nmf``), search off → on:

=====================  ===============================  ===============================
set                    hint as it is                    hint 3 semitones high
=====================  ===============================  ===============================
four 7 s mixtures      +3.57 / +1.31 → +3.57 / +1.10    +1.25 / +1.00 → +3.64 / +1.43
their first 4 s        +3.51 / +1.18 → +0.22 / +1.10    +0.60 / +1.55 → +0.24 / +1.11
held-out mixtures      +1.60 / +2.21 → +3.02 / +3.83    +1.50 / +2.70 → +3.45 / +3.67
second held-out set    +8.35 / +4.09 → +8.36 / +4.13    +3.00 / +1.49 → +8.33 / +4.03
third held-out set     +5.98 / +5.15 → +5.70 / +4.76    +1.91 / +1.79 → +6.19 / +5.04
=====================  ===============================  ===============================

(The third held-out set, ``--heldout 3``, was made after the search's range and margin
were fixed; on it ``equalize`` took the thin hint from +0.58 / +1.16 to +5.95 / +4.70
and the dark one from +2.11 / +1.42 to +2.55 / +2.07.)

The loss is on the first 4 s, the search's known failure: there the cello's
hint is moved 3 semitones up, onto the saxophone's notes, in every run
(cello 9–11 → −0.4 dB), and its high hint is left where the saxophone explains
it. A ±7 range did the same there and also moved the higher speaker's hint
onto the lower voice (6–7 semitones); ±3 keeps that out of reach. The move is
reported with the layers, so a wrong one is seen and undone with
``transpose_search=0``.

A hint in another voice or through another microphone has another spectral
balance: a hum is dark, a phone recording thin. With ``equalize`` the hint is
divided by a smooth filter between the mixture's balance and its own (see
:mod:`equalization`) before anything is learned from it. Measured with
``bench_nmf.py --only hum`` on the target's other excerpt made darker and thinner
(``nmf_cases.recoloured``; the table is in ``benchmarks/NMF_NOTES.md``, "nmf-hum"),
a thin hint gains 2–4 dB on every set; a dark one gains on the held-out sets
and loses 1.1–1.5 dB on the four mixtures (7 s and 4 s). The voice's loses
most (7.0 → 5.1 dB at 4 s, seed 0): the filter found is 23 dB down at 60 Hz
and 10 dB at 125 Hz, where the one applied is flat (likely because the
mixture's bass templates explain the dark hint's low partials), so the hint
divided by it holds a sub-bass, likely what draws the bass into the voice's
layer. A hint with the
target's own balance loses a little, and at 44.1 kHz 0.7 dB. So it is off by
default, for the user to turn on when the hint's balance is clearly not the
target's.

The masks are the posterior of the model (``mask_power`` 1, against 0.75), and the
cap of 25 iterations, chosen at 16 kHz, is kept at 44.1 kHz, where 15 or 40 gain on
some sets and lose on others (both measured: ``benchmarks/NMF_NOTES.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from demixstudio.audio.stft import StftConfig
from demixstudio.errors import ParameterError
from demixstudio.jobs.context import JobContext
from demixstudio.separation.base import Hints, LayerProposal, Method, param
from demixstudio.separation.nmf import common, engine, equalization, spectra, transposition
from demixstudio.separation.registry import register

#: Posterior multiplier of the other groups in a hint's frames: they take none of it.
OUTSIDE = 1e-9

#: The pitch search moves a hint only when the best pitch's divergence is this much
#: lower (relative) than the unmoved hint's. A hint of other notes than the mixture
#: (another excerpt) is best explained 1–2 semitones away by a few per cent even when
#: it is in tune, and a move of the voice's hint by 1 semitone on the benchmark's first
#: 4 s cost it 3–4 dB. Hints 3 semitones off were 14–200 % worse unmoved on the
#: benchmark's mixtures (search cost curves, seeds 0–2, three sets), except speech in
#: rain (4–5 %) and the cello on the first 4 s, whose high hint the saxophone explains.
MOVE_MARGIN = 0.1

#: A move of the hint must keep at least this fraction of its sound inside the band.
MIN_KEPT = 0.01
#: The pitch search tries only moves that keep at least this fraction: it compares
#: how well the mixture explains each moved hint, and a move that pushed most of the
#: hint over the top would be judged on what is left (for a whistle near the top, its
#: window's leakage, which the mixture explains well). The benchmark's hints (16 and
#: 44.1 kHz) keep over 80 % at +6 semitones, so this only acts near the top of the band.
SEARCH_MIN_KEPT = 0.5

#: The shortest window the fit analyses with (s): 64 ms, the program's window at 16 kHz
#: (1024 samples), where this method was built and tuned. At 44.1 and 48 kHz the program's
#: window is 46 ms (2048 samples); the fit then uses 4096 (93 and 85 ms, twice the
#: frequency resolution), and its masks are put back on the program's grid
#: (``common.analysis_config``). Measured at 44.1 kHz (hint as it is, seeds 0-2 pooled,
#: median SDR), the program's window → this one: 6.13 → 6.67 dB on the benchmark's four
#: mixtures, 2.50 → 3.41 on the held-out ones, 8.93 → 9.80 on the second held-out set;
#: 11 of the 12 mixtures gained or kept their SDR (the voice against the bass lost
#: 0.3 dB). The same window did not help ``nmf-paint`` (7.17 against 6.85 dB on the four
#: mixtures, but 3.07 against 5.28 on the held-out ones) or ``nmf-supervised`` (within
#: 0.1 dB on all three), so they keep the program's (``nmf-paint`` now averages a fit on
#: a window twice the program's with the program's own: ``paint.py``). Cost, 10 min of 44.1 kHz audio
#: (mono, 20 iterations, one thread, on a machine busy with other jobs, so the times are
#: rough): 17.8 s against 13.7 s, peak RSS 1.28 against 1.17 GB; without the pitch
#: search 19.0 against 18.6 s, 1.32 against 1.20 GB.
WINDOW_S = 0.064


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
    hint_kinds = ("hums",)

    @dataclass(frozen=True)
    class Params(common.EngineParams):
        # A small L1 term: each frame is explained by fewer templates, so fewer are
        # shared between the target's and the free group. Measured (benchmark, seeds
        # 0–2, three sets: the four mixtures, their first 4 s, the held-out ones;
        # hints as they are and 3 semitones high), 0.03 raised the median of the
        # per-source gains over `nmf` in all six (by +0.04 to +1.15 dB) and the
        # difference of the medians in four (0.1: all six and three; 0.3 lowered the
        # difference of the medians on the four mixtures by 1.5 dB).
        sparsity: float = common.sparsity_param(0.03)
        # The joint fit is stopped early, on purpose. It starts from the hint's
        # templates; the longer it runs, the more of the target the free components
        # (which can model anything) take: the mixture's divergence keeps falling while
        # the separation peaks after 10-30 iterations. Traced every 5 iterations
        # (seed 0, hint 75 % fitted / 25 % held back), the SDR peaked by iteration 30
        # in 6 of the 8 mixtures, held-out ones included, and fell by 1-3 dB by 200.
        # Benchmark (seeds 0-2, pooled, against `nmf`), caps of 10 / 25 / 50 / 100 /
        # 200 / 600 on the four mixtures: +3.45 / +3.13 / +2.78 / +2.48 / +2.14 / +1.25
        # dB (difference of the medians); on the held-out ones flat, +2.00 / +2.04 /
        # +1.99 / +1.96 / +2.14; first 4 s, 25 against 200: +3.07 against +2.22.
        # 25 rather than the best-scoring 10, because the traces have mostly reached
        # their peak by 25 and not by 10; the value was picked with these figures in
        # view, so the held-out ones are the fair measure (no gain there, no loss).
        # The held-out fit of the hint's own frames does not tell when to stop (it
        # kept improving where the SDR fell), so the cap is a fixed one.
        max_iter: int = common.max_iter_param(
            25, " Few on purpose: the fit starts from the hint, and run long, the free "
                "components take parts of the target (the separation peaks after about "
                "10-30).")
        components: int = common.components_param(
            32, "Templates per target", "Templates learned from each hummed hint.")
        free_components: int = common.free_components_param(16)
        hint_weight: float = param(
            1.0, label="Hint weight", min=0.0, max=100.0,
            help="How much the whole hint counts in the joint fit, relative to the whole "
                 "mixture, however long either is (0 = the hint only sets the start).")
        prior_weight: float = param(
            0.0, label="Prior weight", min=0.0, max=100.0,
            help="An extra pull of the target's templates towards the hint's, annealed "
                 "(1 = as hard as the data at the start; off by default: measured, it "
                 "makes the separation worse when the hint holds other notes).")
        anneal: float = param(
            0.5, label="Anneal", min=0.0, max=1.0,
            help="Fraction of the iterations over which the prior's weight falls to zero "
                 "(0 = it never falls: the hint must match well).")
        transpose: int = param(
            0, label="Transpose (semitones)", min=-36, max=36,
            help="Move the hint this many semitones up (negative: down) before it is "
                 "used: 12 when you hummed an octave under the part. With a search, "
                 "where the search starts.")
        # On by default over a narrow range: see the module's docstring for the
        # measurements, and :mod:`transposition` for what the search cannot tell.
        transpose_search: int = param(
            3, label="Find the pitch (± semitones)", min=0, max=24,
            help="Look for the hint's pitch in the mixture within this many semitones "
                 "of Transpose and move the hint there (0 = no search; the move is shown "
                 "with the layers). For a hint hummed a little off key; it can also move "
                 "a well-pitched hint to another source's register (two voices, two "
                 "instruments a few semitones apart): then set 0. Keep it under 12 "
                 "(octave errors).")
        # Off by default: measured (module docstring), it undoes a thin hint's balance
        # well everywhere, but costs a hint with the target's own balance up to 0.3 dB
        # at 16 kHz and 0.7-1 dB at 44.1 kHz, and a dark one gains or loses.
        equalize: bool = param(
            False, label="Match the balance",
            help="Correct the hint's spectral balance towards the mixture's with a smooth "
                 "filter before it is used: for a hint recorded through a phone or a small "
                 "speaker (thin), or whose balance is clearly not the target's.")
        long_window: bool = param(
            True, label="Also fit a long window",
            help="Fit a second time on a window twice as long and average the two fits' "
                 "masks: the long window resolves close partials, the short one the "
                 "onsets, and the hint's pitch is searched for on the long one (twice "
                 "the time; off for percussive material or for speed).")
        rest_name: str = common.rest_name_param()

    def separate(self, mix: np.ndarray, sr: int, params: HumNMF.Params, hints: Hints,
                 ctx: JobContext) -> list[LayerProposal]:
        """Masks float32 (1, bins, frames): one per hummed target, then the rest; sum one."""
        if not any(hints.hums.values()):
            raise ParameterError("nmf-hum needs a hummed, sung or whistled hint of at least one "
                                 "target (--hint hum:NAME=FILE)")
        common.check_targets_are_not_rest([t for t, h in hints.hums.items() if h],
                                           params.rest_name, "a hum is")
        if params.beta != 1.0 and params.hint_weight:
            # Said now, not after the dictionaries and the pitch search.
            raise ParameterError(
                f"nmf-hum's joint fit (hint_weight > 0) ties the hint's frames to the target "
                f"through posterior constraints, which need beta=1 (KL); got beta="
                f"{params.beta}. Set hint_weight=0 to fit with another beta")
        layers = sum(1 for h in hints.hums.values() if h) + 1  # the hummed targets, the rest
        own = common.analysis_config(sr, WINDOW_S)
        # The pitch search runs on a window twice the fit's, whose finer frequency
        # resolution tells nearby pitches apart better (the module's docstring); with
        # ``long_window`` that is the first fit's, whose move the second fit keeps.
        long = common.analysis_config(sr, common.LONG_WINDOW * own.n_fft / sr)
        cfgs = [long, own] if params.long_window else [own]
        # Every fit before any masks (as nmf-paint's): a finished fit keeps only its
        # templates and activations, so one fit's masks are never held beside another
        # fit's spectrogram.
        fits: list[common.GroupFit | None] = []
        moves: dict[str, float] | None = None
        notes: list[str] = []
        for i, cfg in enumerate(cfgs):
            lo, hi = 0.95 * i / len(cfgs), 0.95 * (i + 1) / len(cfgs)
            with ctx.stage(lo, hi, "fitting (long window)" if i < len(cfgs) - 1 else None):
                m = common.open_mixture(self, mix, sr, params, ctx, layers=layers, cfg=cfg)
                if moves is None:
                    moves = self._transpositions(hints, mix, sr, m, long, params, ctx)
                fit, targets = self._fit(m, sr, params, hints, ctx, moves,
                                         notes if i == 0 else None)
            fits.append(fit)
        res = fits[-1].res  # the fit on the hum's own window
        with ctx.stage(0.95, 1.0, "masks"):
            ctx.progress(0, 1, "masks")
            # The masks are the posteriors of the model, the fits' averaged.
            masks = common.averaged_masks(fits, params)
        names = [(t, t) for t in targets] + [(params.rest_name, None)]
        info = {"transposition": moves}
        moved = [f"the hum of {t!r} moved {abs(v):g} semitone{'s' if abs(v) != 1 else ''} "
                 f"{'up' if v > 0 else 'down'}" for t, v in moves.items() if v]
        if moved or notes:
            info["note"] = "; ".join(moved + notes)
        return common.proposals(self, masks, names, params, res, info=info)

    def _fit(self, m: common.Mixture, sr: int, params: HumNMF.Params, hints: Hints,
             ctx: JobContext, moves: dict[str, float], notes: list[str] | None
             ) -> tuple[common.GroupFit, list[str]]:
        """The joint fit of the mixture and the hints, moved by ``moves`` semitones, on
        ``m``'s grid (its spectrogram released afterwards); ``notes`` gets the
        short-band notes (None: not again). Returns (the fit, the hummed targets in the
        groups' order)."""
        # The hints' magnitudes serve twice: for their dictionaries and in the joint fit.
        hums = {t: spectra.example_magnitude(h, sr, m.cfg, f"the hum of {t!r}")
                for t, h in hints.hums.items() if h}
        hums = {t: spectra.transpose_magnitude(V, moves[t]) if moves[t] else V
                for t, V in hums.items()}
        if params.equalize:
            hums = self._equalized(hums, m, params, ctx, sr, m.frame_sample())
        targets, hinted, sizes = common.hinted_templates(
            hints.hums, sr, m, params.components, params, ctx, "hum", (0.15, 0.3),
            magnitudes=hums, notes=notes)
        kh = hinted.shape[1]
        # The target's components start from the hint (slightly perturbed, so that
        # none is an exact copy the data cannot move).
        jitter = engine.random_init((m.cfg.bins, kh), 1.0, params.seed + 3, m.device)
        free = common.free_templates(m, params.free_components, params.seed,
                                     common.FREE_LEAD)
        W = torch.cat([hinted * jitter, free], dim=1)
        extra = self._hint_blocks(hums, targets, m, params) if params.hint_weight else []
        del hums
        fit_args = {}
        if params.prior_weight:
            prior = engine.WPrior(columns=range(kh), templates=hinted.clone(),
                                  weight=params.prior_weight,
                                  anneal_iters=int(round(params.anneal * params.max_iter)))
            # The annealing must run its course before convergence is judged.
            fit_args = {"prior": prior, "min_iter": prior.anneal_iters}
        fit = common.fit_groups(m, W, sizes + [params.free_components], params, ctx, 0.3, 1.0,
                                extra_blocks=extra, **fit_args)
        return fit, targets

    @staticmethod
    def _kept(V: np.ndarray, semitones: float) -> float:
        """The fraction of the hint's sound (bins, frames) that stays inside the band
        when it is moved by ``semitones`` (what goes over the top is lost): computed
        from its spectrum's cumulative sum, so no candidate is moved to be checked.

        The same edges as :func:`spectra.transpose_magnitude`: the band's edges map
        back to (edge − 0.5)/r + 0.5 in the old bins, and the move scales the density
        by r, so what is kept is the old sound between those two points."""
        if not semitones:
            return 1.0
        r = 2.0 ** (float(semitones) / 12.0)
        F = V.shape[0]
        C = np.concatenate([[0.0], np.cumsum(V.sum(1, dtype=np.float64))])
        lo, hi = np.clip([-0.5 / r + 0.5, (F - 0.5) / r + 0.5], 0.0, float(F))
        edges = np.arange(F + 1, dtype=np.float64)
        inside = float(np.interp(hi, edges, C) - np.interp(lo, edges, C))
        return inside / max(float(C[-1]), 1e-30)

    @staticmethod
    def _check_band(V: np.ndarray, semitones: float, target: str, sr: int) -> None:
        """Refuse a move of the hint that leaves less than :data:`MIN_KEPT` of its
        sound under the Nyquist frequency."""
        if HumNMF._kept(V, semitones) < MIN_KEPT:
            raise ParameterError(
                f"the hum of {target!r} moved {semitones:+g} semitones is above "
                f"{sr / 2:g} Hz, the top of the mixture's band: transpose it less")

    @staticmethod
    def _transpositions(hints: Hints, mix: np.ndarray, sr: int, m: common.Mixture,
                        cfg: StftConfig, params: HumNMF.Params, ctx: JobContext
                        ) -> dict[str, float]:
        """Semitones each target's hint is moved by: ``transpose``, or the best of
        ``transpose ± transpose_search`` when that beats it by ``MOVE_MARGIN`` (see
        :mod:`transposition`), searched for on ``cfg``: ``m``'s grid (its sample of
        frames), or another (a sample of ``mix``'s frames made on it). Candidates that
        would move a hint out of the band are not tried (near the top, a search could
        otherwise settle on one)."""
        hums = {t: spectra.example_magnitude(h, sr, cfg, f"the hum of {t!r}")
                for t, h in hints.hums.items() if h}
        # A Transpose that leaves a hint out of band is refused as the user set it,
        # not as whichever candidate around it the search would then settle on.
        for t, V in hums.items():
            HumNMF._check_band(V, float(params.transpose), t, sr)
        if not params.transpose_search:
            return {t: float(params.transpose) for t in hums}
        mixture = (m.frame_sample() if cfg == m.cfg
                   else transposition.sampled_magnitude(np.asarray(mix, np.float32), cfg))
        span = params.transpose_search
        around = params.transpose + np.arange(-span, span + 1, dtype=np.float64)
        # The search looks at the band a 16 kHz recording has, where it was measured
        # and where the partials that fix a pitch are (see transposition.TOP_HZ).
        top = transposition.top_bin(sr, cfg.n_fft)
        out = {}
        with ctx.stage(0.05, 0.1, "finding the hint's pitch"):
            for i, (t, V) in enumerate(hums.items()):
                with ctx.stage(i / len(hums), (i + 1) / len(hums)):
                    # The user's own Transpose is always a candidate (it passed the check).
                    candidates = np.array([s for s in around if s == params.transpose
                                           or HumNMF._kept(V, s) >= SEARCH_MIN_KEPT])
                    here = int(np.flatnonzero(candidates == params.transpose)[0])
                    hint = transposition.sample_frames([V], transposition.HINT_FRAMES)
                    best, cost = transposition.search(
                        hint, mixture, candidates, ctx, seed=params.seed, device=m.device,
                        precision=params.precision, top_bin=top)
                    # The hint stays where the user put it unless another pitch explains
                    # it clearly better (see MOVE_MARGIN).
                    stay = cost[here] <= (1.0 + MOVE_MARGIN) * cost.min()
                    out[t] = float(params.transpose) if stay else best
        return out

    @staticmethod
    def _equalized(hums: dict[str, np.ndarray], m: common.Mixture, params: HumNMF.Params,
                   ctx: JobContext, sr: int, mixture: np.ndarray) -> dict[str, np.ndarray]:
        """Each hint divided by the smooth filter between the mixture's balance and its
        own (see :mod:`equalization`); ``mixture``: a sample of its frames (bins, ≤ 2048)."""
        freqs = m.cfg.bin_freqs(sr)
        # The band the method was measured on at 16 kHz (as the pitch search's).
        top = transposition.top_bin(sr, m.cfg.n_fft)
        out = {}
        with ctx.stage(0.1, 0.15, "matching the hint's balance"):
            for i, (t, V) in enumerate(hums.items()):
                with ctx.stage(i / len(hums), (i + 1) / len(hums)):
                    hint = transposition.sample_frames([V], transposition.HINT_FRAMES)
                    e = equalization.equalizer(hint, mixture, freqs, ctx, seed=params.seed,
                                               device=m.device, precision=params.precision,
                                               top_bin=top)
                    out[t] = V / e[:, None]
        return out

    @staticmethod
    def _hint_blocks(hums: dict[str, np.ndarray], targets: list[str], m: common.Mixture,
                     params: HumNMF.Params) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each target's hint magnitude (bins, frames) as (V float32 (bins, B),
        multipliers (groups, bins, B)) blocks for the joint fit: scaled so that the
        whole hint weighs ``hint_weight`` times the whole mixture (its frames as many
        average frames of the mixture as the mixture has), its posterior confined to
        the target's group."""
        G = len(targets) + 1
        out = []
        for g, t in enumerate(targets):
            V = hums[t]
            spectra.floor_magnitude(V)
            frames = m.frames / max(V.shape[1], 1)  # mixture frames per hint frame
            V *= params.hint_weight * frames * m.mean_frame / max(float(V.sum(0).mean()), 1e-30)
            mult = torch.full((G, 1, 1), OUTSIDE, dtype=torch.float32, device=m.device)
            mult[g] = 1.0
            for Vb in engine.split_frames(V, params.block_frames, m.device):
                out.append((Vb, mult.expand(G, Vb.shape[0], Vb.shape[1])))
        return out
