"""What the NMF methods share: the engine's parameters and the mixture's spectrogram."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from demixstudio.audio.stft import StftConfig
from demixstudio.errors import ParameterError
from demixstudio.jobs.context import JobContext
from demixstudio.separation.base import AudioHint, LayerProposal, param
from demixstudio.separation.nmf import engine, spectra


@dataclass(frozen=True)
class EngineParams:
    """Parameters every NMF method takes (declared first in each method's form)."""

    beta: float = param(
        1.0, label="β-divergence", min=0.0, max=2.0,
        help="The fit's divergence: 1 = Kullback–Leibler (the default, for magnitude "
             "spectra), 2 = Euclidean, 0 = Itakura–Saito (scale-invariant; quiet details "
             "count as much as loud ones).")
    sparsity: float = param(
        0.0, label="Sparsity", min=0.0, max=10.0,
        help="L1 penalty on the activations (for KL: a fraction of the data term's "
             "gradient): larger values explain each frame with fewer templates.")
    mask_power: float = param(
        1.0, label="Mask power", min=0.5, max=4.0,
        help="Soft masks are (model part)^p / Σ (model parts)^p: 1 = the model's "
             "posterior, 2 = a Wiener filter on the modelled power.")
    max_iter: int = param(
        200, label="Iterations", min=1, max=100_000,
        help="At most this many multiplicative updates of the separation.")
    tol: float = param(
        1e-4, label="Tolerance", min=0.0, max=0.1,
        help="Stop when the objective's relative change per iteration falls below this.")
    seed: int = param(0, label="Seed", min=0, help="Seed of the random initialisation.")
    device: str = param(
        "auto", label="Device", choices=engine.DEVICES,
        help="Where the factorisation runs: auto picks cuda, then mps, then the CPU.")
    block_frames: int = param(
        engine.BLOCK_FRAMES, label="Block (frames)", min=64, max=1_000_000,
        help="Activations are processed in blocks of this many frames, which bounds "
             "the temporary memory on long inputs.")


@dataclass
class Mixture:
    """The mixture's spectrogram as the engine sees it.

    cfg : the program STFT for the rate
    V : list of float32 (bins, B) magnitude blocks on ``device``
    frames : total frames
    mean_frame : mean of Σ_f V over frames (the scale of the activations)
    """

    cfg: StftConfig
    V: list[torch.Tensor]
    frames: int
    device: torch.device
    mean_frame: float


def load_mixture(mix: np.ndarray, sr: int, p: EngineParams) -> Mixture:
    """Channel-summed magnitude of ``mix`` float32 (channels, samples), in blocks."""
    mix = np.asarray(mix, dtype=np.float32)
    if mix.ndim != 2 or mix.shape[1] == 0:
        raise ParameterError(f"the mixture must be (channels, samples) audio; got shape {mix.shape}")
    if not np.isfinite(mix).all():
        raise ParameterError("the mixture holds non-finite samples")
    device = engine.pick_device(p.device)
    cfg = StftConfig.for_rate(sr)
    V = spectra.magnitude(mix, cfg, p.block_frames)
    spectra.floor_magnitude(V)
    frames = V.shape[1]
    mean_frame = float(V.sum(dtype=np.float64)) / frames
    blocks = engine.split_frames(V, p.block_frames, device)
    del V
    return Mixture(cfg, blocks, frames, device, mean_frame)


def l1_weight(sparsity: float, beta: float, mean_bin: float) -> float:
    """The engine's λ for a user sparsity: the H-step's denominator is about
    ``mean(V)^(β−1)`` with unit-sum templates, so λ is scaled by it (for KL it
    is the sparsity itself, a dimensionless fraction of that denominator)."""
    return sparsity * max(mean_bin, 1e-30) ** (beta - 1.0)


def dictionaries(examples: dict[str, Sequence[AudioHint]], sr: int, m: Mixture, rank: int,
                 p: EngineParams, ctx: JobContext, what: str, *, sparsity: float = 0.0
                 ) -> dict[str, torch.Tensor]:
    """One dictionary (bins, rank) per target, learned from its example recordings."""
    out = {}
    n = len(examples)
    for i, (target, hints) in enumerate(examples.items()):
        with ctx.stage(i / n, (i + 1) / n, f"learning {target!r}"):
            V = spectra.example_magnitude(hints, sr, m.cfg, f"{what} for {target!r}")
            lam = l1_weight(sparsity, p.beta, float(V.mean()))
            out[target] = spectra.learn_dictionary(
                V, rank, ctx, beta=p.beta, sparsity=lam, max_iter=max(p.max_iter, 100),
                tol=p.tol, seed=p.seed + 101 * i, device=m.device,
                message=f"learning {target!r}")
    return out


def slices(sizes: Sequence[int]) -> list[slice]:
    """Consecutive slices of the given sizes."""
    out, a = [], 0
    for s in sizes:
        out.append(slice(a, a + s))
        a += s
    return out


def mask_proposals(masks: np.ndarray, names: Sequence[tuple[str, str | None]], method: str,
                   params: dict, extra: dict | None = None) -> list[LayerProposal]:
    """One mask proposal per group; ``names`` gives (layer name, hinted target or None)."""
    return [LayerProposal(name=n, method=method, params=params, mask=masks[i], target=t,
                          extra=dict(extra or {}))
            for i, (n, t) in enumerate(names)]
