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
(the cross-fade only needs the overlap to stay the same, and it does). The
prediction is measured, not guessed: the peak of the tensors a forward pass
holds at once on two short silent probes (``working_memory``). On the CPU a
real out-of-memory error rarely comes (the system swaps, or kills the
process), so without a budget the chunks are kept under ``CPU_WORKING_MB``
there: MMDenseNet's 20 s chunks of 44.1 kHz stereo held 4.2 GB at the peak,
its 5 s chunks 1.2 GB (1.6–1.9 GB in a fresh process, whose first passes also
set up the kernels).

Device ``auto`` picks CUDA, then Apple MPS, then the CPU. On CUDA the
network runs under float16 autocast (the STFT stays float32).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from demixstudio.errors import DemixError, ParameterError
from demixstudio.jobs import memory
from demixstudio.jobs.context import JobContext, NullContext
from demixstudio.devices import pick_device as _pick_device
from demixstudio.separation.dnn.models.base import StemModel

#: Chunks are never made shorter than this (seconds) by the retry.
MIN_CHUNK_S = 0.5
#: Without a memory budget, on the CPU, chunks are kept under this much predicted
#: working memory (MB). A real out-of-memory error is what shortens a chunk
#: elsewhere, but on the CPU there is rarely one: the system swaps, or kills the
#: process. MMDenseNet's 20 s chunks (44.1 kHz stereo) are predicted at 3.0 GB (a
#: resident peak of 4.2 GB); the Open-Unmix-sized model and Wave-U-Net stay under it.
CPU_WORKING_MB = 1024.0
#: ... and only chunks longer than this (seconds) are measured for it: under it every
#: model here needs less, and the probe would cost more than it saves.
CPU_PROBE_ABOVE_S = 4.0


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


class _LiveTensorPeak(TorchDispatchMode):
    """Counts the bytes of the tensors alive at once while it is active (their peak).

    Every storage an operation returns is counted from its creation until it
    is freed (a finalizer on the storage, whose Python object torch keeps for
    the storage's life), so a view or an in-place result is not counted
    twice. Kernels' internal scratch space is not seen."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._seen: set = set()

    def _freed(self, key: int, nbytes: int) -> None:
        self._seen.discard(key)
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                key = id(storage)
                if key not in self._seen:
                    nbytes = storage.nbytes()
                    self._seen.add(key)
                    self.live += nbytes
                    weakref.finalize(storage, self._freed, key, nbytes)
                    self.peak = max(self.peak, self.live)
        return out


def working_memory(model: StemModel, batch: int, device: torch.device,
                   probe_s: float = 0.5) -> tuple[float, float]:
    """Working memory of a forward pass: (fixed bytes, bytes per input sample).

    Measured as the peak of the tensors alive at once (``_LiveTensorPeak``) on two
    silent probes of ``probe_s`` and twice that, and read as a straight line in
    the length: the networks here are convolutional or recurrent along time, so
    what grows is linear in it, and a recurrent model's state is the fixed part.
    Against the process's resident peak on the CPU (44.1 kHz stereo, 20 s chunks,
    the default sizes, the input and output included), the real peak is 1.1
    (Open-Unmix-sized), 1.4 (MMDenseNet) and 1.8 (Wave-U-Net) times this: the
    allocator's slack and the kernels' scratch space are not seen."""
    peaks = []
    lengths = [max(int(probe_s * model.sample_rate), 2048)]
    lengths.append(2 * lengths[0])
    for n in lengths:
        with torch.no_grad():
            x = torch.zeros(batch, model.nb_channels, n, device=device)
            with _LiveTensorPeak() as probe:
                model.separate(x)
            del x
        peaks.append(probe.peak)
    per_sample = max(peaks[1] - peaks[0], 0) / (lengths[1] - lengths[0])
    fixed = max(peaks[0] - per_sample * lengths[0], 0.0)
    return fixed, per_sample


#: Each model's working-memory line per (batch, device), measured once: a batch of
#: files with one model would otherwise probe it again for every file (about a
#: second and a half of audio's compute each). Weak keys: a model let go takes its
#: entries with it.
_MEASURED: "weakref.WeakKeyDictionary[StemModel, Dict[tuple, tuple[float, float]]]" = (
    weakref.WeakKeyDictionary())


def measured_working_memory(model: StemModel, batch: int, device: torch.device
                            ) -> tuple[float, float]:
    """``working_memory`` of ``model``, measured on its first call for this ``batch``
    and ``device`` and remembered after that (the line depends on the network's
    shape, not on its weights, so training or loading weights does not change it)."""
    known = _MEASURED.setdefault(model, {})
    key = (batch, str(device))
    if key not in known:
        known[key] = working_memory(model, batch, device)
    return known[key]


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
    memory_budget_mb : if set, a chunk whose predicted working memory
        (``working_memory``) exceeds it is treated as out of memory (shortened
        and retried). None: on the CPU, chunks longer than
        ``CPU_PROBE_ABOVE_S`` are kept under ``CPU_WORKING_MB`` the same way;
        on a GPU only real out-of-memory errors shorten them.
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
    context = model.context_samples
    chunk = max(int(round(chunk_s * sr)), 1)
    budget_mb = memory_budget_mb
    if budget_mb is None and dev.type == "cpu" and min(chunk, n) > CPU_PROBE_ABOVE_S * sr:
        budget_mb = CPU_WORKING_MB
    line = None  # (fixed bytes, bytes per sample) of a chunk's working memory
    if budget_mb is not None:
        try:
            line = measured_working_memory(model, batch, dev)
        except Exception as exc:  # noqa: BLE001
            # A probe that does not fit under the automatic budget is let pass: then
            # only real out-of-memory errors shorten the chunks.
            if not _is_oom(exc) or memory_budget_mb is not None:
                raise
    overlap = int(round(overlap_s * sr))
    retries = 0
    log: List[str] = []
    start = 0
    fade_in = 0  # the previous chunk's fade-out length, which this chunk's fade-in matches
    while start < n:
        ov = min(overlap, chunk // 4)
        stop = n if start + chunk >= n else start + chunk
        try:
            if line is not None:
                need = (line[0] + line[1] * (stop - start + 2 * context)) / 2 ** 20
                if need > budget_mb:
                    raise ChunkOutOfMemory(f"{need:.0f} MB needed, budget {budget_mb:g} MB")
            y = _run_chunk(model, mix, groups, start, stop, context, dev, use_half,
                           wiener_iterations)
        except Exception as exc:  # noqa: BLE001 - only out-of-memory is retried
            if not (isinstance(exc, ChunkOutOfMemory) or _is_oom(exc)):
                raise
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            if chunk // 2 < MIN_CHUNK_S * sr:
                if isinstance(exc, ChunkOutOfMemory) and memory_budget_mb is None:
                    # Only the automatic budget refused it: the model is simply this
                    # large; run at the shortest chunk and let a real error decide.
                    line = None
                    log.append(f"the shortest chunk still needs more than {budget_mb:g} MB "
                               f"({exc}); running it anyway")
                    continue
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
    """``mix`` at the model's rate (``audio.io.resample``), or unchanged if it already is."""
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


__all__ = ["SeparationResult", "working_memory", "measured_working_memory", "model_summary",
           "pick_device", "separate", "separate_array"]
