"""Harmonic/percussive separation by median filtering (Fitzgerald 2010).

On a magnitude spectrogram, harmonic sounds are horizontal ridges (stable in
time) and percussive sounds are vertical ones (broadband, short). A median
filter along time keeps the ridges of the first kind and removes those of
the second; a median filter along frequency does the opposite. The two
filtered spectrograms ``H`` and ``P`` give soft (Wiener-like) masks

    M_h = H^p / (H^p + (β P)^p),    M_p = P^p / (P^p + (β H)^p)

with β = ``margin`` ≥ 1 (Driedger, Müller & Disch 2014). With β = 1 the two
masks sum to one; with β > 1 each layer keeps only the bins its component
clearly dominates and a third layer ``noise`` (1 − M_h − M_p: transients,
breath, noise — whatever is neither clearly harmonic nor clearly
percussive) takes the rest. The layers always sum to the mixture.

Filter lengths are given in seconds and Hz (Driedger et al. 2014 use about
0.2 s and 500 Hz), so the result does not depend on the sample rate.

The medians are computed by a pruned sorting network (a fixed sequence of
element-wise min/max over shifted views of the spectrogram) rather than a
per-pixel sort: the same exact median, several times faster in numpy. The
spectrogram is processed in blocks of frames; only the masks exist at full
size.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np
from scipy import ndimage

from demixstudio.audio.stft import StftConfig, stft
from demixstudio.errors import ParameterError
from demixstudio.jobs.context import JobContext
from demixstudio.separation.base import Hints, LayerProposal, Method, param, params_to_dict
from demixstudio.separation.registry import register

#: Frames per processing block: bounds the temporaries of the median networks.
BLOCK_FRAMES = 256
#: Below this, a magnitude counts as silence (both masks are then split evenly).
TINY = 1e-10
#: Longest window for the median network. Its size grows as k·log²k and, for long
#: windows, hundreds of block-sized intermediates are alive at once (431 taps, the
#: longest harmonic filter at 44.1 kHz: 13 000 operations, 2.7 GB); beyond this
#: ndimage's selection, exact too, needs one output-sized array and is faster there.
NETWORK_MAX_TAPS = 101


# --------------------------------------------------------------------------
# Exact running medians by a pruned sorting network
# --------------------------------------------------------------------------


def _batcher_pairs(n: int) -> List[Tuple[int, int]]:
    """Comparators of Batcher's odd–even merge sort for ``n`` (a power of two) wires."""
    pairs = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return pairs


@functools.lru_cache(maxsize=None)
def median_network(k: int) -> Tuple[Tuple[Tuple[str, int, int], ...], int]:
    """A straight-line program computing the median of ``k`` (odd) inputs.

    Returns ``(ops, result)``: op ``j`` computes value ``k + j`` as
    ``np.minimum`` or ``np.maximum`` (kind "min"/"max") of two earlier values
    (inputs are values ``0 .. k-1``); ``result`` is the value holding the
    median. Built from Batcher's network on the next power of two with the
    missing inputs taken as +inf (their comparators vanish), then pruned to
    the operations the middle output depends on.
    """
    if k < 1 or k % 2 == 0:
        raise ParameterError(f"median length {k} must be a positive odd number")
    n = 1 << max(0, (k - 1).bit_length())
    inf = -1
    wire = list(range(k)) + [inf] * (n - k)
    ops: List[Tuple[str, int, int]] = []
    for a, b in _batcher_pairs(n):
        va, vb = wire[a], wire[b]
        if va == inf:
            wire[a], wire[b] = vb, inf  # min(inf, x) = x: a relabelling, no work
        elif vb == inf:
            continue
        else:
            ops.append(("min", va, vb))
            ops.append(("max", va, vb))
            wire[a], wire[b] = k + len(ops) - 2, k + len(ops) - 1
    result = wire[(k - 1) // 2]
    # Keep only what the median depends on, then renumber.
    needed = {result}
    for j in range(len(ops) - 1, -1, -1):
        if k + j in needed:
            needed.update(ops[j][1:])
    keep = [j for j in range(len(ops)) if k + j in needed]
    new_id = {i: i for i in range(k)}
    pruned = []
    for j in keep:
        kind, x, y = ops[j]
        new_id[k + j] = k + len(pruned)
        pruned.append((kind, new_id[x], new_id[y]))
    return tuple(pruned), new_id[result]


def running_median(x: np.ndarray, k: int, axis: int) -> np.ndarray:
    """Median over windows of ``k`` (odd) samples along ``axis``, same shape as ``x``.

    Edges are extended by half-sample symmetry (``d c b a | a b c d``), as
    ``scipy.ndimage.median_filter`` does by default.

    Parameters
    ----------
    x : np.ndarray [shape=(..., n, ...)], float32
    k : int, odd window length
    axis : int

    Returns
    -------
    y : np.ndarray, float32, shape of ``x``
    """
    x = np.asarray(x, dtype=np.float32)
    if k == 1:
        return x.copy()
    if k > NETWORK_MAX_TAPS:
        size = [1] * x.ndim
        size[axis] = k
        return ndimage.median_filter(x, size=size, mode="reflect")
    h = k // 2
    pad = [(0, 0)] * x.ndim
    pad[axis] = (h, h)
    # np.pad 'symmetric' repeats the edge sample, as ndimage's 'reflect'; for
    # windows longer than the signal it keeps reflecting, as ndimage does.
    xp = np.pad(x, pad, mode="symmetric")
    n = x.shape[axis]
    ops, result = median_network(k)
    # Shifted views of the padded array are the k inputs; nothing is copied.
    lead = (slice(None),) * (axis % x.ndim)
    vals: Dict[int, np.ndarray] = {i: xp[lead + (slice(i, i + n),)] for i in range(k)}
    # Free each intermediate after its last use so at most a few dozen exist.
    last_use: Dict[int, int] = {}
    for j, (_, a, b) in enumerate(ops):
        last_use[a] = j
        last_use[b] = j
    for j, (kind, a, b) in enumerate(ops):
        fn = np.minimum if kind == "min" else np.maximum
        vals[k + j] = fn(vals[a], vals[b])
        for v in (a, b):
            if last_use[v] == j and v != result:
                vals.pop(v, None)
    out = vals[result]
    return np.ascontiguousarray(out)


# --------------------------------------------------------------------------
# Block-wise magnitude in the program's STFT convention
# --------------------------------------------------------------------------


def magnitude_frames(x: np.ndarray, cfg: StftConfig, t0: int, t1: int) -> np.ndarray:
    """``|stft(x)|[:, :, t0:t1]`` computed from the samples those frames cover only.

    Frame ``t`` is centred on sample ``t * hop`` and spans ``n_fft`` samples;
    the STFT of the slice starting at ``t0 * hop - n_fft/2`` (a multiple of
    the hop) reproduces the global frames exactly, zero padding included.

    Returns
    -------
    mag : np.ndarray [shape=(channels, bins, t1 - t0), dtype=float32]
    """
    n = x.shape[1]
    half = cfg.n_fft // 2
    s0 = max(0, t0 * cfg.hop - half)
    s1 = min(n, (t1 - 1) * cfg.hop + half)
    spec = stft(x[:, s0:max(s1, s0 + 1)], cfg)
    first = t0 - s0 // cfg.hop
    return np.abs(spec[:, :, first:first + (t1 - t0)])


def soft_mask(x: np.ndarray, ref: np.ndarray, power: float) -> np.ndarray:
    """``x^p / (x^p + ref^p)``, 0.5 where both are silent; float32, shape of ``x``."""
    z = np.maximum(x, ref)
    silent = z < TINY
    z[silent] = 1.0
    a = (x / z) ** power  # ratios ≤ 1: no overflow for large powers
    b = (ref / z) ** power
    m = np.full(x.shape, 0.5, dtype=np.float32)
    np.divide(a, a + b, out=m, where=~silent)
    return m


def hpss_masks(x: np.ndarray, sr: int, ctx: JobContext, *, harmonic_frames: int,
               percussive_bins: int, power: float = 2.0, margin: float = 1.0,
               cfg: StftConfig | None = None, block: int = BLOCK_FRAMES
               ) -> Tuple[np.ndarray, np.ndarray]:
    """Harmonic and percussive soft masks of ``x``.

    Parameters
    ----------
    x : np.ndarray [shape=(channels, samples), dtype=float32]
    harmonic_frames, percussive_bins : odd median lengths along time / frequency
    power : mask exponent (2 = Wiener-like; large values approach binary masks)
    margin : β ≥ 1, the factor by which a component must dominate to claim a bin

    Returns
    -------
    mask_h, mask_p : np.ndarray [shape=(channels, bins, frames), dtype=float32]
        ``mask_h + mask_p`` is 1 where ``margin`` = 1 and at most 1 otherwise.
    """
    cfg = cfg or StftConfig.for_rate(sr)
    c, n = x.shape
    nfr = cfg.frames(n)
    mask_h = np.empty((c, cfg.bins, nfr), dtype=np.float32)
    mask_p = np.empty_like(mask_h)
    halo = harmonic_frames // 2
    for t0 in range(0, nfr, block):
        t1 = min(nfr, t0 + block)
        # The time median needs ``halo`` frames either side; at the ends of the
        # file the running median's own symmetric extension takes over.
        a, b = max(0, t0 - halo), min(nfr, t1 + halo)
        mag = magnitude_frames(x, cfg, a, b)
        harm = running_median(mag, harmonic_frames, axis=2)[:, :, t0 - a:t1 - a]
        core = mag[:, :, t0 - a:t1 - a]
        perc = running_median(core, percussive_bins, axis=1)
        if margin == 1.0:
            mh = soft_mask(harm, perc, power)
            mask_h[:, :, t0:t1] = mh
            mask_p[:, :, t0:t1] = 1.0 - mh
        else:
            mask_h[:, :, t0:t1] = soft_mask(harm, margin * perc, power)
            mask_p[:, :, t0:t1] = soft_mask(perc, margin * harm, power)
        ctx.progress(t1, nfr, "median filtering")
    return mask_h, mask_p


def odd_length(value: float, step: float) -> int:
    """The odd number of ``step``-sized cells closest to ``value`` (at least 1)."""
    m = max(1, int(round(value / step)))
    return m if m % 2 else m + 1


# --------------------------------------------------------------------------
# The method
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class HpssParams:
    harmonic_s: float = param(0.2, label="Harmonic filter (s)", min=0.02, max=5.0,
                              help="length of the median filter along time; longer keeps only "
                                   "steadier tones in the harmonic layer")
    percussive_hz: float = param(500.0, label="Percussive filter (Hz)", min=20.0, max=8000.0,
                                 help="length of the median filter along frequency; longer keeps "
                                      "only broader-band hits in the percussive layer")
    margin: float = param(1.0, label="Margin", min=1.0, max=10.0,
                          help="how clearly a component must dominate a bin to claim it; above "
                               "1 a third layer 'noise' takes what is neither (Driedger 2014)")
    power: float = param(2.0, label="Mask power", min=0.5, max=20.0,
                         help="soft-mask exponent: 2 is Wiener-like, larger is closer to binary")


@register
class Hpss(Method):
    name = "hpss"
    title = "Harmonic / percussive (median filtering)"
    summary = ("splits tones from hits: median filters along time and frequency give soft masks; "
               "with margin > 1 a third 'noise' layer takes the rest")
    references = (
        "D. Fitzgerald, Harmonic/percussive separation using median filtering, DAFx 2010",
        "J. Driedger, M. Müller, S. Disch, Extending harmonic-percussive separation of audio "
        "signals, ISMIR 2014",
    )
    Params = HpssParams

    def separate(self, mix: np.ndarray, sr: int, params: HpssParams, hints: Hints,
                 ctx: JobContext) -> List[LayerProposal]:
        """Masks for ``harmonic``, ``percussive`` and (margin > 1) ``noise``.

        mix : float32 (channels, samples); each channel is filtered on its own.
        """
        self.check_input(mix)
        cfg = StftConfig.for_rate(sr)
        kt = odd_length(params.harmonic_s, cfg.hop / sr)
        kf = odd_length(params.percussive_hz, sr / cfg.n_fft)
        mask_h, mask_p = hpss_masks(mix, sr, ctx, harmonic_frames=kt, percussive_bins=kf,
                                    power=params.power, margin=params.margin, cfg=cfg)
        values = params_to_dict(params)
        out = [LayerProposal("harmonic", self.name, values, mask=mask_h),
               LayerProposal("percussive", self.name, values, mask=mask_p)]
        if params.margin > 1.0:
            # What neither component clearly claims; keeps the books balanced.
            rest = 1.0 - mask_h
            rest -= mask_p
            np.clip(rest, 0.0, 1.0, out=rest)
            out.append(LayerProposal("noise", self.name, values, mask=rest))
        return out
