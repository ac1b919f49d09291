"""Refusing, before it is allocated, an output that cannot fit in memory.

A method's output grows with its number of layers times the input's length
(a mask per layer: bins × frames float32, about 1.3 GB for an hour of 44.1 kHz
audio). Asked for 20 layers of an hour, NumPy hands out the array lazily and
the operating system kills the process while it is being filled: the editor
and whatever the user had not saved go with it. :func:`check_fits` turns that
into an error that says what to change, raised before anything is allocated.

What can be given back comes first: an undo history holds the layers a run
replaced (gigabytes on a long file), and a check that would refuse an output
asks the registered reclaimers (:func:`register_reclaimer`: every session's
history) to free what it needs, when that is enough, before refusing.
"""

from __future__ import annotations

import ctypes
import functools
import sys
import weakref
from pathlib import Path
from typing import Any, List

from demixstudio.errors import InsufficientMemoryError

#: What a user can change when a separation's output does not fit.
SHORTER = "separate a shorter stretch of the recording (a time selection in the editor)"
#: ... and when it is made of many layers.
FEWER_LAYERS = "ask for fewer layers (sources, components or targets), or " + SHORTER

#: Share of the memory free now that one output may take: the session, playback
#: and export need room after it.
SHARE = 0.8


def available_bytes() -> int | None:
    """Memory free for this process now, in bytes (None when it cannot be told).

    The smaller of the system's available memory and the room left under this
    process's cgroup limit (a container's), where there is one.
    """
    free = None
    try:
        import psutil  # comes with dask.distributed

        free = int(psutil.virtual_memory().available)
    except Exception:  # no psutil, or a platform it cannot read
        pass
    try:
        cg = Path("/sys/fs/cgroup")
        limit = (cg / "memory.max").read_text().strip()
        if limit != "max":
            room = int(limit) - int((cg / "memory.current").read_text().strip())
            free = room if free is None else min(free, room)
    except (OSError, ValueError):  # cgroup v1, or no limit to read
        pass
    return free


def total_bytes() -> int | None:
    """This process's memory in all, in bytes: the machine's, or its cgroup limit
    (a container's) if smaller (None when neither can be told)."""
    total = None
    try:
        import psutil

        total = int(psutil.virtual_memory().total)
    except Exception:
        pass
    try:
        limit = (Path("/sys/fs/cgroup") / "memory.max").read_text().strip()
        if limit != "max":
            total = int(limit) if total is None else min(total, int(limit))
    except (OSError, ValueError):
        pass
    return total


def return_freed() -> None:
    """Hand back to the system the memory the C allocator holds freed but keeps for
    reuse (glibc's ``malloc_trim``; elsewhere nothing is done).

    Why: arrays of a few MB (a block of a spectrogram's bool weights, its
    activations, a fit's scratch) come from the allocator's heap once glibc's mmap
    threshold has risen past their size, and what they leave when freed stays with
    the process. After ``repair``'s fit on an hour of 44.1 kHz stereo, 0.57 GB was
    held that way when its output (1.2 GB) was allocated; given back first, the
    repair's peak fell by as much. Call it after a stage that made and dropped many
    such arrays, before one that allocates much; it takes a few milliseconds.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's ``malloc_trim``, or None (another C library, another system)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # musl has none
        return None


_reclaimers: List[Any] = []  # weak references


def register_reclaimer(obj: Any) -> None:
    """Let :func:`check_fits` free memory held by ``obj`` before it refuses an output.

    ``obj`` has ``reclaimable_bytes() -> int`` and ``release_bytes(n) -> int``
    (frees at least ``n`` bytes where it can; returns what it freed); it is held
    weakly, so registering keeps nothing alive. An undo history registers itself.
    """
    _reclaimers[:] = [r for r in _reclaimers if r() is not None]
    _reclaimers.append(weakref.ref(obj))


def _reclaim(short: float) -> int:
    """Free ``short`` bytes from the reclaimers if, together, they hold that much;
    free nothing otherwise (an output refused anyway keeps every undo step)."""
    owners = [o for o in (r() for r in list(_reclaimers)) if o is not None]
    have = [(o, o.reclaimable_bytes()) for o in owners]
    if sum(n for _, n in have) < short:
        return 0
    freed = 0
    for o, n in sorted(have, key=lambda p: -p[1]):
        if freed >= short:
            break
        freed += o.release_bytes(int(short - freed) + 1)
    return freed


def gigabytes(nbytes: float) -> str:
    """``nbytes`` for a message: "8.5 GB", "420 MB"."""
    return f"{nbytes / 2**30:.1f} GB" if nbytes >= 2**30 else f"{nbytes / 2**20:.0f} MB"


def check_layers_fit(layers: int, bins: int, frames: int, samples: int = 0,
                     channels: int = 1) -> None:
    """Refuse ``layers`` layers that would not fit, before anything of theirs is
    allocated: their float32 masks (``channels``, bins, frames: one per channel for
    the methods that mask each channel on its own) and, given ``samples`` (channels ×
    samples of the input), the audio an editor or an export renders from each
    (float32, the input's size)."""
    grid = f"{bins} bins × {frames} frames" if channels == 1 else (
        f"{channels} channels × {bins} bins × {frames} frames")
    what = (f"the masks of {layers} layers ({grid})" if not samples
            else f"{layers} layers (masks of {grid}, and their audio)")
    check_fits(layers * (channels * bins * frames + samples) * 4, what, FEWER_LAYERS)


def check_fits(nbytes: int, what: str, advice: str) -> None:
    """Raise ``InsufficientMemoryError`` when ``nbytes`` exceed :data:`SHARE` of the
    memory free now; ``what`` names the output, ``advice`` what the user can change.
    When the registered reclaimers (undo histories) hold enough to make it fit, they
    free it first (the oldest steps go) and the output is not refused. Does nothing when the free memory cannot be told."""
    free = available_bytes()
    if free is None or nbytes <= SHARE * free:
        return
    if _reclaim(nbytes / SHARE - free):
        free = available_bytes()
        if free is None or nbytes <= SHARE * free:
            return
    raise InsufficientMemoryError(
        f"{what} would need {gigabytes(nbytes)} of memory, and {gigabytes(max(free, 0))} "
        f"is free: {advice}")
