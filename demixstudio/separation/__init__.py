"""Separation methods: the contract, the registry and one module per method."""

from demixstudio.separation.base import (AudioHint, Hints, LayerProposal, Method, PaintHint,
                                         make_params, param, param_specs, params_to_dict)
from demixstudio.separation.registry import available, get_method, register

__all__ = ["AudioHint", "Hints", "LayerProposal", "Method", "PaintHint", "available",
           "get_method", "make_params", "param", "param_specs", "params_to_dict", "register"]
