"""Helpers shared by the benchmark scripts: best-of-N timing and a plain SNR.

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
