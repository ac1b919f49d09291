"""``nmf-paint``: separation guided by painted time–frequency hints.

Each painted target (``hints.paint[target]``, weights in [0, 1] on the
program's STFT grid; the brush's opacity is the confidence) owns a group of
components, and "rest" one more. The paint becomes per-bin constraints on the
posterior over the groups, as in ISSE (Bryan & Mysore 2013): in the EM view of
KL-NMF each bin's energy is shared among the components by the posterior
``q(k | f, t) ∝ W_fk H_kt``; a bin painted for target g with opacity α has the
posterior of every *other* group scaled by ``exp(−strength · α)`` (a soft
constraint: a coarse brush also covers bins of other sources). Unpainted
bins are free. The soft masks are these constrained posteriors, so painted
energy lands in its target's layer and the factorisation spreads what it
learns there to the unpainted bins.

Where the constrained fit starts matters: from random templates, each group's
components learn a blend of the sources in the (mostly unpainted) bins, and
the paint, which holds little of the energy, steers them weakly. So, as in
ISSE's loop (the user paints on a factorisation already made), the mixture is
first factorised without constraints; each component then goes to the group
whose painted energy it is most enriched in (its share of that paint's
energy over its share of all the energy; a group without paint of its own,
such as an unpainted rest, counts as 1, "no more in the paint than
anywhere"), and the constrained fit refines the groups from those templates.

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
from demixstudio.separation.base import Hints, LayerProposal, Method, param
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
        # A brush is coarse: a rectangle over "the vocal" also covers bins where the
        # other sources are louder. A hard constraint there makes the target's
        # templates learn those sources too (and they then leak everywhere); a soft
        # one (e^-1 at full opacity) biases the posterior but lets a clearly other
        # source keep its bins.
        strength: float = param(
            1.0, label="Paint strength", min=0.0, max=100.0,
            help="Penalty of full-opacity paint on the other groups' posterior "
                 "(exp(−strength·opacity)): 1 is a firm hint that clear evidence can "
                 "overrule; 10 is nearly a hard constraint.")
        veto_strength: float = param(
            10.0, label="'not:' strength", min=0.0, max=100.0,
            help="Penalty of full-opacity 'not:NAME' paint on NAME's posterior: a "
                 "correction made on an output layer, so nearly a hard constraint.")
        rest_name: str = common.rest_name_param()

    def separate(self, mix: np.ndarray, sr: int, params: PaintNMF.Params, hints: Hints,
                 ctx: JobContext) -> list[LayerProposal]:
        """Masks float32 (1, bins, frames): one per painted target, then the rest; sum one."""
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
        m = common.open_mixture(self, mix, sr, params, ctx)
        names = targets + [rest]
        times = m.cfg.frame_times(mix.shape[1], sr)
        freqs = m.cfg.bin_freqs(sr)
        # Λ_g = strength · (paint of every other group) + veto_strength · (paint of "not:g").
        penalty = self._penalties(hints, names, times, freqs, params.strength,
                                  params.veto_strength)
        pen_blocks = []
        t0 = 0
        for Vb in m.V:
            b = Vb.shape[1]
            pen_blocks.append(torch.as_tensor(
                np.ascontiguousarray(penalty[:, :, t0:t0 + b])).to(m.device))
            t0 += b
        del penalty
        sizes = [params.components] * len(targets) + [params.free_components]
        W = common.free_templates(m, sum(sizes), params.seed)
        start = 0.05
        if params.init == "grouped":
            with ctx.stage(0.05, 0.5, "factorising"):
                W, sizes = self._grouped_start(m, W, hints, names, times, freqs, params, ctx)
            start = 0.5
        # The masks are the constrained posteriors (fit_and_mask passes the penalties on).
        masks, res = common.fit_and_mask(m, W, sizes, params, ctx, start, penalties=pen_blocks)
        return common.proposals(self, masks, [(t, t) for t in targets] + [(rest, None)],
                                params, res)

    @staticmethod
    def _grouped_start(m: common.Mixture, W: torch.Tensor, hints: Hints, names: list[str],
                       times: np.ndarray, freqs: np.ndarray, params: PaintNMF.Params,
                       ctx: JobContext) -> tuple[torch.Tensor, list[int]]:
        """Factorise without constraints, then group the components by the paint.

        Returns W float32 (bins, K) with its columns ordered by group, and the
        size of each group (every group gets at least one component).
        """
        K = W.shape[1]
        H = spectra.init_activations(m.V, K, params.seed)
        engine.fit(m.V, W, H, ctx, beta=1.0, max_iter=params.max_iter, tol=params.tol,
                   message="factorising")
        G = len(names)
        index = {n: i for i, n in enumerate(names)}
        # 'not:' paint says only what a bin is not; it acts in the constrained fit.
        painted = [(index[n], h) for n, h in hints.paint.items() if not n.startswith(NOT)]
        # E[k, g]: the energy component k explains under g's paint, Σ_ft paint_g V q(k|f,t);
        # E[k, G]: in the whole mixture. The paint is read a block at a time.
        E = torch.zeros((K, G + 1), dtype=torch.float64)
        Wt = W.t().contiguous()
        t0 = 0
        for Vb, Hb in zip(m.V, H):
            b = Vb.shape[1]
            R = Vb / (W @ Hb).clamp_min(engine.EPS)
            E[:, G] += ((Wt @ R) * Hb).sum(1).double().cpu()
            paint = np.zeros((G, freqs.size, b), dtype=np.float32)
            for g, hint in painted:
                np.maximum(paint[g], hint.on_grid(times[t0:t0 + b], freqs), out=paint[g])
            for g in range(G):
                if paint[g].any():
                    Pg = torch.as_tensor(paint[g]).to(m.device)
                    E[:, g] += ((Wt @ (R * Pg)) * Hb).sum(1).double().cpu()
            t0 += b
        share = E / E.sum(0, keepdim=True).clamp_min(1e-300)
        enrich = share[:, :G] / share[:, G:].clamp_min(1e-300)
        rest = G - 1
        if E[:, rest].sum() <= 0:  # an unpainted rest: "no more in the paint than anywhere"
            enrich[:, rest] = 1.0
        label = enrich.argmax(1).numpy()
        for g in range(G):  # a group nothing went to takes its most enriched component
            if not (label == g).any():
                counts = np.bincount(label, minlength=G)
                movable = torch.as_tensor(counts[label] > 1)
                k = int(torch.where(movable, enrich[:, g], -1.0).argmax())
                label[k] = g
        order = torch.as_tensor(np.argsort(label, kind="stable"), device=m.device)
        return W[:, order].contiguous(), np.bincount(label, minlength=G).tolist()

    @staticmethod
    def _penalties(hints: Hints, names: list[str], times: np.ndarray, freqs: np.ndarray,
                   strength: float, veto_strength: float) -> np.ndarray:
        """Multipliers exp(−Λ_g): float32 (groups, bins, frames)."""
        G = len(names)
        lam = np.zeros((G, freqs.size, times.size), dtype=np.float32)
        index: dict[str, int] = {n: i for i, n in enumerate(names)}
        for name, hint in hints.paint.items():
            w = hint.on_grid(times, freqs)
            if name.startswith(NOT):
                lam[index[name[len(NOT):]]] += veto_strength * w
            else:
                g = index[name]
                for j in range(G):
                    if j != g:
                        lam[j] += strength * w
        np.negative(lam, out=lam)
        np.exp(lam, out=lam)
        return lam
