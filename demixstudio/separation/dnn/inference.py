"""Chunked inference: any length in bounded memory, on the best device, with OOM retry.

The mixture is cut into chunks of ``chunk_s`` seconds that overlap by
``overlap_s``; each chunk is also given ``model.context_samples`` of extra
signal on both sides (cut off again afterwards) so that no kept output sample
sits at a network edge. Consecutive chunks are cross-faded over their overlap
with complementary linear ramps (they sum to exactly one), so the output is a
seamless overlap-add, written straight into one preallocated
(targets, channels, samples) float32 array: the only full-length copies are
the input and that output.

Out of memory — a real one (CUDA OOM, ``MemoryError``, an allocator failure)
or one predicted from ``memory_budget_mb`` — is answered by halving the
chunk length and redoing the failed chunk; the work already done is kept
(the cross-fade only needs the overlap to stay the same, and it does).

Device ``auto`` picks CUDA, then Apple MPS, then the CPU. On CUDA the
network runs under float16 autocast (the STFT stays float32).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
import torch

from demixstudio.errors import DemixError, ParameterError
from demixstudio.jobs import memory
from demixstudio.jobs.context import JobContext, NullContext
from demixstudio.devices import pick_device as _pick_device
from demixstudio.separation.dnn.models.base import StemModel

#: Chunks are never made shorter than this (seconds) by the retry.
MIN_CHUNK_S = 0.5


class ChunkOutOfMemory(Exception):
    """Internal: this chunk does not fit (really, or by the memory budget)."""


def pick_device(device: Optional[str] = "auto") -> torch.device:
    """``auto`` → cuda > mps > cpu; otherwise the named device, checked to exist."""
    return _pick_device(device)


@dataclass
class SeparationResult:
    """stems : float32 (targets, channels, samples); targets : their names."""

    stems: np.ndarray
    targets: List[str]
    device: str
    chunk_s: float  # the chunk length that was finally used
    retries: int  # how many times the chunk was shortened after running out of memory
    log: List[str] = field(default_factory=list)


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text
                                              or "can't allocate memory" in text
                                              or "not enough memory" in text)


def activation_bytes_per_sample(model: StemModel, batch: int, device: torch.device,
                                probe_s: float = 1.0) -> float:
    """Working memory of one forward pass per input sample, measured on a short probe.

    The outputs of every leaf module are summed (forward hooks): an upper
    bound on what the pass holds at once, since freed temporaries count too.
    """
    total = [0]

    def hook(_mod, _inp, out):
        if isinstance(out, torch.Tensor):
            total[0] += out.numel() * out.element_size()
        elif isinstance(out, (tuple, list)):
            total[0] += sum(o.numel() * o.element_size() for o in out
                            if isinstance(o, torch.Tensor))

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if not list(m.children())]
    n = max(int(probe_s * model.sample_rate), 2048)
    try:
        with torch.no_grad():
            x = torch.zeros(batch, model.nb_channels, n, device=device)
            model.separate(x)
    finally:
        for h in handles:
            h.remove()
    # Spectral models also hold the complex STFT and per-target spectra.
    extra = 4 * batch * model.nb_channels * (2 + 4 * len(model.targets))
    return total[0] / n + extra


def separate_array(model: StemModel, mix: np.ndarray, *, device: Optional[str] = "auto",
                   chunk_s: float = 20.0, overlap_s: float = 1.0,
                   half: Optional[bool] = None, memory_budget_mb: Optional[float] = None,
                   wiener_iterations: int = 0, ctx: Optional[JobContext] = None
                   ) -> SeparationResult:
    """Separate ``mix`` float32 (channels, samples), at ``model.sample_rate``, into stems.

    Parameters
    ----------
    model : a StemModel (moved to the device, put in eval mode)
    mix : np.ndarray [shape=(channels, samples)], any channel count
        A mono model separates each channel on its own; a stereo model given
        one channel separates it duplicated, given more than two separates
        each channel duplicated, and averages its two outputs.
    chunk_s, overlap_s : seconds per chunk and cross-fade length
    half : float16 autocast; None = on CUDA only
    memory_budget_mb : if set, a chunk whose predicted working memory exceeds
        it is treated as out of memory (shortened and retried)
    wiener_iterations : EM iterations of the multichannel Wiener post-filter
        (spectral models only; 0 = ratio masks)

    Returns
    -------
    SeparationResult with stems float32 (targets, channels, samples)
    """
    ctx = ctx or NullContext()
    mix = np.asarray(mix, dtype=np.float32)
    if mix.ndim != 2 or mix.shape[1] == 0:
        raise ParameterError(f"mix must have shape (channels, samples); got {mix.shape}")
    if not chunk_s > 0 or not overlap_s >= 0:
        raise ParameterError(f"chunk_s={chunk_s} must be > 0 and overlap_s={overlap_s} ≥ 0")
    dev = pick_device(device)
    use_half = (dev.type == "cuda") if half is None else bool(half and dev.type == "cuda")
    model = model.to(dev).eval()
    c, n = mix.shape
    sr = model.sample_rate
    nb_t = len(model.targets)
    # The stems at full length, and as much again for what is made of them (resampled
    # back to the input's rate, or the layers' audio).
    memory.check_fits(2 * nb_t * c * n * 4, f"{nb_t} stems of {c} channels × {n} samples",
                      memory.SHORTER)
    out = np.zeros((nb_t, c, n), dtype=np.float32)
    groups = _channel_groups(c, model.nb_channels)
    batch = len(groups)
    per_sample = None
    if memory_budget_mb is not None:
        per_sample = activation_bytes_per_sample(model, batch, dev)
    context = model.context_samples
    chunk = max(int(round(chunk_s * sr)), 1)
    overlap = int(round(overlap_s * sr))
    retries = 0
    log: List[str] = []
    start = 0
    fade_in = 0  # the previous chunk's fade-out length, which this chunk's fade-in matches
    while start < n:
        ov = min(overlap, chunk // 4)
        stop = n if start + chunk >= n else start + chunk
        try:
            if per_sample is not None:
                need = per_sample * (stop - start + 2 * context) / 2 ** 20
                if need > memory_budget_mb:
                    raise ChunkOutOfMemory(f"{need:.0f} MB needed, budget {memory_budget_mb} MB")
            y = _run_chunk(model, mix, groups, start, stop, context, dev, use_half,
                           wiener_iterations)
        except Exception as exc:  # noqa: BLE001 - only out-of-memory is retried
            if not (isinstance(exc, ChunkOutOfMemory) or _is_oom(exc)):
                raise
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            if chunk // 2 < MIN_CHUNK_S * sr:
                raise DemixError(_out_of_memory_advice(
                    exc, chunk / sr, dev.type, memory_budget_mb)) from exc
            chunk //= 2
            retries += 1
            log.append(f"out of memory at {start / sr:.1f} s ({exc}); chunk now {chunk / sr:.2f} s")
            continue
        # Cross-fade: ramp up over [start, start+ov) unless first; ramp down over
        # the last ov samples unless last. The next chunk starts at stop - ov.
        w = np.ones(stop - start, dtype=np.float32)
        if fade_in:
            w[:fade_in] = (np.arange(fade_in, dtype=np.float32) + 0.5) / fade_in
        last = stop >= n
        if not last and ov:
            w[-ov:] = 1.0 - (np.arange(ov, dtype=np.float32) + 0.5) / ov
        out[:, :, start:stop] += y * w
        ctx.progress(stop, n, f"separating ({dev.type}, {chunk / sr:.0f} s chunks)")
        if last:
            break
        start, fade_in = stop - ov, ov
    return SeparationResult(out, list(model.targets), dev.type, chunk / sr, retries, log)


def _out_of_memory_advice(exc: BaseException, chunk_s: float, device: str,
                          memory_budget_mb: Optional[float]) -> str:
    """Why the shortest chunk still did not fit, and what would help."""
    if isinstance(exc, ChunkOutOfMemory):  # the budget refused it, not the device
        return (f"memory_mb={memory_budget_mb:g} is too small for this model even with "
                f"{chunk_s:.2f} s chunks ({exc}); raise memory_mb or leave it unset")
    advice = "a smaller model" if device == "cpu" else "device=cpu or a smaller model"
    return (f"out of memory even with {chunk_s:.2f} s chunks on {device}; try {advice}"
            + (" (or raise memory_mb)" if memory_budget_mb is not None else ""))


def _channel_groups(c: int, model_channels: int) -> List[List[int]]:
    """Which input channels form each batch item (see ``separate_array``)."""
    if model_channels == c:
        return [list(range(c))]
    if model_channels == 1:
        return [[i] for i in range(c)]
    return [[i, i] for i in range(c)]  # a stereo model on each channel duplicated


def _run_chunk(model: StemModel, mix: np.ndarray, groups: List[List[int]], start: int,
               stop: int, context: int, dev: torch.device, use_half: bool,
               wiener_iterations: int) -> np.ndarray:
    """Stems of mix[:, start:stop] with ``context`` samples each side: (J, C, stop-start)."""
    c, n = mix.shape
    lo, hi = max(0, start - context), min(n, stop + context)
    seg = np.zeros((c, (stop - start) + 2 * context), dtype=np.float32)
    off = context - (start - lo)
    seg[:, off:off + hi - lo] = mix[:, lo:hi]
    x = torch.from_numpy(np.stack([seg[g] for g in groups])).to(dev)
    with torch.no_grad(), torch.autocast(device_type=dev.type, dtype=torch.float16,
                                         enabled=use_half):
        y = model.separate(x, wiener_iterations=wiener_iterations)
    y = y.float()[..., context:context + stop - start].cpu().numpy()  # (B, J, Cm, L)
    out = np.empty((y.shape[1], c, stop - start), dtype=np.float32)
    for b, g in enumerate(groups):
        if len(g) == 2 and g[0] == g[1]:
            out[:, g[0]] = y[b].mean(axis=1)
        else:
            out[:, g] = y[b]
    return out


def resample_for(model: StemModel, mix: np.ndarray, sr: int) -> np.ndarray:
    """``mix`` at the model's rate (polyphase), or unchanged if it already is."""
    from demixstudio.audio.io import resample

    return mix if sr == model.sample_rate else resample(mix, sr, model.sample_rate)


def separate(model: StemModel, mix: np.ndarray, sr: int, **kwargs) -> SeparationResult:
    """:func:`separate_array` for audio at any rate: resampled to the model and back."""
    from demixstudio.audio.io import resample

    n = mix.shape[1]
    res = separate_array(model, resample_for(model, mix, sr), **kwargs)
    if sr != model.sample_rate:
        stems = np.zeros((res.stems.shape[0], mix.shape[0], n), dtype=np.float32)
        for j in range(res.stems.shape[0]):
            back = resample(res.stems[j], model.sample_rate, sr)[:, :n]
            stems[j, :, :back.shape[1]] = back
        res.stems = stems
    return res


def model_summary(model: StemModel) -> Dict[str, object]:
    return {"arch": model.arch, "targets": list(model.targets),
            "sample_rate": model.sample_rate, "nb_channels": model.nb_channels,
            "parameters": int(sum(p.numel() for p in model.parameters()))}


__all__ = ["SeparationResult", "activation_bytes_per_sample", "model_summary", "pick_device",
           "separate", "separate_array"]
