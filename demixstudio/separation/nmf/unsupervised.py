"""``nmf``: unsupervised NMF, components clustered into sources.

The mixture's magnitude is factorised into ``components`` templates and
activations with no example; the components are then clustered into
``sources`` groups by their templates (timbre: a second NMF of their mel
spectra, or k-means on their MFCCs) or by their activations (rhythm), and each
group becomes a soft-mask layer (``grouping.py``). With
``per_component`` every component is its own layer, for grouping by hand in
the editor.

The fit is on the program's STFT at every rate. At 44.1 kHz, ``nmf-hum``'s longer
window (93 ms instead of 46) was measured on 2026-11-24 (``benchmarks/nmf_variants.py
--method nmf --sr 44100``, the four 7 s mixtures and the three held-out sets, seeds
0–2 pooled, median SDR): 4.62 / 0.94 / 4.33 / 1.17 dB → 2.28 / 2.30 / 1.93 / 2.64.
Mixed, so not taken up (nor for ``nmf-paint``: see ``benchmarks/NMF_NOTES.md``).
Averaged with the program's window's fit, as ``nmf-paint`` does (session 77: the long
fit's sources paired with the program's by the correlation of their energy over time,
the masks averaged), a fit on twice the program's window raised the pooled median SDR
on all five 16 kHz sets (seeds 0–2; 6.18 / 2.16 / 6.89 / 3.72 / 4.30 → 6.19 / 3.35 /
7.41 / 4.90 / 4.39 dB) but the cello against the saxophone fell from 10.8 to 6.1 dB
(the mean over seeds and sources; the long window's blind grouping alone gives 1.9) and
the trumpet against the piano from 7.5 to 6.4. A blind fit that fails drags the average
down, so ``nmf`` keeps one window (NMF_NOTES, session 77).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from demixstudio.errors import ParameterError
from demixstudio.jobs.context import JobContext
from demixstudio.separation.base import Hints, LayerProposal, Method, param
from demixstudio.separation.nmf import common, engine, grouping, spectra
from demixstudio.separation.registry import register


@register
class UnsupervisedNMF(Method):
    name = "nmf"
    title = "NMF (unsupervised)"
    summary = ("Factorise the spectrogram into spectral templates and activations, then "
               "cluster the components into sources (or keep one layer per component).")
    references = (
        "D. D. Lee, H. S. Seung, 'Algorithms for non-negative matrix factorization', NIPS 2000.",
        "C. Févotte, J. Idier, 'Algorithms for nonnegative matrix factorization with the "
        "β-divergence', Neural Computation 23(9):2421–2456, 2011.",
        "M. Spiertz, V. Gnann, 'Source-filter based clustering for monaural blind source "
        "separation', DAFx 2009 (clustering the components by an NMF of their mel "
        "spectra, or on their MFCCs).",
    )

    @dataclass(frozen=True)
    class Params(common.EngineParams):
        sources: int = param(2, label="Sources", min=1, max=64,
                             help="How many groups (layers) the components are clustered into.")
        components: int = common.components_param(
            20, "Components", "Rank of the factorisation (templates in all).")
        # An NMF of the templates' mel spectra groups better than k-means on their
        # MFCCs on every benchmark set at 16 and 44.1 kHz, on two of four at 8 kHz
        # (grouping.py).
        cluster_on: str = param(
            "spectra", label="Cluster on", choices=("spectra", "mfcc", "activations"),
            help="spectra: explain the templates' mel spectra by one spectral shape per "
                 "source (a small NMF) and group each template with the shape it uses "
                 "most; mfcc: k-means on the templates' MFCCs (timbre distance; the default "
                 "before 2026-11-24); activations: group components that are active at the "
                 "same times.")
        per_component: bool = param(
            False, label="One layer per component",
            help="Return every component as its own layer (sorted by energy) to group by "
                 "hand, instead of clustering.")

    def separate(self, mix: np.ndarray, sr: int, params: UnsupervisedNMF.Params, hints: Hints,
                 ctx: JobContext) -> list[LayerProposal]:
        """Masks float32 (1, bins, frames), one per source (or component); they sum to one."""
        K = params.components
        if not params.per_component and params.sources > K:
            raise ParameterError(f"sources={params.sources} is more than components={K}")
        m = common.open_mixture(self, mix, sr, params, ctx,
                                layers=K if params.per_component else params.sources)
        W = common.free_templates(m, K, params.seed)
        H = spectra.init_activations(m.V, K, params.seed)
        lam = common.l1_weight(params.sparsity, params.beta, m.mean_frame / m.cfg.bins)
        with ctx.stage(0.05, 0.9, "factorising"):
            res = engine.fit(m.V, W, H, ctx, beta=params.beta, sparsity=lam,
                             max_iter=params.max_iter, tol=params.tol,
                             precision=params.precision, message="factorising")
        Hn = res.h_numpy()
        if params.per_component:
            order = np.argsort(-Hn.sum(1))
            groups = [slice(int(k), int(k) + 1) for k in order]
            names = [(f"component {i + 1}", None) for i in range(K)]
        else:
            labels = grouping.group_components(W.cpu().numpy(), Hn, params.sources, sr,
                                               m.cfg.n_fft, on=params.cluster_on,
                                               seed=params.seed)
            perm = np.argsort(labels, kind="stable")
            idx = torch.as_tensor(perm, device=m.device)
            W = W[:, idx].contiguous()
            H = [h[idx].contiguous() for h in H]
            groups = common.slices(np.bincount(labels, minlength=params.sources).tolist())
            names = [(f"source {i + 1}", None) for i in range(params.sources)]
        common.release_spectrogram(m)
        with ctx.stage(0.9, 1.0, "masks"):
            ctx.progress(0, 1, "masks")
            masks = spectra.group_masks(W, H, groups, m.frames, power=params.mask_power,
                                        **m.grid)
        return common.proposals(self, masks, names, params, res)
