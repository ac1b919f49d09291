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
from demixstudio.separation.nmf import common
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
        components: int = common.components_param(
            8, "Templates per target", "Components of each painted target.")
        free_components: int = common.free_components_param(8)
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
        # The masks are the constrained posteriors (fit_and_mask passes the penalties on).
        masks, res = common.fit_and_mask(m, W, sizes, params, ctx, 0.05, penalties=pen_blocks)
        return common.proposals(self, masks, [(t, t) for t in targets] + [(rest, None)],
                                params, res)

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
