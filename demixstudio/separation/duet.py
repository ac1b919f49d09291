"""DUET: the degenerate unmixing estimation technique for anechoic stereo mixtures.

Model (Yilmaz & Rickard 2004): each source reaches the right channel with a
relative attenuation ``a_j`` and delay ``δ_j`` (samples),
``x_R(t) = Σ_j a_j s_j(t − δ_j)`` when ``x_L(t) = Σ_j s_j(t)``, and in each
time–frequency bin at most one source is active (W-disjoint orthogonality).
Then the ratio ``X_R / X_L`` in a bin reveals the active source's mixing
parameters:

* symmetric attenuation ``α = a − 1/a`` with ``a = |X_R / X_L|`` (symmetric
  about 0, so a source on the left and its mirror on the right look alike);
* delay ``δ = −∠(X_R / X_L) / ω`` with ``ω`` in radians per sample.

A 2-D histogram of ``(α, δ)`` over the bins, each weighted by
``|X_L X_R|^p ω^q``, shows one peak per source. The peaks give the mixing
parameters; every bin is then assigned to the source whose mixing model fits
it best, by the maximum-likelihood cost

    J_j(ω, t) = |a_j e^{−iωδ_j} X_L − X_R|² / (1 + a_j²)

(the energy of the mixture vector off the source's steering vector).

Spatial aliasing: the delay feature is only unambiguous where ``|ω δ| < π``.
The histogram is therefore built from the bins below the aliasing frequency
of the delay range searched, where no wrap is possible; above it the naive
delay estimate is meaningless and is never used. The assignment cost above
depends on the phase only through ``e^{−iωδ_j}``, which wraps by itself, so
every bin (also above the limit) is assigned by comparing the candidate
peaks, never by its own unwrapped delay.

Fractional delays: the delay axis has sub-sample bins, and each peak is
refined by a parabola through its neighbours on both axes.

Output: one mask per source (binary, or soft: a softmax of the normalised
costs), the same on both channels, so each layer is the source's stereo
image. Optionally a multichannel Wiener post-filter (``mwf``) refines the
images with a spatial covariance model per source.

Memory: the mixture's STFT is never held. Every pass reads it block by block,
recomputed from the audio (``AudioStft``); the masks are the only full-size
arrays when they are the layers, and with the post-filter they too are formed
block by block, leaving its (J, F, T) float32 PSDs and the output waveforms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
from scipy import ndimage

from demixstudio.audio.stft import AudioStft, StftConfig, stft_block
from demixstudio.errors import ParameterError
from demixstudio.jobs import memory
from demixstudio.jobs.context import JobContext
from demixstudio.separation import _linear as lin
from demixstudio.separation.base import Hints, LayerProposal, Method, param, params_to_dict
from demixstudio.devices import DEVICE_CHOICES
from demixstudio.separation.mwf import mask_layers
from demixstudio.separation.registry import register

#: Frames per block when computing features and masks.
FRAMES_PER_BLOCK = 512


def _bin_omegas(cfg: StftConfig) -> np.ndarray:
    """Angular frequency of each bin in radians per sample, (F,)."""
    return 2.0 * np.pi * np.arange(cfg.bins) / cfg.n_fft


def duet_histogram(spec: "np.ndarray | AudioStft", cfg: StftConfig, *, alpha_max: float,
                   delay_max: float, alpha_bins: int, delay_bins: int, p: float, q: float,
                   ctx: JobContext, block: int = FRAMES_PER_BLOCK) -> np.ndarray:
    """The weighted (α, δ) histogram of a stereo STFT.

    Only bins with ``0 < ω < π / delay_max`` contribute: above that a delay in
    the searched range could wrap its phase.

    Parameters
    ----------
    spec : np.ndarray [shape=(2, F, T), dtype=complex64], or the AudioStft of
        the mixture (read block by block)
    delay_max : float, samples
    alpha_bins, delay_bins : int, histogram resolution

    Returns
    -------
    hist : np.ndarray [shape=(alpha_bins, delay_bins), dtype=float64]
        Bin ``[i, k]`` covers ``α`` in ``alpha_edges[i:i+2]`` and ``δ`` in
        ``delay_edges[k:k+2]`` with both axes spanning ``[−max, max]``.
    """
    omega = _bin_omegas(cfg)
    keep = np.flatnonzero((omega > 0) & (omega * delay_max < np.pi))
    if keep.size == 0:
        raise ParameterError(f"delay_max={delay_max:g} samples leaves no frequency below the "
                             "spatial-aliasing limit; lower max_delay_ms")
    w_omega = omega[keep][:, None]
    hist = np.zeros(alpha_bins * delay_bins, dtype=np.float64)
    nb_frames = spec.shape[2]
    tiny = np.float32(1e-12)
    for t0 in range(0, nb_frames, block):
        ctx.progress(t0, nb_frames, "DUET histogram")
        x = stft_block(spec, t0, t0 + block)
        xl, xr = x[0, keep], x[1, keep]
        ratio = (xr + tiny) / (xl + tiny)
        a = np.abs(ratio)
        alpha = a - 1.0 / a
        delay = -np.angle(ratio) / w_omega
        weight = np.abs(xl * xr) ** p
        if q:
            weight = weight * w_omega ** q
        ia = np.floor((alpha + alpha_max) / (2 * alpha_max) * alpha_bins).astype(np.int64)
        idl = np.floor((delay + delay_max) / (2 * delay_max) * delay_bins).astype(np.int64)
        inside = (ia >= 0) & (ia < alpha_bins) & (idl >= 0) & (idl < delay_bins)
        hist += np.bincount((ia * delay_bins + idl)[inside], weights=weight[inside],
                            minlength=alpha_bins * delay_bins)
    ctx.progress(nb_frames, nb_frames, "DUET histogram")
    return hist.reshape(alpha_bins, delay_bins)


def _refine(h: np.ndarray, i: int, k: int) -> Tuple[float, float]:
    """Sub-bin position of the peak at ``[i, k]``: a parabola through each axis' neighbours."""
    def offset(m1: float, m0: float, p1: float) -> float:
        den = m1 - 2.0 * m0 + p1
        return 0.0 if den >= 0 else float(np.clip(0.5 * (m1 - p1) / den, -0.5, 0.5))

    di = offset(h[i - 1, k], h[i, k], h[i + 1, k]) if 0 < i < h.shape[0] - 1 else 0.0
    dk = offset(h[i, k - 1], h[i, k], h[i, k + 1]) if 0 < k < h.shape[1] - 1 else 0.0
    return i + di, k + dk


def find_peaks(hist: np.ndarray, *, nb_sources: int, max_sources: int, threshold: float,
               neighbourhood: int) -> List[Tuple[float, float, float]]:
    """Peaks of a smoothed histogram, highest first, as ``(row, col, height)``.

    ``nb_sources > 0`` returns that many (the highest local maxima; fewer only
    if the histogram has fewer). ``nb_sources == 0`` counts the sources: every
    local maximum at least ``threshold`` times the highest, at most
    ``max_sources``. Rows and columns are fractional (refined) bin indices.
    """
    size = 2 * neighbourhood + 1
    local = (hist == ndimage.maximum_filter(hist, size=size, mode="constant", cval=-np.inf))
    local &= hist > 0
    rows, cols = np.nonzero(local)
    heights = hist[rows, cols]
    order = np.argsort(-heights, kind="stable")
    rows, cols, heights = rows[order], cols[order], heights[order]
    if nb_sources > 0:
        count = min(nb_sources, rows.size)
    else:
        count = int(np.count_nonzero(heights >= threshold * heights[0])) if heights.size else 0
        count = max(1, min(count, max_sources))
    peaks = []
    for r, c, hgt in zip(rows[:count], cols[:count], heights[:count]):
        rr, cc = _refine(hist, int(r), int(c))
        peaks.append((rr, cc, float(hgt)))
    return peaks


def duet_mask_blocks(spec: "np.ndarray | AudioStft", cfg: StftConfig,
                     attenuations: np.ndarray, delays: np.ndarray, *, soft: bool,
                     softness: float) -> Callable[[int, int], np.ndarray]:
    """The function ``masks(t0, t1)`` giving frames [t0, t1) of :func:`duet_masks`.

    Each block is computed from the same frames of ``spec`` alone, so the
    masks of a long file can be formed where they are used.
    """
    j = attenuations.size
    omega = _bin_omegas(cfg)
    # Steering terms a_j e^{−iωδ_j}, (J, F, 1), and the normalisers 1 / (1 + a_j²).
    steer = (attenuations[:, None] * np.exp(-1j * omega[None, :] * delays[:, None]))
    steer = steer.astype(np.complex64)[:, :, None]
    norm = (1.0 / (1.0 + attenuations ** 2)).astype(np.float32)[:, None, None]

    def masks(t0: int, t1: int) -> np.ndarray:
        x = stft_block(spec, t0, t1)
        xl, xr = x[0], x[1]
        diff = steer * xl[None] - xr[None]
        cost = (diff.real ** 2 + diff.imag ** 2) * norm  # (J, F, b)
        if soft:
            energy = (np.abs(xl) ** 2 + np.abs(xr) ** 2) + np.float32(1e-20)
            logit = -(cost / energy) / np.float32(softness)
            logit -= logit.max(axis=0, keepdims=True)
            w = np.exp(logit)
            return (w / w.sum(axis=0, keepdims=True))[:, None].astype(np.float32, copy=False)
        best = cost.argmin(axis=0)
        return (best[None, None] == np.arange(j)[:, None, None, None]).astype(np.float32)

    return masks


def duet_masks(spec: "np.ndarray | AudioStft", cfg: StftConfig, attenuations: np.ndarray,
               delays: np.ndarray, *, soft: bool, softness: float, ctx: JobContext,
               block: int = FRAMES_PER_BLOCK) -> np.ndarray:
    """Masks from the maximum-likelihood assignment of each bin to a source.

    Parameters
    ----------
    spec : np.ndarray [shape=(2, F, T), dtype=complex64], or the AudioStft of
        the mixture (read block by block)
    attenuations : np.ndarray [shape=(J,)], ``a_j`` (right / left)
    delays : np.ndarray [shape=(J,)], ``δ_j`` in samples (right after left)
    soft : bool
        False: 1 for the best source, 0 elsewhere. True: a softmax of
        ``−c_j / softness`` with ``c_j`` the cost normalised by the bin's
        energy (the squared sine of the angle between the mixture vector and
        the source's steering vector, in [0, 1]).

    Returns
    -------
    np.ndarray [shape=(J, 1, F, T), dtype=float32]
    """
    _, nb_bins, nb_frames = spec.shape
    block_masks = duet_mask_blocks(spec, cfg, attenuations, delays, soft=soft,
                                   softness=softness)
    masks = np.zeros((attenuations.size, 1, nb_bins, nb_frames), dtype=np.float32)
    for t0 in range(0, nb_frames, block):
        ctx.progress(t0, nb_frames, "DUET masks")
        t1 = min(t0 + block, nb_frames)
        masks[:, :, :, t0:t1] = block_masks(t0, t1)
    ctx.progress(nb_frames, nb_frames, "DUET masks")
    return masks


@register
class DUET(Method):
    """DUET: masks from a histogram of inter-channel level and delay."""

    name = "duet"
    title = "DUET (level/delay histogram)"
    summary = ("Separates sources at different positions in a stereo (or two-microphone) "
               "recording by their inter-channel level ratio and time delay; finds the "
               "number of sources itself.")
    references = (
        "Ö. Yilmaz, S. Rickard, 'Blind separation of speech mixtures via time-frequency "
        "masking', IEEE Trans. Signal Processing 52(7):1830–1847, 2004.",
        "S. Rickard, 'The DUET blind source separation algorithm', in Blind Speech "
        "Separation, Springer, 2007, pp. 217–241.",
    )
    min_channels = 2
    max_channels = 2

    @dataclass(frozen=True)
    class Params:
        sources: int = param(
            0, label="Sources", min=0, max=32,
            help="How many sources to separate; 0 (or --sources auto) counts the peaks of "
                 "the histogram that reach 'peak threshold' of the highest.")
        max_sources: int = param(
            8, label="Most sources (auto)", min=1, max=32,
            help="Upper bound on the count when sources = 0.")
        peak_threshold: float = param(
            0.2, label="Peak threshold", min=0.0, max=1.0,
            help="With sources = 0: a local maximum of the smoothed histogram counts as a "
                 "source if it is at least this fraction of the highest one.")
        max_delay_ms: float = param(
            0.25, label="Largest delay (ms)", min=0.005, max=5.0,
            help="The delay axis spans ±this. The histogram uses only frequencies below "
                 "1 / (2 × this), where a delay this large cannot wrap its phase (0.25 ms: "
                 "2 kHz; microphones about 8 cm apart).")
        alpha_max: float = param(
            2.0, label="Largest attenuation", min=0.1, max=20.0,
            help="The symmetric-attenuation axis α = a − 1/a spans ±this (2.0: level "
                 "ratios between 0.41 and 2.41, i.e. ±7.7 dB).")
        alpha_bins: int = param(
            51, label="Attenuation bins", min=5, max=1001,
            help="Histogram resolution on the attenuation axis.")
        delay_bins: int = param(
            51, label="Delay bins", min=5, max=1001,
            help="Histogram resolution on the delay axis (sub-sample bins give "
                 "fractional delays).")
        p: float = param(
            1.0, label="Level weight exponent p", min=0.0, max=4.0,
            help="Each bin counts |X_L X_R|^p ω^q: p = 1 is the ML weighting for "
                 "low-noise mixtures; larger p trusts only the loudest bins.")
        q: float = param(
            0.0, label="Frequency weight exponent q", min=0.0, max=4.0,
            help="See p; q > 0 favours high frequencies, where delays are measured more "
                 "precisely (q = 2 with p = 2 is the paper's alternative).")
        smoothing: float = param(
            1.0, label="Smoothing (bins)", min=0.0, max=20.0,
            help="Standard deviation of the Gaussian that smooths the histogram before "
                 "peak picking, in histogram bins.")
        neighbourhood: int = param(
            3, label="Peak separation (bins)", min=1, max=50,
            help="A peak must be the highest point within this many bins on each axis.")
        mask: str = param(
            "soft", label="Mask", choices=("binary", "soft"),
            help="binary: each bin goes to the best-fitting source (the paper's choice; "
                 "best without the post-filter); soft: shared by a softmax of the "
                 "normalised fitting costs (the better start for the post-filter, whose "
                 "source spectra come from the masks).")
        softness: float = param(
            0.05, label="Softness", min=1e-4, max=10.0,
            help="Temperature of the soft masks (in units of the normalised cost, which "
                 "lies in [0, 1]); smaller is closer to binary.")
        mwf: int = param(
            3, label="Wiener post-filter iterations", min=0, max=50,
            help="0: the masks are the layers (the paper's DUET). n > 0: refine the images "
                 "with n EM iterations of the multichannel Wiener filter (a spatial "
                 "covariance per source, which also models the sources' overlap); layers "
                 "are then waveforms.")
        device: str = param(
            "auto", label="Device", advanced=True, choices=DEVICE_CHOICES,
            help="Where the Wiener post-filter runs (auto: CUDA when present).")

    def separate(self, mix: np.ndarray, sr: int, params: "DUET.Params", hints: Hints,
                 ctx: JobContext) -> List[LayerProposal]:
        """Separate a stereo ``mix`` float32 (2, samples) into source images.

        Returns one proposal per histogram peak, largest peak first: a mask
        (1, bins, frames) on the mixture's STFT, or a waveform (2, samples)
        when the Wiener post-filter is on. ``extra`` holds the histogram, its
        axes, the peaks and each source's attenuation and delay.
        """
        self.check_input(mix)
        lin.validate_mix(mix)
        cfg = StftConfig.for_rate(sr)
        delay_max = params.max_delay_ms * 1e-3 * sr
        # The mixture's STFT is recomputed block by block wherever it is read
        # (histogram, masks, post-filter): held whole it would be 4x the audio.
        spec = AudioStft(mix, cfg)
        with ctx.stage(0.0, 0.4, "DUET histogram"):
            raw = duet_histogram(spec, cfg, alpha_max=params.alpha_max, delay_max=delay_max,
                                 alpha_bins=params.alpha_bins, delay_bins=params.delay_bins,
                                 p=params.p, q=params.q, ctx=ctx)
        if not np.any(raw > 0):
            raise ParameterError("the mixture is silent below the aliasing limit, or its "
                                 "channels are too different for the histogram's range; "
                                 "widen alpha_max or max_delay_ms")
        hist = ndimage.gaussian_filter(raw, params.smoothing) if params.smoothing > 0 else raw
        peaks = find_peaks(hist, nb_sources=params.sources, max_sources=params.max_sources,
                           threshold=params.peak_threshold, neighbourhood=params.neighbourhood)
        alpha_step = 2 * params.alpha_max / params.alpha_bins
        delay_step = 2 * delay_max / params.delay_bins
        alphas = np.array([-params.alpha_max + (r + 0.5) * alpha_step for r, _, _ in peaks])
        delays = np.array([-delay_max + (c + 0.5) * delay_step for _, c, _ in peaks])
        atten = 0.5 * (alphas + np.sqrt(alphas ** 2 + 4.0))
        memory.check_layers_fit(len(peaks), cfg.bins, spec.shape[2], int(mix.size))
        soft = params.mask == "soft"
        if params.mwf:
            # The post-filter reads the masks block by block: never held whole.
            masks = duet_mask_blocks(spec, cfg, atten, delays, soft=soft,
                                     softness=params.softness)
        else:
            with ctx.stage(0.4, 1.0, "DUET masks"):
                masks = duet_masks(spec, cfg, atten, delays, soft=soft,
                                   softness=params.softness, ctx=ctx)
        extra_common: Dict[str, Any] = {
            "histogram": hist.astype(np.float32),
            "alpha_edges": np.linspace(-params.alpha_max, params.alpha_max,
                                       params.alpha_bins + 1).astype(np.float32),
            "delay_edges_samples": np.linspace(-delay_max, delay_max,
                                               params.delay_bins + 1).astype(np.float32),
            "peaks": [{"alpha": float(a), "delay_samples": float(d), "height": h}
                      for a, d, (_, _, h) in zip(alphas, delays, peaks)],
            "aliasing_limit_hz": float(sr / (2 * delay_max)),
        }
        pdict = params_to_dict(params)

        def extra(i: int) -> Dict[str, Any]:
            return {**extra_common, "attenuation": float(atten[i]),
                    "delay_samples": float(delays[i]), "delay_ms": float(delays[i] / sr * 1e3)}

        return mask_layers(self.name, pdict, spec, masks, [extra(i) for i in range(len(peaks))],
                           length=mix.shape[1], cfg=cfg, iterations=params.mwf,
                           device=params.device, ctx=ctx)
