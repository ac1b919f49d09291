"""What the NMF methods share: parameters, the mixture's spectrogram, dictionaries
learned from hints, the fit-then-mask ending."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from demixstudio.audio.stft import StftConfig
from demixstudio.errors import ParameterError
from demixstudio.jobs import memory
from demixstudio.jobs.context import JobContext
from demixstudio.separation.base import (
    AudioHint,
    LayerProposal,
    Method,
    param,
    params_to_dict,
)
from demixstudio.separation.nmf import engine, spectra, transposition


def sparsity_param(default: float):
    """The L1 penalty on the activations."""
    return param(
        default, label="Sparsity", min=0.0, max=10.0, advanced=True,
        help="L1 penalty on the activations (for KL: a fraction of the data term's "
             "gradient): larger values explain each frame with fewer templates.")


def mask_power_param(default: float):
    """The exponent of the soft masks."""
    return param(
        default, label="Mask power", min=0.5, max=4.0, advanced=True,
        help="Soft masks are (model part)^p / Σ (model parts)^p: 1 = the model's "
             "posterior, 2 = a Wiener filter on the modelled power.")


def max_iter_param(default: int, why: str = ""):
    """The iteration cap of the separation's fit (``why``: a method's reason for its default)."""
    return param(
        default, label="Iterations", min=1, max=100_000,
        help="At most this many multiplicative updates of the separation." + why)


@dataclass(frozen=True)
class EngineParams:
    """Parameters every NMF method takes (declared first; in the editor, all but the
    iteration cap are folded away under the method's own as advanced)."""

    beta: float = param(
        1.0, label="β-divergence", min=0.0, max=2.0, advanced=True,
        help="The fit's divergence: 1 = Kullback–Leibler (the default, for magnitude "
             "spectra), 2 = Euclidean, 0 = Itakura–Saito (scale-invariant; quiet details "
             "count as much as loud ones).")
    sparsity: float = sparsity_param(0.0)
    mask_power: float = mask_power_param(1.0)
    max_iter: int = max_iter_param(200)
    tol: float = param(
        1e-4, label="Tolerance", min=0.0, max=0.1, advanced=True,
        help="Stop when the objective's relative change per iteration falls below this.")
    seed: int = param(0, label="Seed", min=0, advanced=True,
                      help="Seed of the random initialisation.")
    device: str = param(
        "auto", label="Device", choices=engine.DEVICES, advanced=True,
        help="Where the factorisation runs: auto picks cuda, then mps, then the CPU.")
    precision: str = param(
        "float32", label="Precision", choices=engine.PRECISIONS, advanced=True,
        help="Of the factorisation's matrix products. float32: the same layers on every "
             "machine. bfloat16 (float32 sums and updates; a bfloat16 copy of the "
             "spectrogram of up to 256 MB) ran 1.4–1.8× faster on some CPUs that compute it "
             "natively (AVX-512 BF16) and no faster on others, and lands in nearby but "
             "different optima; auto picks it where a quick timing finds it clearly faster, "
             "float32 elsewhere.")
    block_frames: int = param(
        engine.BLOCK_FRAMES, label="Block (frames)", min=64, max=1_000_000, advanced=True,
        help="Activations are processed in blocks of this many frames, which bounds "
             "the temporary memory on long inputs.")


def components_param(default: int, label: str, help: str):
    """A rank parameter (templates per source, free templates, ...)."""
    return param(default, label=label, min=1, max=1024, help=help)


def free_components_param(default: int):
    """The number of templates that explain whatever the hints do not."""
    return components_param(default, "Free templates",
                            "Templates learned on the mixture for everything that is not "
                            "a target.")


def rest_name_param():
    """The name of the layer of the rest."""
    return param("rest", label="Rest layer", help="Name of the layer of the rest.")


def check_targets_are_not_rest(targets, rest: str, kind: str) -> None:
    """Refuse a hint given for the rest layer's name: its layer and the rest would
    both be called ``rest`` (the second renamed "rest 2"), which says nothing."""
    if rest in targets:
        raise ParameterError(
            f"{kind} given for {rest!r}, the name of the layer of everything else: give "
            f"it the target's name (or name the rest layer otherwise with rest_name)")


@dataclass
class Mixture:
    """The mixture's spectrogram as the engine sees it.

    cfg : the STFT of the fit: the program's for the rate, or a longer one a method
        asks for (:func:`analysis_config`)
    V : list of float32 (bins, B) magnitude blocks on ``device``
    frames : total frames
    mean_frame : mean of Σ_f V over frames (the scale of the activations)
    program_frames : frames of the program's STFT, where the layers' masks go
        (``frames`` when ``cfg`` is the program's)
    step : ``cfg``'s window over the program's (1, or a power of two)
    """

    cfg: StftConfig
    V: list[torch.Tensor]
    frames: int
    device: torch.device
    mean_frame: float
    program_frames: int = 0
    step: int = 1

    _sample: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def grid(self) -> dict:
        """``spectra.group_masks``' arguments that put the masks on the program's grid."""
        return {"step": self.step, "out_frames": self.program_frames or self.frames}

    def frame_sample(self) -> np.ndarray:
        """A sample of ``V``'s frames, float32 (bins, ≤ ``transposition.SAMPLE_FRAMES``)
        (``transposition.sample_frames``), taken once: the hum's pitch search and
        balance and the short-band notes all look at it."""
        if self._sample is None:
            self._sample = transposition.sample_frames(self.V)
        return self._sample


#: The second fit's window, in the first fit's windows (``long_window`` of ``nmf-paint``
#: and ``nmf-hum``: their masks are the average of a fit on their own STFT and one on
#: this window, :func:`averaged_masks`; the hum also searches for its pitch on it).
LONG_WINDOW = 2

#: The longest analysis window :func:`analysis_config` gives (samples).
MAX_ANALYSIS_WINDOW = 16384


def analysis_config(sr: int, min_window_s: float = 0.0) -> StftConfig:
    """The STFT to fit on at ``sr``: the program's (``StftConfig.for_rate``) when its
    window is at least ``min_window_s`` long, else the shortest power-of-two window
    that is (at most :data:`MAX_ANALYSIS_WINDOW`), with the program's overlap. Its
    window and hop are then the program's times a power of two, so every few of its
    bins and frames fall on the program's (``Mixture.grid``)."""
    prog = StftConfig.for_rate(sr)
    n = prog.n_fft
    while n < min_window_s * sr * (1 - 1e-9) and n < MAX_ANALYSIS_WINDOW:
        n *= 2
    return prog if n == prog.n_fft else StftConfig(n_fft=n, hop=prog.hop * (n // prog.n_fft))


def load_mixture(mix: np.ndarray, sr: int, p: EngineParams,
                 cfg: StftConfig | None = None) -> Mixture:
    """Channel-summed magnitude of ``mix`` float32 (channels, samples), in blocks, on
    ``cfg`` (default: the program's STFT for the rate).

    NaN/inf and silence are refused before this, by ``Method.check_input``
    (:func:`open_mixture`)."""
    mix = np.asarray(mix, dtype=np.float32)
    if mix.ndim != 2 or mix.shape[1] == 0:
        raise ParameterError(f"the mixture must be (channels, samples) audio; got shape {mix.shape}")
    if p.block_frames < 1:
        raise ParameterError(f"block_frames={p.block_frames} must be a positive number of frames")
    device = engine.pick_device(p.device)
    prog = StftConfig.for_rate(sr)
    cfg = cfg or prog
    # Straight into blocks, each a row-major (bins, B) piece of one allocation: the
    # magnitude is never built whole and then copied into blocks (1.2 GB more at the
    # peak on an hour of 44.1 kHz audio), and when the blocks are released (see
    # release_spectrogram) the allocation goes back to the system in one piece;
    # separate block-sized buffers can stay with the allocator, and in the process.
    F, frames = cfg.bins, cfg.frames(mix.shape[1])
    store = np.empty(F * frames, dtype=np.float32)
    parts = []
    for t0 in range(0, frames, p.block_frames):
        B = min(p.block_frames, frames - t0)
        part = store[F * t0:F * (t0 + B)].reshape(F, B)
        spectra.magnitude_into(mix, cfg, t0, part)
        parts.append(part)
    spectra.floor_magnitude(store)
    mean_frame = float(store.sum(dtype=np.float64)) / frames
    del store  # the blocks hold it (on a GPU, until they have all been moved)
    blocks = [torch.as_tensor(b).to(device) for b in parts]
    return Mixture(cfg, blocks, frames, device, mean_frame, prog.frames(mix.shape[1]),
                   cfg.n_fft // prog.n_fft)


def release_spectrogram(m: Mixture) -> None:
    """Drop the mixture's magnitude blocks once the fit is done: the masks need only
    the templates and activations, and on a long input the spectrogram is as large
    as one mask (so the masks' stage peaks at one spectrogram less)."""
    m.V.clear()
    m._sample = None  # its sample of frames too (tens of MB on a long window)
    memory.return_freed()


def open_mixture(method: Method, mix: np.ndarray, sr: int, p: EngineParams, ctx: JobContext,
                 upto: float = 0.05, layers: int = 0, cfg: StftConfig | None = None
                 ) -> Mixture:
    """Check ``mix`` for ``method`` and load its magnitude (the first ``upto`` of the job)
    on ``cfg`` (default: the program's STFT; see :func:`analysis_config`).

    ``layers``: how many the run will return, if known now; their masks (on the
    program's grid) and audio are checked to fit in memory before the fit rather than
    after it."""
    method.check_input(mix)
    if layers:
        prog = StftConfig.for_rate(sr)
        memory.check_layers_fit(layers, prog.bins, prog.frames(np.shape(mix)[1]),
                                int(np.size(mix)))
    with ctx.stage(0.0, upto, "spectrogram"):
        ctx.progress(0, 1, "spectrogram")
        return load_mixture(mix, sr, p, cfg)


def l1_weight(sparsity: float, beta: float, mean_bin: float) -> float:
    """The engine's λ for a user sparsity: the H-step's denominator is about
    ``mean(V)^(β−1)`` with unit-sum templates, so λ is scaled by it (for KL it
    is the sparsity itself, a dimensionless fraction of that denominator)."""
    return sparsity * max(mean_bin, 1e-30) ** (beta - 1.0)


def dictionaries(examples: dict[str, Sequence[AudioHint]], sr: int, m: Mixture, rank: int,
                 p: EngineParams, ctx: JobContext, what: str, *, sparsity: float = 0.0,
                 magnitudes: dict[str, np.ndarray] | None = None,
                 max_iter: int | None = None, notes: list[str] | None = None,
                 start: str = "random") -> dict[str, torch.Tensor]:
    """One dictionary (bins, rank) per target, learned from its example recordings
    (or from their ``magnitudes`` (bins or a multiple of it, frames), when the caller
    has them already) in at most ``max_iter`` updates (None: the separation's cap,
    and at least 100) from ``start`` (:func:`spectra.learn_dictionary`). ``notes``,
    when given, gets a sentence for each target whose recordings end far under the
    mixture (:func:`spectra.short_band_note`)."""
    iters = max(p.max_iter, 100) if max_iter is None else int(max_iter)
    out = {}
    n = len(examples)
    tops = {}
    for i, (target, hints) in enumerate(examples.items()):
        with ctx.stage(i / n, (i + 1) / n, f"learning {target!r}"):
            V = (magnitudes[target] if magnitudes is not None
                 else spectra.example_magnitude(hints, sr, m.cfg, f"the {what} of {target!r}"))
            if notes is not None:  # stacked patches hold one spectrum per row block
                tops[target] = spectra.spectrum_top(V[:m.cfg.bins], m.cfg.bin_freqs(sr))
            lam = l1_weight(sparsity, p.beta, float(V.mean()))
            out[target] = spectra.learn_dictionary(
                V, rank, ctx, beta=p.beta, sparsity=lam, max_iter=iters,
                tol=p.tol, seed=p.seed + 101 * i, device=m.device, precision=p.precision,
                start=start, message=f"learning {target!r}")
    if notes is not None:
        notes.extend(short_band_notes(tops, m, sr, what))
    return out


def short_band_notes(tops: dict[str, float], m: Mixture, sr: int, what: str) -> list[str]:
    """:func:`spectra.short_band_note` for each target whose hints end at ``tops`` (Hz)
    against the mixture ``m`` (its top measured on a sample of its frames, and only
    when some hint ends under :data:`spectra.SHORT_BAND` of the band)."""
    freqs = m.cfg.bin_freqs(sr)
    if all(top >= spectra.SHORT_BAND * freqs[-1] for top in tops.values()):
        return []
    mixture_top = spectra.spectrum_top(m.frame_sample(), freqs)
    notes = (spectra.short_band_note(top, mixture_top, f"the {what}", t)
             for t, top in tops.items())
    return [note for note in notes if note]


def hinted_templates(hints: dict[str, Sequence[AudioHint]], sr: int, m: Mixture, rank: int,
                     p: EngineParams, ctx: JobContext, what: str, span: tuple[float, float], *,
                     sparsity: float = 0.0, magnitudes: dict[str, np.ndarray] | None = None,
                     max_iter: int | None = None, notes: list[str] | None = None,
                     start: str = "random") -> tuple[list[str], torch.Tensor, list[int]]:
    """Dictionaries of every target with hints, side by side (``magnitudes``,
    ``max_iter``, ``notes``, ``start``: see :func:`dictionaries`).

    Returns (targets, W float32 (bins, Σ ranks), rank of each target).
    """
    targets = [t for t, h in hints.items() if h]
    with ctx.stage(span[0], span[1], f"learning the {what}"):
        dicts = dictionaries({t: hints[t] for t in targets}, sr, m, rank, p, ctx, what,
                             sparsity=sparsity, magnitudes=magnitudes, max_iter=max_iter,
                             notes=notes, start=start)
    W = torch.cat([dicts[t] for t in targets], dim=1)
    return targets, W, [dicts[t].shape[1] for t in targets]


#: Column sum of the free templates beside hinted ones (which sum to one): the
#: free group starts holding nearly all of the mixture, and the hinted
#: components take over what they explain better. A fixed number, so the layers
#: do not depend on the file's level. Before, free templates were scaled to the
#: mixture, which put this ratio near 100 at the benchmarks' level (-26 dBFS)
#: but anywhere else on a louder or quieter file (same file 40 dB down: masks
#: differing by up to 0.9). Measured on the benchmark's hum cases (pooled over
#: seeds 0-2, median SDR of ``nmf-hum``): 1 → 5.0 dB, 10 → 6.0, 100 → 6.3 (held-out
#: as before), 1000 → 4.5; 100 keeps what the method was measured with.
FREE_LEAD = 100.0


def free_templates(m: Mixture, k: int, seed: int, column_sum: float | None = None
                   ) -> torch.Tensor:
    """``k`` random templates float32 (bins, k), each summing to ``column_sum``.

    ``None``: scaled to the mixture, for fits whose components are all free
    (a scale common to every column leaves such a fit independent of the
    level). Beside hinted templates, pass :data:`FREE_LEAD`."""
    if column_sum is None:
        scale = float(np.sqrt(m.mean_frame / m.cfg.bins / k))
        return engine.random_init((m.cfg.bins, k), scale, seed, m.device)
    W = engine.random_init((m.cfg.bins, k), 1.0, seed, m.device)
    return W.mul_(column_sum / W.sum(0, keepdim=True))


@dataclass
class GroupFit:
    """A finished fit whose masks are still to be made (:func:`fit_groups`).

    W : float32 (bins, K) templates; H : activation blocks (K, B) of the mixture's
    frames only; groups : W's column slices, one per group; penalties : the mixture
    blocks' posterior multipliers (groups, bins, B), or None; m : the mixture, its
    spectrogram released (its grid says where the masks go); res : the fit.
    """

    W: torch.Tensor
    H: list[torch.Tensor]
    groups: list[slice]
    penalties: list[torch.Tensor | None] | None
    m: Mixture
    res: engine.FitResult


def fit_groups(m: Mixture, W: torch.Tensor, sizes: Sequence[int], p: EngineParams,
               ctx: JobContext, start: float, end: float = 0.95, *,
               extra_blocks: Sequence[tuple[torch.Tensor, torch.Tensor]] = (), **fit_args
               ) -> GroupFit:
    """Fit activations (and the free templates) to the mixture, from ``start`` to
    ``end`` of the job; the masks are :func:`group_fit_masks`'.

    ``sizes`` are the components of each group, in W's column order; ``fit_args``
    go to :func:`engine.fit` (fixed_w, prior, penalties, ...). ``extra_blocks``
    are (V float32 (bins, B), multipliers float32 (groups, bins, B)) pairs fitted
    together with the mixture but not masked: a hint's own spectrogram, whose
    posterior is confined to its target's group. ``m``'s spectrogram is released
    once the fit is done (:func:`release_spectrogram`): ``m.V`` is empty afterwards,
    so a second fit can run before the first one's masks are made.
    """
    groups = slices(sizes)
    V = list(m.V) + [v for v, _ in extra_blocks]
    H = spectra.init_activations(V, W.shape[1], p.seed)
    lam = l1_weight(p.sparsity, p.beta, m.mean_frame / m.cfg.bins)
    fit_args.setdefault("beta", p.beta)
    mask_penalties = fit_args.get("penalties")
    if extra_blocks:
        # The mixture's own blocks stay unconstrained (None: the engine's plain products).
        own = mask_penalties or [None] * len(m.V)
        fit_args["penalties"] = list(own) + [pen for _, pen in extra_blocks]
    with ctx.stage(start, end, "fitting"):
        res = engine.fit(V, W, H, ctx, sparsity=lam, max_iter=p.max_iter, tol=p.tol,
                         groups=groups, precision=p.precision, message="fitting", **fit_args)
    del V
    n_blocks = len(m.V)
    del H[n_blocks:]  # the hints' activations: only the mixture's frames are masked
    release_spectrogram(m)
    return GroupFit(W, H, groups, mask_penalties, m, res)


def group_fit_masks(fit: GroupFit, p: EngineParams, mask_templates: torch.Tensor | None = None,
                    into: np.ndarray | None = None, weight: float = 1.0) -> np.ndarray:
    """The groups' masks of ``fit``, float32 (groups, 1, bins, frames) on the program's
    grid (``spectra.group_masks``; ``into``/``weight`` blend them into another fit's).
    ``mask_templates`` (bins, K), if given, replace the fitted W (discriminative
    reconstruction templates)."""
    return spectra.group_masks(fit.W if mask_templates is None else mask_templates,
                               fit.H, fit.groups, fit.m.frames, power=p.mask_power,
                               penalties=fit.penalties, into=into, weight=weight,
                               **fit.m.grid)


def averaged_masks(fits: list[GroupFit | None], p: EngineParams) -> np.ndarray:
    """The average of ``fits``' masks (fits of the same groups on grids of one input),
    float32 (groups, 1, bins, frames) on the program's grid: each fit's blended in
    place into those before it, so one set of masks is held. Each fit is dropped from
    ``fits`` once its masks are in (its activations go before the next's masks)."""
    masks = None
    for i in range(len(fits)):
        masks = group_fit_masks(fits[i], p, into=masks, weight=1.0 / (i + 1))
        fits[i] = None
    return masks


def fit_and_mask(m: Mixture, W: torch.Tensor, sizes: Sequence[int], p: EngineParams,
                 ctx: JobContext, start: float, *,
                 extra_blocks: Sequence[tuple[torch.Tensor, torch.Tensor]] = (),
                 mask_templates: torch.Tensor | None = None, **fit_args
                 ) -> tuple[np.ndarray, engine.FitResult]:
    """:func:`fit_groups` from ``start`` of the job to 95 %, then the groups' masks
    (:func:`group_fit_masks`) to its end. Returns (masks float32 (groups, 1, bins,
    frames), fit)."""
    fit = fit_groups(m, W, sizes, p, ctx, start, extra_blocks=extra_blocks, **fit_args)
    with ctx.stage(0.95, 1.0, "masks"):
        ctx.progress(0, 1, "masks")
        masks = group_fit_masks(fit, p, mask_templates)
    return masks, fit.res


def proposals(method: Method, masks: np.ndarray, names: Sequence[tuple[str, str | None]],
              p: EngineParams, res: engine.FitResult, state: dict | None = None,
              info: dict | None = None) -> list[LayerProposal]:
    """The layers of a fit: one mask proposal per group, with the fit's provenance
    (and ``state``, the model a refinement of the run can continue from: see
    ``Hints.previous``; ``info``, more of what the run found, for the editor)."""
    info = {**(info or {}), "iterations": res.iterations, "converged": res.converged}
    if state is not None:
        info["state"] = state
    return mask_proposals(masks, names, method.name, params_to_dict(p), info)


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
