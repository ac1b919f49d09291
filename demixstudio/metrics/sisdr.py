"""Scale-invariant signal-to-distortion ratio (SI-SDR).

Le Roux, Wisdom, Erdogan & Hershey, "SDR – half-baked or well done?",
ICASSP 2019. The estimate is projected onto the reference line::

    alpha  = <ŝ, s> / ||s||²
    SI-SDR = 10 log10 ||alpha s||² / ||ŝ - alpha s||²

Unlike BSS Eval, no filter is allowed, so a delayed or equalised estimate is
penalised; but any gain is forgiven, and the figure is cheap (one pass).
"""

from __future__ import annotations

import numpy as np

from demixstudio.errors import ParameterError
from demixstudio.metrics._common import as_float64_audio

__all__ = ["si_sdr"]


def si_sdr(reference, estimate, *, zero_mean: bool = False):
    """SI-SDR of one or several estimates, over the whole signal, in dB.

    Parameters
    ----------
    reference : np.ndarray or torch.Tensor [shape=(nb_channels, nb_samples) or (nb_sources, nb_channels, nb_samples)]
        True signal(s), real floating point.
    estimate : np.ndarray or torch.Tensor [shape=like ``reference``]
        Estimated signal(s), in the same order as ``reference`` (no
        permutation is searched). If its last axis is longer it is cropped to
        ``nb_samples``; if shorter, it is padded with zeros at the end.
    zero_mean : bool
        Remove each channel's mean from both signals first, as Le Roux et al.
        recommend for signals with a DC offset. Off by default: audio is
        nearly zero-mean and this keeps the figure comparable with BSS Eval.

    Returns
    -------
    float or np.ndarray [shape=(nb_sources,)]
        A float for 2-D input, an array for 3-D input. The channels of a
        source are scored together, as one image with one scale factor.
        ``+inf`` for an exact scaled copy; ``-inf`` for an estimate
        orthogonal to the reference, or silent.

    Raises
    ------
    ParameterError
        If the arrays are not 2-D or 3-D finite float arrays, if their shapes
        differ other than in length, or if a reference is silent (all zeros,
        after mean removal when ``zero_mean``): its SI-SDR is undefined.
    """
    ref = as_float64_audio(reference, "reference", (2, 3))
    est = as_float64_audio(estimate, "estimate", (2, 3))
    if est.shape[:-1] != ref.shape[:-1]:
        raise ParameterError(
            f"estimate has shape {est.shape} but reference has shape {ref.shape}; "
            "all axes but the last (samples) must match"
        )
    single = ref.ndim == 2
    if single:
        ref, est = ref[None], est[None]
    nb_samples = ref.shape[-1]
    if est.shape[-1] > nb_samples:
        est = est[..., :nb_samples]
    elif est.shape[-1] < nb_samples:
        est = np.pad(est, ((0, 0), (0, 0), (0, nb_samples - est.shape[-1])))
    if zero_mean:
        ref = ref - ref.mean(-1, keepdims=True)
        est = est - est.mean(-1, keepdims=True)

    ref = ref.reshape(ref.shape[0], -1)
    est = est.reshape(est.shape[0], -1)
    ref_energy = np.einsum("ij,ij->i", ref, ref)
    silent = np.flatnonzero(ref_energy == 0)
    if silent.size:
        where = "reference" if single else f"reference[{int(silent[0])}]"
        raise ParameterError(f"{where} is silent (all zeros); SI-SDR is undefined for it")
    alpha = np.einsum("ij,ij->i", est, ref) / ref_energy
    target = alpha[:, None] * ref
    target_energy = np.einsum("ij,ij->i", target, target)
    noise = est - target
    noise_energy = np.einsum("ij,ij->i", noise, noise)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = 10.0 * np.log10(target_energy / noise_energy)
    # 0/0 only when the estimate itself is silent: it recovered nothing.
    value = np.where(target_energy == 0, -np.inf, value)
    value = np.where((noise_energy == 0) & (target_energy > 0), np.inf, value)
    return float(value[0]) if single else value
