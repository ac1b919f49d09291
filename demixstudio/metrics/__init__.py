"""Separation quality metrics: BSS Eval v4 (SDR, SIR, SAR, ISR) and SI-SDR.

Everything heavy runs in torch (float64) on the device you pass, CPU or CUDA.

>>> from demixstudio.metrics import bss_eval, si_sdr
>>> res = bss_eval(references, estimates, sr)        # doctest: +SKIP
>>> res.sdr, res.permutation                          # doctest: +SKIP
"""

from demixstudio.metrics.bsseval import BssEvalResult, bss_eval
from demixstudio.metrics.sisdr import si_sdr

__all__ = ["BssEvalResult", "bss_eval", "si_sdr"]
