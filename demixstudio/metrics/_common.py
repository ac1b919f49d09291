"""Helpers shared by the metric modules: device choice and input checks.

Kept private: the public entry points validate their own arguments with these
so every metric names bad values the same way.
"""

from __future__ import annotations

import numpy as np
import torch

from demixstudio.devices import pick_device
from demixstudio.errors import ParameterError


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Turn the ``device`` argument of a metric into a ``torch.device``.

    Parameters
    ----------
    device : str, torch.device or None
        ``None`` or ``"auto"`` picks CUDA when it is available and the CPU
        otherwise (never MPS); "cpu", "cuda", "cuda:N" name one
        (:func:`demixstudio.devices.pick_device`).

    Returns
    -------
    torch.device

    Raises
    ------
    ParameterError
        If the name is not a device, the machine does not have it, or it is a
        device that cannot hold float64 tensors (Apple MPS): the metrics solve
        ill-conditioned least-squares systems and need double precision to
        agree with the reference implementation.
    """
    # Refused by name first, so the reason given is the real one on any machine.
    if str(device).lower().startswith("mps"):
        raise ParameterError(
            f"device={device!r}: the metrics need float64, which MPS does not support; "
            "use 'cpu' instead"
        )
    return pick_device(device, mps=False)


def as_float64_audio(x, name: str, ndims: tuple[int, ...]) -> np.ndarray:
    """Check one audio argument and return it as a C-contiguous float64 array.

    Parameters
    ----------
    x : np.ndarray or torch.Tensor
        Real floating-point samples.
    name : str
        Argument name, used in error messages.
    ndims : tuple of int
        Accepted numbers of dimensions.

    Returns
    -------
    np.ndarray [shape=x.shape, dtype=float64]

    Raises
    ------
    ParameterError
        If ``x`` is not a float array, has the wrong number of dimensions,
        is empty, or holds NaN or infinite values.
    """
    if isinstance(x, torch.Tensor):
        if not x.is_floating_point():
            raise ParameterError(f"{name} has dtype {x.dtype}; a floating-point tensor is required")
        x = x.detach().to("cpu", torch.float64).numpy()
    if not isinstance(x, np.ndarray):
        raise ParameterError(
            f"{name} is a {type(x).__name__}; a numpy float array or torch tensor is required"
        )
    if not np.issubdtype(x.dtype, np.floating):
        raise ParameterError(f"{name} has dtype {x.dtype}; a floating-point array is required")
    if x.ndim not in ndims:
        want = " or ".join(str(n) for n in ndims)
        raise ParameterError(f"{name} has shape {x.shape}; {want} dimensions are required")
    if x.size == 0:
        raise ParameterError(f"{name} has shape {x.shape}; it holds no samples")
    if not np.all(np.isfinite(x)):
        raise ParameterError(f"{name} holds NaN or infinite values; all samples must be finite")
    return np.ascontiguousarray(x, dtype=np.float64)
