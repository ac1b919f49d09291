"""The torch device a computation runs on, shared by the torch methods and the metrics.

``auto`` picks CUDA, then Apple's MPS, then the CPU; a named device is
checked to exist, so asking for a GPU that is not there is a one-line
``ParameterError`` rather than a torch traceback deep inside a job.
"""

from __future__ import annotations

from typing import Union

import torch

from demixstudio.errors import ParameterError

#: The device names a method's ``device`` parameter accepts.
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def pick_device(device: Union[str, torch.device, None] = "auto", *,
                mps: bool = True) -> torch.device:
    """The torch device for ``device``.

    Parameters
    ----------
    device : "auto" (or None), "cpu", "cuda", "cuda:N", "mps", or a torch.device
    mps : whether ``auto`` may pick Apple's MPS (methods that need float64,
        which MPS lacks, pass False; they still accept an explicit "mps" only
        if they list it in their choices)

    Returns
    -------
    torch.device

    Raises
    ------
    ParameterError
        An unknown name, or a device this machine does not have.
    """
    if device is None or (isinstance(device, str) and device.lower() == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps and _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device.lower() if isinstance(device, str) else device)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in DEVICE_CHOICES:
        raise ParameterError(
            f"device={device!r} is not one of {', '.join(DEVICE_CHOICES)}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError("device='cuda' but torch sees no CUDA GPU; use auto or cpu")
    if dev.type == "mps" and not _mps_available():
        raise ParameterError("device='mps' but this torch has no MPS; use auto or cpu")
    return dev


__all__ = ["DEVICE_CHOICES", "pick_device"]
