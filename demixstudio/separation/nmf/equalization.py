"""How a hint's spectral balance differs from the mixture's (``nmf-hum``'s ``equalize``).

A hint is the target's notes in another voice or through another microphone:
a hum is dark (strong fundamentals, few upper partials), a phone or laptop
recording is thin (little under a few hundred hertz). Templates learned from
such a hint describe the target's pitches with the wrong balance, and in the
mixture the free components take the bands the hint lacks.

The difference is modelled as a smooth filter ``e`` (bins,): the hint's
frames are explained by the mixture's own templates ``W`` (a plain NMF of a
sample of its frames) seen through it, ``V_hint ≈ diag(e) W H``, with ``H``
the hint's activations and ``e = B a`` a non-negative mix of triangular bands
one octave apart on a log-frequency axis (a smooth equaliser: it can tilt and
shape the spectrum, not draw harmonics). KL multiplicative updates fit ``H``
and ``a`` in turn; the hint is then divided by ``e`` before anything is
learned from it. The filter's range is limited (:data:`RANGE_DB`), so a band
the hint truly lacks is lifted only that far, not from its noise floor. The
filter is fitted under 8 kHz (``transposition.TOP_HZ``, the band the method
was measured on at 16 kHz) and held flat above: over the whole band at
44.1 kHz it cost hints with the target's own balance 1.2 dB instead of 0.7.

On the benchmark's filtered hints (``nmf_cases.recoloured``: a second-order
high-pass at 1.5 kHz, "thin", or low-pass at 600 Hz, "dark") the filter it
finds is the one applied: 7.5–18 dB less at 200–500 Hz than at 2–4 kHz for the
thin hints, 12–19 dB more for the dark ones (the four mixtures' first 4 s),
and within 2 dB for three of the four hints as they are (9 dB for the speech in
the dishes' noise). What it does to the separation is in
``hum``'s docstring (the table: ``benchmarks/NMF_NOTES.md``): it is an option, off by default.
"""

from __future__ import annotations

import numpy as np
import torch

from demixstudio.jobs.context import JobContext
from demixstudio.separation.nmf import engine, spectra

#: Centre of the lowest band (Hz); the bands are an octave apart up to the top.
LOW_HZ = 62.5
#: The filter's range: its gain is at least this far (dB) under its largest gain.
RANGE_DB = 40.0
#: Templates of the mixture that explain the hint.
RANK = 48
#: Multiplicative updates of the mixture's templates, then of the hint's fit.
ITERATIONS = 100
#: Weight of the filter's prior (around no change), in an average band's evidence.
#: Where the templates predict little sound, there is little evidence about the
#: filter, and without a prior it wandered (the voice's hint as it is, with no bass of
#: its own, would have had its 60 Hz band lifted by 38 dB). 0.2 against 1 was chosen on
#: the benchmark's four 7 s mixtures (seeds 0–2, against ``nmf``): a thinned hint
#: +0.06 dB against −2.14 (1 undoes its balance too little), a darkened one +0.84
#: against +1.80, a hint as it is +3.10 against +3.15.
PRIOR = 0.2


def band_basis(freqs: np.ndarray) -> np.ndarray:
    """Triangular bands one octave apart on log2 frequency: float32 (bins, bands),
    rows summing to one (bins under the lowest centre or over the highest belong to
    that band alone)."""
    top = float(freqs[-1])
    centres = LOW_HZ * 2.0 ** np.arange(max(1, int(np.floor(np.log2(top / LOW_HZ))) + 1))
    x = np.log2(np.maximum(freqs, 1e-9) / LOW_HZ)
    x = np.clip(x, 0.0, float(centres.size - 1))
    B = np.maximum(0.0, 1.0 - np.abs(x[:, None] - np.arange(centres.size)[None, :]))
    return (B / B.sum(1, keepdims=True)).astype(np.float32)


def equalizer(hint: np.ndarray, mixture: np.ndarray, freqs: np.ndarray, ctx: JobContext, *,
              seed: int = 0, device: torch.device = torch.device("cpu"),
              precision: str = "float32", top_bin: int | None = None) -> np.ndarray:
    """The filter that takes the mixture's spectral balance to the hint's.

    hint, mixture : float32 (bins, frames) magnitudes in the same STFT
    freqs : the bins' frequencies (Hz), (bins,)
    top_bin : the filter is fitted under this bin and held at its last value above
        (None: on every bin)
    Returns float32 (bins,), positive, its mean weighted by the hint's spectrum one.
    """
    F = hint.shape[0]
    top = F if top_bin is None else max(8, min(F, int(top_bin)))
    mixture, hint, freqs = mixture[:top], hint[:top], freqs[:top]
    with ctx.stage(0.0, 0.5, "learning the mixture's templates"):
        W = spectra.learn_dictionary(mixture, min(RANK, max(2, mixture.shape[1] // 2)), ctx,
                                     max_iter=ITERATIONS, tol=0.0, seed=seed, device=device,
                                     precision=precision, message="learning the mixture")
    V = np.array(hint, dtype=np.float32)
    spectra.floor_magnitude(V)
    Vt = torch.as_tensor(V).to(device)
    B = torch.as_tensor(band_basis(freqs)).to(device)
    a = torch.ones(B.shape[1], dtype=torch.float32, device=device)
    H = spectra.init_activations([Vt], W.shape[1], seed)[0]
    with ctx.stage(0.5, 1.0, "matching the hint's balance"):
        for it in range(ITERATIONS):
            ctx.progress(it, ITERATIONS, "matching the hint's balance")
            e = (B @ a).clamp_min(engine.EPS)
            We = W * e[:, None]
            R = Vt / (We @ H).clamp_min(engine.EPS)
            H.mul_((We.t() @ R).div_(We.sum(0)[:, None].clamp_min(engine.EPS)))
            H.clamp_min_(engine.EPS)
            WH = W @ H
            R = Vt / (WH * e[:, None]).clamp_min(engine.EPS)
            num = a * (B.t() @ (WH * R).sum(1))
            den = B.t() @ WH.sum(1)
            # A gamma prior around one, as strong as PRIOR times an average band's
            # evidence: a band the templates predict little sound in stays at one.
            lam = PRIOR * den.mean()
            a = (num + lam) / (den + lam)
            # The scale between the filter and the activations is free: keep it in H.
            s = a.mean()
            a.div_(s)
            H.mul_(s)
    e = (B @ a).cpu().numpy().astype(np.float64)
    e = np.maximum(e, e.max() * 10.0 ** (-RANGE_DB / 20.0))
    profile = V.sum(1, dtype=np.float64)
    e /= float((e * profile).sum() / max(profile.sum(), 1e-30))
    return np.concatenate([e, np.full(F - top, e[-1])]).astype(np.float32)
