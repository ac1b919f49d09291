"""The architectures, by name, and how to rebuild one from its hyper-parameters."""

from __future__ import annotations

from typing import Any, Dict, Type

from demixstudio.errors import ParameterError
from demixstudio.separation.dnn.models.base import StemModel
from demixstudio.separation.dnn.models.mmdensenet import MMDenseNet
from demixstudio.separation.dnn.models.umx import OpenUnmix
from demixstudio.separation.dnn.models.waveunet import WaveUNet

ARCHITECTURES: Dict[str, Type[StemModel]] = {
    "mmdensenet": MMDenseNet,
    "umx": OpenUnmix,
    "waveunet": WaveUNet,
}


def build_model(arch: str, hparams: Dict[str, Any]) -> StemModel:
    """A fresh (untrained) model of ``arch`` with ``hparams`` (see each class's ``__init__``)."""
    try:
        cls = ARCHITECTURES[arch]
    except KeyError:
        raise ParameterError(
            f"unknown architecture {arch!r}; use one of {', '.join(ARCHITECTURES)}") from None
    # Hyper-parameters often come from a manifest a user may have edited: each
    # class checks the values; the shape of the whole is checked here.
    if not isinstance(hparams, dict) or not all(isinstance(k, str) for k in hparams):
        raise ParameterError(f"hyper-parameters for {arch} must be a JSON object of "
                             f"name: value, not {type(hparams).__name__}")
    try:
        return cls(**hparams)
    except TypeError as exc:  # an unknown or missing keyword
        raise ParameterError(f"bad hyper-parameters for {arch}: {exc}") from None


__all__ = ["ARCHITECTURES", "MMDenseNet", "OpenUnmix", "StemModel", "WaveUNet", "build_model"]
