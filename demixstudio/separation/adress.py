"""ADRess: azimuth discrimination and resynthesis of panned stereo sources.

Barry, Lawlor & Coyle (2004). A source panned with gains ``(g_L, g_R)`` is
cancelled in every bin it dominates by one gain-scaled channel difference:

    right side (g_L ≤ g_R):  |L − g R|  vanishes at  g = g_L / g_R,
    left side  (g_L > g_R):  |R − g L|  vanishes at  g = g_R / g_L,

with ``g`` scanned over ``i / β``, ``i = 0 … β`` on each side. Putting the
two sides end to end gives an azimuth axis of ``2β + 1`` positions from hard
left (index 0) through the centre (β) to hard right (2β); the frequency–
azimuth plane holds, per bin, these difference magnitudes. Each bin has a
*null* (its minimum along the axis) at the azimuth of the source dominating
it. ADRess turns the plane into a peak at the null of height
``max − min`` (the paper's estimate of the source's magnitude there) and zero
elsewhere; summed over time, that is the *azimugram*, whose peaks are the
sources' positions.

The plane need not be built: on each side ``|R − g L|`` is the distance from
a point to a line in ``g``, a convex function, so its minimum over ``[0, 1]``
is at the clipped projection ``g* = Re(R L̄) / |L|²`` and its maximum at an end
(``g = 0`` or ``1``). That gives the same nulls and heights as a scan of
``β + 1`` gains, at a continuous azimuth, for the cost of a few products per
bin. (The two sides meet at the centre with the same value ``|L − R|``; a
source off-centre has its null on its own side, and reaches only the centre
on the other, so the smaller of the two side minima is the bin's null.)

Separation: each source owns the bins whose null lies within its azimuth
subspace (``width`` positions around it; by default, every bin nearer to it
than to any other source). The mask is the paper's magnitude estimate as a
fraction of the channel it was measured on, ``(max − min) / max``, or 1
(binary). The same mask on both channels gives the source's stereo image.
A multichannel Wiener post-filter can refine the images.

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

#: Frames per block when computing nulls and masks.
FRAMES_PER_BLOCK = 512


def bin_nulls(xl: np.ndarray, xr: np.ndarray, beta: int) -> Tuple[np.ndarray, np.ndarray,
                                                                  np.ndarray, np.ndarray]:
    """Null azimuth, null height, plane maximum and in-phase flag of each bin.

    Parameters
    ----------
    xl, xr : np.ndarray [shape=(F, b), dtype=complex64], left and right STFT
    beta : int, azimuth positions per side

    Returns
    -------
    azimuth : np.ndarray [shape=(F, b), dtype=float32]
        Continuous azimuth index in ``[0, 2β]`` (β = centre).
    height : np.ndarray [shape=(F, b), dtype=float32]
        ``max − min`` of the bin's difference magnitudes on its side.
    peak : np.ndarray [shape=(F, b), dtype=float32]
        ``max``: the magnitude the height is measured against.
    in_phase : np.ndarray [shape=(F, b), dtype=bool]
        ``Re(R L̄) ≥ 0``. A panned source has both gains positive, so its bins
        are in phase; an anti-phase bin is a mixture of sources whose null is
        clipped to a hard-panned end of the axis without being a real null.
    """
    tiny = np.float32(1e-30)
    pl = xl.real ** 2 + xl.imag ** 2
    pr = xr.real ** 2 + xr.imag ** 2
    cross = (xr * np.conj(xl)).real  # Re(R L̄)
    diff = np.abs(xl - xr)           # both sides at g = 1 (the centre)
    # Left side: |R − g L|, g* = Re(R L̄)/|L|²; right side: |L − g R|, g* = Re(L R̄)/|R|².
    g_left = np.clip(cross / (pl + tiny), 0.0, 1.0)
    g_right = np.clip(cross / (pr + tiny), 0.0, 1.0)
    min_left = np.sqrt(np.maximum(pr - 2 * g_left * cross + g_left ** 2 * pl, 0.0))
    min_right = np.sqrt(np.maximum(pl - 2 * g_right * cross + g_right ** 2 * pr, 0.0))
    left = min_left < min_right
    azimuth = np.where(left, g_left * beta, (2.0 - g_right) * beta).astype(np.float32)
    # The maximum of a convex function on [0, 1] is at an end: g = 0 (the
    # other channel) or g = 1 (the difference).
    peak = np.where(left, np.maximum(np.sqrt(pr), diff), np.maximum(np.sqrt(pl), diff))
    height = peak - np.where(left, min_left, min_right)
    return azimuth, height.astype(np.float32), peak.astype(np.float32), cross >= 0


def azimugram(spec: "np.ndarray | AudioStft", beta: int, ctx: JobContext, *,
              block: int = FRAMES_PER_BLOCK) -> np.ndarray:
    """The frequency–azimuth plane summed over time.

    Each bin adds its null height at its null's azimuth position (linearly
    shared between the two nearest of the ``2β + 1`` positions). Anti-phase
    bins (see :func:`bin_nulls`) add nothing: their clipped nulls would pile up
    at the hard-panned ends as false sources.

    Parameters
    ----------
    spec : np.ndarray [shape=(2, F, T), dtype=complex64], or the AudioStft of
        the mixture (read block by block)

    Returns
    -------
    np.ndarray [shape=(F, 2β + 1), dtype=float64]
    """
    _, nb_bins, nb_frames = spec.shape
    size = 2 * beta + 1
    plane = np.zeros(nb_bins * size, dtype=np.float64)
    rows = (np.arange(nb_bins) * size)[:, None]
    for t0 in range(0, nb_frames, block):
        ctx.progress(t0, nb_frames, "ADRess azimugram")
        x = stft_block(spec, t0, t0 + block)
        az, height, _, in_phase = bin_nulls(x[0], x[1], beta)
        height = np.where(in_phase, height, 0.0)
        lo = np.minimum(np.floor(az).astype(np.int64), size - 2)
        frac = az - lo
        plane += np.bincount((rows + lo).ravel(), weights=(height * (1 - frac)).ravel(),
                             minlength=plane.size)
        plane += np.bincount((rows + lo + 1).ravel(), weights=(height * frac).ravel(),
                             minlength=plane.size)
    ctx.progress(nb_frames, nb_frames, "ADRess azimugram")
    return plane.reshape(nb_bins, size)


def profile_peaks(profile: np.ndarray, *, nb_sources: int, max_sources: int,
                  threshold: float, neighbourhood: int) -> List[Tuple[float, float]]:
    """Peaks of a 1-D azimuth profile, highest first, as ``(position, height)``.

    ``nb_sources > 0``: that many highest local maxima (fewer only if there are
    fewer). ``0``: every local maximum reaching ``threshold`` times the
    highest, at most ``max_sources``. Positions are refined by a parabola.
    """
    size = 2 * neighbourhood + 1
    local = profile == ndimage.maximum_filter1d(profile, size=size, mode="constant",
                                                cval=-np.inf)
    local &= profile > 0
    idx = np.flatnonzero(local)
    idx = idx[np.argsort(-profile[idx], kind="stable")]
    if nb_sources > 0:
        count = min(nb_sources, idx.size)
    else:
        count = int(np.count_nonzero(profile[idx] >= threshold * profile[idx[0]])) if idx.size else 0
        count = max(1, min(count, max_sources))
    out = []
    for i in idx[:count]:
        pos = float(i)
        if 0 < i < profile.size - 1:
            m1, m0, p1 = profile[i - 1], profile[i], profile[i + 1]
            den = m1 - 2 * m0 + p1
            if den < 0:
                pos += float(np.clip(0.5 * (m1 - p1) / den, -0.5, 0.5))
        out.append((pos, float(profile[i])))
    return out


def adress_mask_blocks(spec: "np.ndarray | AudioStft", positions: np.ndarray, beta: int, *,
                       width: float, kind: str, softness: float
                       ) -> Callable[[int, int], np.ndarray]:
    """The function ``masks(t0, t1)`` giving frames [t0, t1) of :func:`adress_masks`.

    Each block is computed from the same frames of ``spec`` alone, so the
    masks of a long file can be formed where they are used.
    """
    j = positions.size
    pos = positions.astype(np.float32)[:, None, None]

    def masks(t0: int, t1: int) -> np.ndarray:
        x = stft_block(spec, t0, t1)
        az, height, peak, _ = bin_nulls(x[0], x[1], beta)
        dist = np.abs(az[None] - pos)  # (J, F, b)
        if kind == "soft":
            logit = -0.5 * (dist / np.float32(softness)) ** 2
            logit -= logit.max(axis=0, keepdims=True)
            w = np.exp(logit)
            return (w / w.sum(axis=0, keepdims=True))[:, None].astype(np.float32, copy=False)
        best = dist.argmin(axis=0)
        weight = (np.ones_like(az) if kind == "binary"
                  else height / np.maximum(peak, np.float32(1e-30)))
        if width > 0:
            weight = np.where(dist.min(axis=0) <= width / 2, weight, 0.0)
        own = best[None] == np.arange(j)[:, None, None]
        return np.where(own, weight[None], 0.0)[:, None].astype(np.float32, copy=False)

    return masks


def adress_masks(spec: "np.ndarray | AudioStft", positions: np.ndarray, beta: int, *,
                 width: float, kind: str, softness: float, ctx: JobContext,
                 block: int = FRAMES_PER_BLOCK) -> np.ndarray:
    """Masks of the sources at ``positions`` (azimuth indices in ``[0, 2β]``).

    ``kind`` "adress" and "binary": a bin goes to the source whose position is
    nearest its null, if within ``width / 2`` (``width`` = 0: no limit), with
    the weight ``(max − min) / max`` or 1. "soft": every source gets a share
    ``∝ exp(−d² / 2 softness²)`` of the bin, ``d`` the distance from its
    position to the bin's null (in azimuth positions), so that bins between
    two sources are split rather than given away; this is the start the Wiener
    post-filter needs, since its source spectra come from the masks.

    ``spec`` is the mixture's STFT (2, F, T) as an array or an AudioStft.

    Returns
    -------
    np.ndarray [shape=(J, 1, F, T), dtype=float32]
    """
    _, nb_bins, nb_frames = spec.shape
    block_masks = adress_mask_blocks(spec, positions, beta, width=width, kind=kind,
                                     softness=softness)
    masks = np.zeros((positions.size, 1, nb_bins, nb_frames), dtype=np.float32)
    for t0 in range(0, nb_frames, block):
        ctx.progress(t0, nb_frames, "ADRess masks")
        t1 = min(t0 + block, nb_frames)
        masks[:, :, :, t0:t1] = block_masks(t0, t1)
    ctx.progress(nb_frames, nb_frames, "ADRess masks")
    return masks


def pan_to_azimuth(pan: float, beta: int) -> float:
    """Azimuth index of a pan position in [−1 (left), 1 (right)].

    Pan p ≤ 0 means gains with ``g_R / g_L = 1 + p``, p ≥ 0 ``g_L / g_R = 1 − p``
    (ADRess's linear gain scale on each side).
    """
    return (float(pan) + 1.0) * beta


@register
class ADRess(Method):
    """ADRess: azimuth discrimination and resynthesis of panned sources."""

    name = "adress"
    title = "ADRess (azimuth discrimination)"
    summary = ("Separates sources by where they are panned in a stereo mix: nulls of "
               "gain-scaled channel differences locate each bin's source on the "
               "left–right axis; sources are the peaks of the azimugram, or positions you give.")
    references = (
        "D. Barry, B. Lawlor, E. Coyle, 'Sound source separation: azimuth discrimination "
        "and resynthesis', Proc. DAFx-04, Naples, 2004.",
    )
    min_channels = 2
    max_channels = 2

    @dataclass(frozen=True)
    class Params:
        sources: int = param(
            0, label="Sources", min=0, max=32,
            help="How many sources; 0 (or --sources auto) counts the azimugram peaks that "
                 "reach 'peak threshold' of the highest. Ignored when pans are given.")
        pans: Tuple[float, ...] = param(
            (), label="Pan positions", min=-1.0, max=1.0,
            help="Positions of the sources, −1 (hard left) … 0 (centre) … 1 (hard right), "
                 "on ADRess's linear gain scale (p < 0: right/left gain 1 + p; p > 0: "
                 "left/right gain 1 − p). Empty: found from the azimugram.")
        max_sources: int = param(
            8, label="Most sources (auto)", min=1, max=32,
            help="Upper bound on the count when sources = 0.")
        peak_threshold: float = param(
            0.1, label="Peak threshold", min=0.0, max=1.0,
            help="With sources = 0: an azimugram peak counts as a source if it reaches "
                 "this fraction of the highest.")
        beta: int = param(
            100, label="Azimuth resolution β", min=4, max=2000,
            help="Gain steps per side (the paper's β); the azimuth axis has 2β + 1 positions.")
        width: float = param(
            0.0, label="Azimuth subspace width H", min=0.0, max=4000.0,
            help="Azimuth positions around each source whose bins it takes (the paper's H); "
                 "0: every bin nearer to it than to any other source (nothing is left over).")
        smoothing: float = param(
            2.0, label="Peak smoothing (positions)", min=0.0, max=100.0,
            help="Standard deviation of the Gaussian that smooths the azimuth profile "
                 "before peak picking, in azimuth positions.")
        neighbourhood: int = param(
            5, label="Peak separation (positions)", min=1, max=1000,
            help="A peak must be the highest point within this many positions each side.")
        mask: str = param(
            "adress", label="Mask", choices=("adress", "binary", "soft"),
            help="adress: the paper's magnitude estimate (max − min of the bin's differences) "
                 "as a fraction of the bin; binary: the whole bin; soft: shared between "
                 "sources by azimuth distance (see softness), for the post-filter.")
        softness: float = param(
            10.0, label="Softness (positions)", min=0.1, max=1000.0,
            help="With mask = soft: width (standard deviation, in azimuth positions) of "
                 "each source's share around its position.")
        mwf: int = param(
            0, label="Wiener post-filter iterations", min=0, max=50,
            help="0: the masks are the layers. n > 0: refine the images with n EM "
                 "iterations of the multichannel Wiener filter; layers are then waveforms. "
                 "Useful with mask = soft: with hard masks each bin has one source and the "
                 "filter returns the masks unchanged.")
        device: str = param(
            "auto", label="Device", advanced=True, choices=DEVICE_CHOICES,
            help="Where the Wiener post-filter runs (auto: CUDA when present).")

    def separate(self, mix: np.ndarray, sr: int, params: "ADRess.Params", hints: Hints,
                 ctx: JobContext) -> List[LayerProposal]:
        """Separate a stereo ``mix`` float32 (2, samples) into source images.

        Returns one proposal per source, left to right: a mask (1, bins,
        frames) on the mixture's STFT, or a waveform (2, samples) with the
        post-filter. ``extra`` holds the azimugram (bins × azimuths), the
        azimuth profile, the positions found and each source's pan.
        """
        self.check_input(mix)
        lin.validate_mix(mix)
        cfg = StftConfig.for_rate(sr)
        beta = params.beta
        # The mixture's STFT is recomputed block by block wherever it is read
        # (azimugram, masks, post-filter): held whole it would be 4x the audio.
        spec = AudioStft(mix, cfg)
        with ctx.stage(0.0, 0.4, "ADRess azimugram"):
            plane = azimugram(spec, beta, ctx)
        profile = plane.sum(axis=0)
        if not np.any(profile > 0):
            raise ParameterError("the mixture is silent: ADRess found no nulls")
        smooth = (ndimage.gaussian_filter1d(profile, params.smoothing, mode="reflect")
                  if params.smoothing > 0 else profile)
        if params.pans:
            positions = np.array([pan_to_azimuth(p, beta) for p in params.pans])
            heights = [float(np.interp(p, np.arange(smooth.size), smooth)) for p in positions]
        else:
            found = profile_peaks(smooth, nb_sources=params.sources,
                                  max_sources=params.max_sources,
                                  threshold=params.peak_threshold,
                                  neighbourhood=params.neighbourhood)
            positions = np.array([p for p, _ in found])
            heights = [h for _, h in found]
        order = np.argsort(positions, kind="stable")  # left to right
        positions = positions[order]
        heights = [heights[i] for i in order]
        memory.check_layers_fit(positions.size, spec.shape[1], spec.shape[2], int(mix.size))
        if params.mwf:
            # The post-filter reads the masks block by block: never held whole.
            masks = adress_mask_blocks(spec, positions, beta, width=params.width,
                                       kind=params.mask, softness=params.softness)
        else:
            with ctx.stage(0.4, 1.0, "ADRess masks"):
                masks = adress_masks(spec, positions, beta, width=params.width,
                                     kind=params.mask, softness=params.softness, ctx=ctx)
        pans = positions / beta - 1.0
        extra_common: Dict[str, Any] = {
            "azimugram": plane.astype(np.float32),
            "azimuth_profile": smooth.astype(np.float32),
            "azimuth_pans": (np.arange(2 * beta + 1) / beta - 1.0).astype(np.float32),
            "positions": [{"pan": float(p), "height": h} for p, h in zip(pans, heights)],
        }
        pdict = params_to_dict(params)

        def extra(i: int) -> Dict[str, Any]:
            return {**extra_common, "pan": float(pans[i])}

        return mask_layers(self.name, pdict, spec, masks, [extra(i) for i in range(positions.size)],
                           length=mix.shape[1], cfg=cfg, iterations=params.mwf,
                           device=params.device, ctx=ctx)
