"""Discriminative reconstruction templates for supervised NMF (Weninger et al. 2014).

Supervised NMF learns each source's templates on that source alone, but uses
them on a mixture, where the activations they get are not the ones they were
learned with: some of a source's energy is taken by the other sources'
templates, some of theirs by its own. Discriminative NMF keeps the learned
templates for *analysis* (the activations are fitted with them, as before)
and learns a second set for *reconstruction*: the templates that, given the
activations analysis finds on a mixture, rebuild each source best through
the soft masks. The training mixture is made from the examples themselves
(each source's example at equal RMS, summed), so nothing beyond the
examples is needed.

With ``Λ_s = W_s H_s`` the model of source s, ``Λ = Σ_s Λ_s`` and ``M`` the
training mixture's magnitude, source s is rebuilt as ``Ŝ_s = M ⊙ Λ_s / Λ``.
The reconstruction templates minimise ``Σ_s KL(S_s | Ŝ_s)`` with the
activations held fixed; its gradient with respect to ``Λ_s`` is
``(Σ_j S_j) / Λ − S_s / Λ_s``, which gives the multiplicative update

    W_s ← W_s ⊙ [(S_s / Λ_s) H_sᵀ] / [((Σ_j S_j) / Λ) H_sᵀ].

Measured with ``benchmarks/bench_nmf.py`` (three seeds, seven-second cases),
the median SDR of ``nmf-supervised`` goes from 8.06 to 8.18 dB on the four
cases the methods were shaped on. On four held-out mixtures of other
recordings it goes from 5.77 to 6.31 dB. The per-case gains are uneven:
voice and bass gain 0.5–2 dB; in speech in noise the noise layer (and, on the
held-out mixture, the speech too) loses up to 0.7 dB.

How many updates (2026-11-24, with the three-frame templates; pooled over seeds
0–2, median SDR on the benchmark's four 16 kHz sets: the four 7 s mixtures and
the three held-out sets, ``benchmarks/nmf_variants.py``): 100, the number first
used, 8.22 / 6.41 / 12.33 / 6.18 dB; 50, 8.28 / 6.57 / 12.43 / 6.16; 30, 8.32 /
6.62 / 12.48 / 6.13; 20, 8.36 / 6.65 / 12.48 / 6.09. Fewer updates gain on three
sets and lose a little on the third held-out one, as early stopping of a fit to
the examples' own mixture would. At 44.1 kHz (not used to choose), 100 → 30:
8.22 / 6.58 / 11.96 / 6.63 → 8.36 / 6.53 / 12.14 / 6.46 dB. 30 is taken: within
0.2 dB of 100 on every set and a third of the cost (a 7 s mixture with 7 s
examples: 1.9 → 1.3 s).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from demixstudio.audio.stft import StftConfig
from demixstudio.errors import ParameterError
from demixstudio.jobs.context import JobContext
from demixstudio.separation.base import AudioHint
from demixstudio.separation.nmf import common, engine, spectra
from demixstudio.separation.nmf.context import stack_frames

#: Multiplicative updates of the reconstruction templates. They start from the
#: analysis templates and are trained on a mixture of the very examples those were
#: learned from, so running them long fits that mixture's particulars: stopping
#: early keeps them near the analysis templates (see the module's docstring).
ITERATIONS = 30
#: The training mixture is at most this long (seconds): enough frames for the
#: templates' statistics, a bounded cost whatever the examples' length.
MAX_SECONDS = 120.0


#: A recording's leading and trailing stretches quieter than this (dB under its
#: loudest 20 ms) are left out of the training mixture.
QUIET_DB = 60.0


def sounding_part(a: np.ndarray, sr: int) -> np.ndarray:
    """``a`` float32 (channels, n) without its leading and trailing silence: from the
    first to the last 20 ms block within :data:`QUIET_DB` of the loudest (all of it
    when it is shorter than a block or silent throughout).

    The training mixture is as long as the shortest example: an example that
    opens with a few seconds of silence would otherwise put only that silence
    in it (and a silent source, an error), however much it holds after."""
    hop = max(1, int(0.02 * sr))
    blocks = a.shape[1] // hop
    if blocks == 0:
        return a
    energy = np.square(a[:, :blocks * hop], dtype=np.float64).reshape(
        a.shape[0], blocks, hop).sum(axis=(0, 2))
    loud = np.flatnonzero(energy > energy.max() * 10.0 ** (-QUIET_DB / 10.0))
    if loud.size == 0:
        return a
    end = a.shape[1] if loud[-1] == blocks - 1 else (loud[-1] + 1) * hop
    return a[:, loud[0] * hop:end]


def example_audio(hints: Sequence[AudioHint], sr: int, what: str, limit: int) -> np.ndarray:
    """The example recordings of one source, mono at ``sr``, each without its leading
    and trailing silence (:func:`sounding_part`), concatenated and cut to ``limit``
    samples: float32 (1, n)."""
    parts, n = [], 0
    for a in spectra.example_signals(hints, sr, what):
        a = sounding_part(a.mean(axis=0, keepdims=True), sr)
        parts.append(a[:, :limit - n])
        n += parts[-1].shape[1]
        if n >= limit:
            break
    return np.concatenate(parts, axis=1)


def reconstruction_templates(W: torch.Tensor, sizes: Sequence[int],
                             examples: Sequence[Sequence[AudioHint]], sr: int,
                             cfg: StftConfig, ctx: JobContext, *, beta: float = 1.0,
                             seed: int = 0, names: Sequence[str] = (),
                             precision: str = "float32", context: int = 0
                             ) -> torch.Tensor | None:
    """Reconstruction templates float32 (bins, Σ sizes) for the analysis templates ``W``,
    or None when the shortest example is under one STFT frame (nothing to train on:
    the caller keeps ``W``).

    ``W`` holds each source's templates side by side (``sizes`` of them, in the
    order of ``examples``, one list of example recordings per source). The
    training mixture is the sources' examples, each scaled to unit RMS, summed
    over the length of the shortest. The analysis activations of that mixture
    are fitted with ``W`` held fixed (β-divergence ``beta``); then the
    reconstruction templates, starting from ``W``, take :data:`ITERATIONS`
    discriminative updates (see the module's docstring; the rebuild is measured
    by KL whatever ``beta``, as magnitudes that the masks share out). With
    ``context`` > 0, ``W`` holds stacked templates (``context.py``) and the
    spectrograms are stacked alike.
    """
    limit = int(MAX_SECONDS * sr)
    audio = [example_audio(ex, sr, f"example of {n!r}" if n else "example", limit)
             for ex, n in zip(examples, list(names) or [""] * len(examples))]
    length = min(a.shape[1] for a in audio)
    if length < cfg.n_fft:
        return None
    sources = []
    for a, name in zip(audio, list(names) or [""] * len(audio)):
        a = a[:, :length]
        rms = float(np.sqrt(np.mean(a.astype(np.float64) ** 2)))
        if rms <= 0:
            raise ParameterError(f"the example of {name!r} is silent" if name
                                 else "an example is silent")
        sources.append(a / rms)
    device = W.device
    M = stack_frames(spectra.magnitude(sum(sources), cfg), context)
    spectra.floor_magnitude(M)
    S = [torch.as_tensor(stack_frames(spectra.magnitude(a, cfg), context),
                         device=device).clamp_min_(1e-12)
         for a in sources]
    Mb = [torch.as_tensor(M, device=device)]
    del M, sources, audio
    H = spectra.init_activations(Mb, W.shape[1], seed)
    with ctx.stage(0.0, 0.5, "analysing the examples' mixture"):
        engine.fit(Mb, W.clone(), H, ctx, beta=beta, fixed_w=range(W.shape[1]),
                   precision=precision, message="analysing the examples' mixture")
    H = H[0]
    cols = common.slices(sizes)
    total = sum(S)
    Wr = [W[:, sl].clone() for sl in cols]
    Hs = [H[sl] for sl in cols]
    parts = [w @ h for w, h in zip(Wr, Hs)]
    with ctx.stage(0.5, 1.0, "reconstruction templates"):
        # Every source's update takes the model of the same sweep (Jacobi): the
        # ratio Σ_j S_j / Λ is formed once per sweep and its product with all the
        # activations at once. Gauss–Seidel (each source after the others'
        # latest) separated the same, to 0.01 dB, at more cost.
        Ht = H.t().contiguous()
        for it in range(ITERATIONS):
            ctx.progress(it, ITERATIONS, "reconstruction templates")
            model = parts[0].clone()
            for p in parts[1:]:
                model.add_(p)
            den = torch.div(total, model.clamp_min_(engine.EPS), out=model) @ Ht
            for s, sl in enumerate(cols):
                num = (S[s] / parts[s].clamp_min_(engine.EPS)) @ Ht[:, sl]
                Wr[s].mul_(num / den[:, sl].clamp_min(engine.EPS))
                parts[s] = Wr[s] @ Hs[s]
    return torch.cat(Wr, dim=1)
