"""The registry of separation methods, by name.

Built-in methods live in their own modules; they are imported here on first
use so that ``demixstudio methods`` and the GUI see them all without every
caller importing every method.
"""

from __future__ import annotations

import importlib
from typing import Dict, List, Type

from demixstudio.errors import ParameterError
from demixstudio.separation.base import Method

# Modules that define built-in methods (each calls ``register`` on import).
BUILTIN_MODULES = (
    "demixstudio.separation.decorrelation",
    "demixstudio.separation.ica",
    "demixstudio.separation.hpss",
    "demixstudio.separation.repet",
    "demixstudio.separation.nmf.unsupervised",
    "demixstudio.separation.nmf.supervised",
    "demixstudio.separation.nmf.semisupervised",
    "demixstudio.separation.nmf.hum",
    "demixstudio.separation.nmf.paint",
    "demixstudio.separation.nmf.repair",
    "demixstudio.separation.projet",
    "demixstudio.separation.ilrma",
    "demixstudio.separation.duet",
    "demixstudio.separation.adress",
    "demixstudio.separation.dnn.method",
)

_METHODS: Dict[str, Type[Method]] = {}
_loaded = False


def register(cls: Type[Method]) -> Type[Method]:
    """Class decorator: make ``cls`` available as ``--method cls.name``."""
    if not cls.name:
        raise TypeError(f"{cls.__qualname__} has no name")
    if cls.name in _METHODS and _METHODS[cls.name] is not cls:
        raise TypeError(f"method name {cls.name!r} is registered twice")
    _METHODS[cls.name] = cls
    return cls


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        for mod in BUILTIN_MODULES:
            importlib.import_module(mod)
        _loaded = True


def available() -> List[str]:
    """Names of every registered method, sorted."""
    _load_builtins()
    return sorted(_METHODS)


def get_method(name: str) -> Method:
    """A fresh instance of the method called ``name``."""
    _load_builtins()
    try:
        return _METHODS[name]()
    except KeyError:
        raise ParameterError(
            f"unknown method {name!r}; available: {', '.join(available())}") from None
