"""The block mixer: stems × (gain, pan, mute, solo) → one output block.

The same two functions serve the session's mixdown and export and the
playback engine's audio callback, so what is exported is what was heard.
``gain_matrix`` turns the settings into one gain per (stem, channel); it
runs when a setting changes. ``mix_into`` is the per-block work: it writes
into a caller-owned buffer and allocates nothing.

Pan law: constant power, normalised to unity at centre. For pan p in
[−1, 1], θ = (p + 1)·π/4 and the left/right gains are √2·cos θ and √2·sin θ:
centre leaves both channels untouched (so layers at unity settings sum to
the mixture), and g_L² + g_R² = 2 at every position (constant power; a hard
pan is +3 dB on its side). On a stereo layer this acts as a balance control.
Pan applies to 2-channel output only; mono and > 2-channel output ignore it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class MixSettings:
    """The live settings of one stem."""

    gain_db: float = 0.0
    pan: float = 0.0
    mute: bool = False
    solo: bool = False


def pan_gains(pan: float) -> tuple:
    """(left, right) gains of the constant-power pan law, unity at centre."""
    p = min(1.0, max(-1.0, float(pan)))
    theta = (p + 1.0) * np.pi / 4.0
    return np.sqrt(2.0) * np.cos(theta), np.sqrt(2.0) * np.sin(theta)


def audible(settings: Sequence[MixSettings]) -> np.ndarray:
    """Which stems sound, by DAW rules: if any stem is soloed only soloed stems
    sound; a muted stem never sounds (mute wins over solo). Returns bool (stems,)."""
    any_solo = any(s.solo for s in settings)
    return np.array([(not s.mute) and (s.solo or not any_solo) for s in settings], dtype=bool)


def gain_matrix(settings: Sequence[MixSettings], channels: int) -> np.ndarray:
    """Per-stem, per-channel linear gains.

    Returns
    -------
    g : np.ndarray [shape=(stems, channels), dtype=float32]
    """
    g = np.zeros((len(settings), channels), dtype=np.float32)
    on = audible(settings)
    for i, s in enumerate(settings):
        if not on[i]:
            continue
        lin = 10.0 ** (float(s.gain_db) / 20.0)
        if channels == 2:
            left, right = pan_gains(s.pan)
            g[i] = (lin * left, lin * right)
        else:
            g[i] = lin
    return g


def mix_into(out: np.ndarray, stems: Sequence[np.ndarray], gains: np.ndarray,
             start: int, scratch: np.ndarray | None = None) -> np.ndarray:
    """Mix samples ``start : start + out.shape[1]`` of every stem into ``out``.

    Parameters
    ----------
    out : np.ndarray [shape=(channels, block), dtype=float32], overwritten
    stems : sequence of np.ndarray [shape=(channels, samples)]; a stem
        shorter than the block contributes zeros past its end
    gains : np.ndarray [shape=(stems, channels)] from ``gain_matrix``
    start : first sample of the block
    scratch : np.ndarray [shape=(block,), dtype=float32] or None
        Work buffer; pass a preallocated one from the audio callback so the
        block is mixed with no allocation at all.

    Returns ``out``.
    """
    out.fill(0.0)
    n = out.shape[1]
    if scratch is None:
        scratch = np.empty(n, dtype=np.float32)
    for i, stem in enumerate(stems):
        g = gains[i]
        if not g.any():
            continue
        stop = min(start + n, stem.shape[1])
        if stop <= start:
            continue
        seg = stem[:, start:stop]
        for c in range(out.shape[0]):
            if g[c] != 0.0:
                m = stop - start
                # Multiply into the scratch row, then add in place: no temporaries.
                np.multiply(seg[c], g[c], out=scratch[:m])
                np.add(out[c, :m], scratch[:m], out=out[c, :m])
    return out


def mixdown(stems: Sequence[np.ndarray], gains: np.ndarray, samples: int,
            block: int = 1 << 18) -> np.ndarray:
    """Render the whole mix, block by block: float32 (channels, samples)."""
    out = np.zeros((gains.shape[1], samples), dtype=np.float32)
    scratch = np.empty(block, dtype=np.float32)
    for start in range(0, samples, block):
        mix_into(out[:, start:start + block], stems, gains, start, scratch)
    return out
