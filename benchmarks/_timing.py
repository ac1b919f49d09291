"""Helpers shared by the benchmark scripts: best-of-N timing, a plain SNR and the
process's memory.

The scripts are run as files, so ``benchmarks/`` is on ``sys.path`` and they
import this module as ``_timing``.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Tuple

import numpy as np


def best_time(fn: Callable[[], Any], repeat: int) -> Tuple[float, Any]:
    """Run ``fn`` ``repeat`` times; (the fastest wall-clock seconds, the last result).

    The minimum, not the mean: on a shared machine the noise only ever adds time.
    """
    best, out = np.inf, None
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def snr(ref: np.ndarray, est: np.ndarray) -> float:
    """10 log10(‖ref‖² / ‖ref − est‖²) in dB, any matching shapes."""
    return float(10 * np.log10(np.sum(ref ** 2) / np.sum((ref - est) ** 2)))


def memory_mb() -> Tuple[float, float]:
    """(resident now, peak resident so far) of this process in MB: /proc/self/status's
    VmRSS (Linux; the peak where it cannot be read) and getrusage's ru_maxrss.

    A long benchmark reads both before its call and the peak after it: the peak
    above the resident memory at the call is what the call itself held."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        with open("/proc/self/status") as f:
            now = next((int(x.split()[1]) / 1024 for x in f if x.startswith("VmRSS:")), peak)
    except OSError:
        now = peak
    return now, peak
