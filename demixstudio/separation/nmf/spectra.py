"""From audio to the engine's input and back: magnitude blocks, dictionaries, soft masks.

Multichannel input is factorised through one magnitude, the sum over
channels of ``|X_c|``: one set of templates and activations explains every
channel, and each group's mask (one channel, applied to all) keeps the
layers' stereo image as it is in the mixture. This costs one spectrogram of
memory whatever the channel count, and the masks still sum to one, so the
layers sum to the mixture.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from demixstudio.audio.io import resample
from demixstudio.audio.stft import STFT_BLOCK, StftConfig, stft, stft_frames
from demixstudio.errors import ParameterError
from demixstudio.jobs import memory
from demixstudio.jobs.context import JobContext
from demixstudio.separation.base import AudioHint, layout_problem
from demixstudio.separation.excerpts import example_spans
from demixstudio.separation.nmf import engine, starts

#: Magnitudes are floored at this, relative to the mean, so KL/IS ratios stay finite.
FLOOR = 1e-8


def magnitude(x: np.ndarray, cfg: StftConfig, block: int = STFT_BLOCK) -> np.ndarray:
    """Channel-summed magnitude ``Σ_c |X_c|``: float32 (bins, frames), transformed
    ``block`` frames at a time."""
    V = np.empty((cfg.bins, cfg.frames(x.shape[1])), dtype=np.float32)
    magnitude_into(x, cfg, 0, V, block)
    return V


def magnitude_into(x: np.ndarray, cfg: StftConfig, t0: int, out: np.ndarray,
                   block: int = STFT_BLOCK) -> None:
    """Frames ``[t0, t0 + B)`` of :func:`magnitude` into ``out`` float32 (bins, B).

    The STFT is made ``block`` frames at a time: a whole fit block at once held its
    windowed frames, their complex spectra and their magnitudes per channel together
    (0.36 GB for 4096 frames of a 4096-point STFT of stereo), about ten times the
    block it was for; a few frames at a time stay in cache, and the values are the
    same."""
    for a in range(0, out.shape[1], block):
        b = min(out.shape[1], a + block)
        X = stft_frames(x, cfg, t0 + a, t0 + b)  # complex64 (channels, bins, b − a)
        out[:, a:b] = np.abs(X).sum(axis=0)


def transpose_magnitude(V: np.ndarray, semitones: float) -> np.ndarray:
    """``V`` float32 (bins, frames) with every frequency scaled by 2^(semitones/12):
    float32 (bins, frames), a spectrum as the same sound played that much higher.

    Each bin is a piece of constant density over its width, and the new bins
    integrate the scaled density (a rebinning of the cumulative sum): narrow
    peaks are kept whole when the spectrum is squeezed, not sampled away, and
    each new bin is multiplied by the scale, so peak heights stay where they were.
    What moves above the top bin is lost; the top of a lowered spectrum is zero."""
    r = 2.0 ** (float(semitones) / 12.0)
    V = np.asarray(V, dtype=np.float32)
    if r == 1.0:
        return V.copy()
    F = V.shape[0]
    # The cumulative sum at the bins' edges −0.5, 0.5, ..., F − 0.5.
    C = np.zeros((F + 1, V.shape[1]), dtype=np.float64)
    np.cumsum(V, axis=0, dtype=np.float64, out=C[1:])
    # The new bins' edges, in old bins.
    x = np.clip((np.arange(F + 1) - 0.5) / r + 0.5, 0.0, float(F))
    i = np.minimum(x.astype(np.int64), F - 1)
    w = (x - i)[:, None]
    at = C[i] * (1.0 - w) + C[i + 1] * w
    return (np.diff(at, axis=0) * r).astype(np.float32)


def floor_magnitude(V: np.ndarray) -> float:
    """A positive floor for ``V`` (in place), so every ratio of the updates is defined."""
    eps = float(max(V.mean(), 1e-20)) * FLOOR
    np.maximum(V, eps, out=V)
    return eps


def example_signals(hints: Sequence[AudioHint], sr: int, what: str,
                    limit_s: float | None = None):
    """Each example recording, checked, as float32 (channels, samples) at ``sr`` (a
    generator). Recordings longer together than ``limit_s`` (None:
    ``excerpts.MAX_EXAMPLE_S``) are sampled first (at their own rate, so nothing
    beyond the sample is resampled or copied), and each excerpt comes as a recording
    of its own (``excerpts.example_spans``), as does each excerpt of a recording
    sampled when it was read (``AudioHint.joins``)."""
    pieces = []
    for h in hints:
        if not h.sr > 0:
            raise ParameterError(" ".join(filter(None, [what, h.source]))
                                 + f" has no valid sample rate ({h.sr})")
        for a in h.pieces():
            a = a[None] if a.ndim == 1 else a
            # An example laid out as (samples, channels) would read as a recording a
            # few samples long: it is told apart as the input is.
            problem = layout_problem(a)
            if problem:
                raise ParameterError(" ".join(filter(None, [what, h.source])) + f": {problem}")
            pieces.append((a, h))
    spans = example_spans([a.shape[1] for a, _ in pieces],
                          [float(h.sr) for _, h in pieces], limit_s, [a for a, _ in pieces])
    for (a, h), parts in zip(pieces, spans):
        for t0, t1 in parts:
            x = np.asarray(a[:, t0:t1], dtype=np.float32)
            if not np.isfinite(x).all():
                raise ParameterError(" ".join(filter(None, [what, h.source]))
                                     + ": a sample is NaN or infinite")
            yield x if h.sr == sr else resample(x, int(h.sr), int(sr))


def example_magnitude(hints: Sequence[AudioHint], sr: int, cfg: StftConfig, what: str
                      ) -> np.ndarray:
    """The magnitudes of example recordings at the mixture's rate, concatenated in time.

    ``what`` names them in errors ("the hum of 'voice'"). Raises ParameterError
    if there are none, if they are silent, or if together they are shorter than
    one analysis window (nothing to learn a spectrum from)."""
    return signals_magnitude(list(example_signals(hints, sr, what)), sr, cfg, what)


def signals_magnitude(signals: Sequence[np.ndarray], sr: int, cfg: StftConfig, what: str
                      ) -> np.ndarray:
    """:func:`example_magnitude` of the recordings :func:`example_signals` gave
    (float32 (channels, samples) each), for a caller that reads them too."""
    if not signals:
        raise ParameterError(f"no {what} given")
    length = sum(a.shape[1] for a in signals)
    if length < cfg.n_fft:
        raise ParameterError(f"{what}: {_duration(length, sr)} long, shorter than one "
                             f"analysis window ({cfg.n_fft / sr * 1000:.0f} ms): give a "
                             "second or more of it")
    V = np.concatenate([magnitude(a, cfg) for a in signals], axis=1)
    if float(V.max()) <= 0:
        raise ParameterError(f"{what}: every sample is zero")
    return V


#: Above the frequency where a frame of a recording keeps less than this (dB) of the
#: frame's energy, the frame has nothing. Measured 2026-11-25 (the median over the
#: frames with sound, :func:`spectrum_top`) on the 35 recordings of ``../shared/audio``
#: brought to 16 and 44.1 kHz: full-band ones reach 7.5–8.0 and 21.8–22.05 kHz,
#: those recorded at 16 kHz reach 7.75–7.92 kHz at 44.1 kHz, and the same recordings
#: resampled from 8, 11.025 and 22.05 kHz reach 3.8–4.1, 5.2–5.6 and 10.3–10.8 kHz:
#: each the band it really has. A recording made at a rate that holds a band keeps at
#: least its noise there; what a resampler leaves above a lower rate's Nyquist
#: frequency is 140 dB down.
EMPTY_DB = 100.0


def spectrum_top(Ve: np.ndarray, freqs: np.ndarray) -> float:
    """The highest frequency (Hz) a recording has, from its magnitude ``Ve`` float32
    (bins, frames) on bins at ``freqs`` (Hz): in each frame with sound (within 60 dB
    of the loudest), the highest frequency above which the frame keeps
    :data:`EMPTY_DB` or more of its energy; the median over those frames. Per frame, because the first and last
    frames of a recording cut off mid-sound hold a click's broadband energy that
    would otherwise stand for the whole (an example resampled from 8 kHz showed 63
    dB under its total above 4.2 kHz, all of it from its last frames)."""
    tops, energy = [], []
    for a in range(0, Ve.shape[1], engine.BLOCK_FRAMES):
        P = np.square(Ve[:, a:a + engine.BLOCK_FRAMES], dtype=np.float64)
        above = np.cumsum(P[::-1], axis=0)[::-1]  # each frame's energy at and above a bin
        total = above[0]
        has = above > total * 10.0 ** (-EMPTY_DB / 10.0)
        tops.append(Ve.shape[0] - 1 - np.argmax(has[::-1], axis=0))
        energy.append(total)
    top, energy = np.concatenate(tops), np.concatenate(energy)
    sound = energy > energy.max() * 1e-6
    return float(freqs[int(np.median(top[sound]))]) if sound.any() else 0.0


#: A hint whose spectrum ends under this share of the mixture's top frequency gets a
#: note (:func:`short_band_note`).
SHORT_BAND = 0.8


def short_band_note(hint_top: float, mixture_top: float, what: str, target: str
                    ) -> str | None:
    """A sentence for the user when a hint (an example, a hum) ends far under the
    mixture (:data:`SHORT_BAND`), else None: its templates are empty above
    ``hint_top`` (Hz), and multiplicative updates never fill an empty entry, so
    whatever ``target`` has above it is explained by the other components and goes
    to the other layers (a phone's 8 kHz example against a 44.1 kHz mixture)."""
    if mixture_top <= 0 or hint_top >= SHORT_BAND * mixture_top:
        return None
    return (f"{what} of {target!r}: nothing above {hint_top / 1000:.1f} kHz (recorded at a "
            f"lower rate, or cut there), while the mixture goes on to "
            f"{mixture_top / 1000:.1f} kHz; what {target!r} has above "
            f"{hint_top / 1000:.1f} kHz goes to the other layers")


def learn_dictionary(V: np.ndarray, rank: int, ctx: JobContext, *, beta: float = 1.0,
                     sparsity: float = 0.0, max_iter: int = 200, tol: float = 1e-4,
                     seed: int = 0, device: torch.device = torch.device("cpu"),
                     precision: str = "float32", start: str = "random",
                     message: str = "learning a dictionary") -> torch.Tensor:
    """Spectral templates of ``V`` (bins, frames): float32 (bins, rank), unit-sum columns.

    Frames quieter than 60 dB below the loudest carry nothing but noise floor
    and are left out, so the templates describe the sound, not the silence.
    ``start``: "random" (uniform templates and activations from ``seed``) or
    "nndsvda" (the example's leading singular vectors, :mod:`starts`).
    """
    energy = V.sum(axis=0)
    keep = energy > energy.max() * 1e-3
    V = np.ascontiguousarray(V[:, keep]) if keep.sum() >= max(rank, 2) else V.copy()
    floor_magnitude(V)
    F = V.shape[0]
    Vb = engine.split_frames(V, engine.BLOCK_FRAMES, device)
    if start == "nndsvda":
        W0, H0 = starts.nndsvda(V, rank, seed)
        W = torch.as_tensor(W0).to(device)
        H0 = torch.as_tensor(H0)
        bounds = np.cumsum([0] + [b.shape[1] for b in Vb])
        H = [H0[:, a:b].contiguous().to(device) for a, b in zip(bounds[:-1], bounds[1:])]
        del W0, H0
    elif start == "random":
        scale = float(np.sqrt(V.mean() / rank))
        W = engine.random_init((F, rank), scale, seed, device)
        H = [engine.random_init((rank, b.shape[1]), scale, seed + 1 + i, device)
             for i, b in enumerate(Vb)]
    else:
        raise ValueError(f"start must be one of {', '.join(starts.STARTS)}, not {start!r}")
    engine.fit(Vb, W, H, ctx, beta=beta, sparsity=sparsity, max_iter=max_iter, tol=tol,
               precision=precision, message=message)
    return W


def init_activations(Vb: list[torch.Tensor], rank: int, seed: int) -> list[torch.Tensor]:
    """Random activations for each block, scaled to the data, on the blocks' device."""
    total = sum(engine.sum64(b) for b in Vb)
    count = sum(b.numel() for b in Vb)
    # With unit-sum templates, Σ_f (WH)_ft = Σ_k H_kt: match the mean frame sum.
    scale = total / max(count, 1) * Vb[0].shape[0] / max(rank, 1)
    return [engine.random_init((rank, b.shape[1]), scale, seed + 7919 * (i + 1), b.device)
            for i, b in enumerate(Vb)]


def group_masks(W: torch.Tensor, H: list[torch.Tensor], groups: Sequence[slice], frames: int,
                *, power: float = 1.0,
                penalties: list[torch.Tensor | None] | None = None,
                step: int = 1, out_frames: int | None = None,
                into: np.ndarray | None = None, weight: float = 1.0) -> np.ndarray:
    """Soft masks of component groups: float32 (groups, 1, bins, frames), summing to one.

    ``mask_g = Y_g^p / Σ_g' Y_g'^p`` with ``Y_g = P_g ⊙ W_g H_g`` the group's
    part of the model (``P_g`` the posterior constraint multipliers of the block, if
    any: None for a block or for all of them means none).
    ``p = 1`` is the posterior of the model (the usual NMF soft mask), ``p = 2``
    the Wiener filter on the modelled power spectra.

    ``step`` > 1: the fit's STFT has a window ``step`` times the program's, and a
    hop ``step`` times its hop (``common.analysis_config``), and the masks are
    returned on the program's grid, (groups, 1, (bins − 1) / step + 1,
    ``out_frames``): every ``step``-th bin is a program bin (the same frequency),
    and every ``step``-th program frame is a frame of the fit (the same centre);
    the program frames between two of the fit's take the straight line between
    their masks, which still sum to one. A block at a time, as the fit's are.

    ``into``: masks of the same groups on the same (program's) grid from another fit,
    which become ``(1 − weight) · into + weight · these`` in place and are returned
    (still summing to one), so two fits' masks are averaged without a second set of
    them in memory.
    """
    W = W[::step]  # only the program's bins are masked
    F = W.shape[0]
    G = len(groups)
    To = frames if out_frames is None else int(out_frames)
    if into is not None:
        if into.shape != (G, 1, F, To):
            raise ValueError(f"masks of shape {into.shape} cannot take in {G} groups' masks "
                             f"of ({F}, {To})")
        out = into
    else:
        memory.check_layers_fit(G, F, To)
        out = np.empty((G, 1, F, To), dtype=np.float32)
    blend = weight if into is not None else 1.0
    t0 = 0
    last = [None] * G  # each group's mask at the fit's previous frame, (F, 1)
    for i, Hb in enumerate(H):
        b = Hb.shape[1]
        P = penalties[i] if penalties is not None else None
        parts = []
        for g, sl in enumerate(groups):
            y = W[:, sl] @ Hb[sl]
            if P is not None:
                y.mul_(P[g, ::step])
            parts.append(y)
        if step == 1:
            write_shares(out, parts, t0, power, blend)
        else:
            # Group by group, straight into the output: stacking the groups' masks
            # (and joining the previous block's last frame to them) held two more
            # copies of the block's masks.
            for g, y in enumerate(shares(parts, power)):
                piece = y.cpu().numpy()
                if last[g] is not None:  # the line from the previous block's last frame
                    _spread_frames(out[g, 0], np.concatenate([last[g], piece[:, :1]], axis=1),
                                   t0 - 1, step, blend)
                _spread_frames(out[g, 0], piece, t0, step, blend)
                last[g] = piece[:, -1:].copy()
            del piece
        # The block's masks go before the next block's products are made.
        del parts, y
        t0 += b
    if step > 1 and t0 and step * (t0 - 1) < To:
        for g in range(G):
            _blend(out[g, 0, :, step * (t0 - 1)], last[g][:, 0], blend)
    return out


def shares(parts: list[torch.Tensor], power: float = 1.0) -> list[torch.Tensor]:
    """Each of ``parts`` (nonnegative, one shape) raised to ``power`` over the sum of
    them all: soft masks that sum to one. In place: ``parts`` become the masks.

    Why in place: a block's masking held the parts, their stack, the total and the
    quotients, about 3·groups + 1 blocks' size at once; now groups + 1."""
    if power != 1.0:
        for y in parts:
            y.pow_(power)
    total = parts[0].clone()
    for y in parts[1:]:
        total.add_(y)
    total.clamp_min_(1e-30)
    for y in parts:
        y.div_(total)
    return parts


def write_shares(out: np.ndarray, parts: list[torch.Tensor], t0: int, power: float,
                 weight: float = 1.0) -> None:
    """The :func:`shares` of ``parts`` (groups × (bins, B)) into frames ``t0 .. t0 + B − 1``
    of ``out`` float32 (groups, 1, bins, frames); with ``weight`` < 1, blended into
    what ``out`` holds there: ``(1 − weight) · out + weight · shares``."""
    for g, y in enumerate(shares(parts, power)):
        _blend(out[g, 0, :, t0:t0 + y.shape[1]], y.cpu().numpy(), weight)


def _blend(dst: np.ndarray, values: np.ndarray, weight: float) -> None:
    """``dst`` ← ``values`` (weight 1), else ``(1 − weight) · dst + weight · values``,
    in place."""
    if weight == 1.0:
        dst[...] = values
    else:
        dst *= 1.0 - weight
        dst += weight * values


def _spread_frames(out: np.ndarray, piece: np.ndarray, j0: int, step: int,
                   weight: float = 1.0) -> None:
    """Program frames [step·j0, step·(j0 + c − 1)) of one group's ``out`` (bins, To)
    from the fit's frames j0 … j0 + c − 1, ``piece`` (bins, c): each the straight
    line between the two fit frames around it (past ``To``: left out), blended into
    what is there with ``weight`` (:func:`_blend`). In place, with one temporary of
    the piece's size."""
    To = out.shape[1]
    left, right = piece[:, :-1], piece[:, 1:]
    for i in range(step):
        first = step * j0 + i
        n = min(left.shape[1], max(0, -(-(To - first) // step)))
        if n <= 0:
            continue
        dst = out[:, first:first + step * n:step]
        if i == 0:
            _blend(dst, left[:, :n], weight)
        elif weight == 1.0:
            a = i / step
            np.multiply(left[:, :n], 1 - a, out=dst)
            dst += a * right[:, :n]
        else:
            a = i / step
            line = left[:, :n] * (1 - a)
            line += a * right[:, :n]
            _blend(dst, line, weight)


def log_spectral_distance(ref: np.ndarray, est: np.ndarray, cfg: StftConfig,
                          floor_db: float = -80.0) -> float:
    """Mean over frames of the RMS over bins of ``10 log10(P_ref / P_est)`` (dB).

    Powers are floored at ``floor_db`` below the reference's peak bin so that
    silent bins give a finite, bounded distance. ``ref`` and ``est`` are float
    (channels, samples); channels are averaged first.
    """
    r = np.abs(stft(np.asarray(ref, np.float32).mean(0, keepdims=True), cfg)[0]) ** 2
    e = np.abs(stft(np.asarray(est, np.float32).mean(0, keepdims=True), cfg)[0]) ** 2
    return power_log_distance(r, e, float(r.max()), floor_db)


def power_log_distance(ref: np.ndarray, est: np.ndarray, peak: float,
                       floor_db: float = -80.0) -> float:
    """:func:`log_spectral_distance` of powers: ``ref``, ``est`` float (bins, frames),
    floored at ``floor_db`` under ``peak`` (a power)."""
    fl = peak * 10 ** (floor_db / 10)
    d = 10 * np.log10((ref + fl) / (est + fl))
    return float(np.mean(np.sqrt(np.mean(d ** 2, axis=0))))


def _duration(samples: int, sr: int) -> str:
    """A short duration in words: "10 samples (0.6 ms)" below a millisecond's
    worth of rounding, "46 ms" above."""
    ms = samples / sr * 1000
    return f"{samples} samples ({ms:.2g} ms)" if ms < 10 else f"{ms:.0f} ms"
