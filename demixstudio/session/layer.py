"""A layer: a part of the mixture, with the settings a DAW track has."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import numpy as np

from demixstudio.errors import ParameterError
from demixstudio.separation.base import Hints

# Distinct, readable on a dark background; layers take them in turn.
PALETTE = ("#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4",
           "#42d4f4", "#f032e6", "#bfef45", "#fabed4", "#469990", "#dcbeff")
RESIDUAL_COLOUR = "#808080"

# The settings a user edits, with their checks (used by SetLayerProperty).
EDITABLE = ("name", "colour", "gain_db", "pan", "mute", "solo")


@dataclass
class Provenance:
    """Which method made a layer, with which parameters, from what input."""

    method: str
    params: Dict[str, Any] = field(default_factory=dict)
    input: str = "mixture"  # "mixture" or the name of the layer it was separated from
    hints: Dict[str, Any] = field(default_factory=dict)  # a JSON-ready summary
    # The hint target the layer answers (LayerProposal.target), if any: it stays the
    # method's name for the source when the user renames the layer, so paint such as
    # "not:TARGET" made on the layer still reaches the method.
    target: Optional[str] = None
    # The name the method gave the layer (LayerProposal.name, before the session made it
    # unique or prefixed it with the input's name). A layer without a target is known to
    # the method by it (nmf-paint's rest group, nmf's "source 2"), so a rerun finds the
    # layer, and "not:NAME" paint reaches it, after a rename. None in projects written
    # before it was kept.
    proposal_name: Optional[str] = None
    # What the method reported beside the layer (its LayerProposal.extra: a DUET
    # histogram, an ADRess azimugram, iteration counts). Kept for the editor to show
    # while the session is open; not written to project files (it can be recomputed).
    analysis: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # The recordings (and time ranges) the run was given, of the kinds its method reads
    # (session.KEPT_KINDS; paint is the session's own). Kept while the session is open,
    # not written to project files (recordings are not part of a project): a rerun given
    # none of a kind uses these, so nmf-supervised re-run with new parameters still has
    # its examples.
    run_hints: Optional[Hints] = field(default=None, compare=False, repr=False)

    @property
    def name_in_run(self) -> Optional[str]:
        """The name the method knows the layer by: its target, else the name it proposed
        the layer under (None when neither is known: provenance from an older project)."""
        return self.target if self.target is not None else self.proposal_name

    def as_dict(self) -> Dict[str, Any]:
        d = {"method": self.method, "params": self.params, "input": self.input,
             "hints": self.hints}
        if self.target is not None:
            d["target"] = self.target
        if self.proposal_name is not None:
            d["proposal_name"] = self.proposal_name
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Provenance":
        return cls(method=str(d["method"]), params=dict(d.get("params", {})),
                   input=str(d.get("input", "mixture")), hints=dict(d.get("hints", {})),
                   target=None if d.get("target") is None else str(d["target"]),
                   proposal_name=(None if d.get("proposal_name") is None
                                  else str(d["proposal_name"])))

    def describe(self) -> str:
        ps = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.method}({ps}) on {self.input}"


def unique_name(name: str, taken: set) -> str:
    """``name``, or ``name 2``, ``name 3``... whichever is first not in ``taken``."""
    if name not in taken:
        return name
    i = 2
    while f"{name} {i}" in taken:
        i += 1
    return f"{name} {i}"


def check_setting(name: str, value: Any) -> Any:
    """Validate and normalise one editable setting; raise ParameterError if bad."""
    if name == "name":
        value = str(value).strip()
        if not value:
            raise ParameterError("a layer name must not be empty")
        return value
    if name == "colour":
        v = str(value)
        if len(v) != 7 or v[0] != "#" or any(ch not in "0123456789abcdefABCDEF" for ch in v[1:]):
            raise ParameterError(f"colour {value!r} must look like #rrggbb")
        return v.lower()
    if name == "gain_db":
        v = float(value)
        if not np.isfinite(v) or not -120.0 <= v <= 24.0:
            raise ParameterError(f"gain {value!r} dB must be between -120 and +24")
        return v
    if name == "pan":
        v = float(value)
        if not np.isfinite(v) or not -1.0 <= v <= 1.0:
            raise ParameterError(f"pan {value!r} must be between -1 (left) and +1 (right)")
        return v
    if name in ("mute", "solo"):
        # Only a real switch: bool("false") is True, so a string (a hand-edited
        # project's "false") must be refused, not read as on. 0 and 1 are what
        # other tools write for booleans.
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        if isinstance(value, (int, np.integer)) and value in (0, 1):
            return bool(value)
        raise ParameterError(f"{name} {value!r} must be true or false")
    raise ParameterError(f"{name!r} is not a layer setting; settings: {', '.join(EDITABLE)}")


class Layer:
    """One layer of a session.

    Content is exactly one of:
    mask : float32 (channels or 1, bins, frames), weights on the mixture's STFT
        (the session's StftConfig); a 1-channel mask applies to every channel.
    waveform : float32 (channels, samples), same shape as the mixture.
    The residual layer has neither: its audio is derived by the session as the
    mixture minus every other layer, which keeps the books balanced.
    """

    def __init__(self, name: str, *, mask: Optional[np.ndarray] = None,
                 waveform: Optional[np.ndarray] = None, colour: str = PALETTE[0],
                 gain_db: float = 0.0, pan: float = 0.0, mute: bool = False, solo: bool = False,
                 provenance: Optional[Provenance] = None, residual: bool = False,
                 layer_id: Optional[str] = None) -> None:
        if residual and (mask is not None or waveform is not None):
            raise ValueError("the residual layer's content is derived, not given")
        if not residual and (mask is None) == (waveform is None):
            raise ValueError("a layer holds exactly one of mask or waveform")
        self.id = layer_id or uuid.uuid4().hex[:12]
        self.name = check_setting("name", name)
        self.colour = check_setting("colour", colour)
        self.gain_db = check_setting("gain_db", gain_db)
        self.pan = check_setting("pan", pan)
        self.mute = check_setting("mute", mute)
        self.solo = check_setting("solo", solo)
        self.provenance = provenance
        self.is_residual = residual
        self.mask = None if mask is None else np.asarray(mask, dtype=np.float32)
        self.waveform = None if waveform is None else np.asarray(waveform, dtype=np.float32)

    @property
    def kind(self) -> str:
        return "residual" if self.is_residual else ("mask" if self.mask is not None else "waveform")

    def settings(self) -> Dict[str, Any]:
        return {k: getattr(self, k) for k in EDITABLE}

    def __repr__(self) -> str:
        return f"Layer({self.name!r}, {self.kind}, gain={self.gain_db:+.1f} dB, pan={self.pan:+.2f})"
