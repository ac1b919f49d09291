"""The method contract: typed parameters, hints, layer proposals.

A method is configuration plus one call::

    proposals = method.separate(mix, sr, params, hints, ctx)

``params`` is a frozen dataclass whose fields are declared with :func:`param`,
so each field carries a label, a range and help text. The CLI (``--set
key=value``) and the GUI (a generated form) read that metadata and need no
per-method code. A method holds no signal and no state between calls.
"""

from __future__ import annotations

import abc
import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple

import numpy as np

from demixstudio.errors import ParameterError
from demixstudio.jobs.context import JobContext
from demixstudio.values import whole

# --------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------


def param(
    default: Any,
    *,
    label: str,
    help: str,
    min: Optional[float] = None,
    max: Optional[float] = None,
    choices: Optional[Sequence[Any]] = None,
    advanced: bool = False,
) -> Any:
    """Declare a method parameter: a dataclass field with UI/CLI metadata.

    ``min``/``max`` bound numbers (and each element of a tuple of numbers);
    ``choices`` lists the accepted values of a string parameter; ``advanced``
    marks a setting few users change (the engine's divergence, tolerance,
    device...), which the editor keeps folded away under the method's own.
    """
    meta = {"label": label, "help": help, "min": min, "max": max,
            "choices": tuple(choices) if choices is not None else None,
            "advanced": bool(advanced)}
    if isinstance(default, (list, dict, np.ndarray)):
        raise TypeError("parameter defaults must be immutable (use a tuple)")
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ParamSpec:
    """What a front end needs to know about one parameter."""

    name: str
    type: str  # "int", "float", "bool", "str", "int-tuple", "float-tuple"
    default: Any
    label: str
    help: str
    min: Optional[float]
    max: Optional[float]
    choices: Optional[Tuple[Any, ...]]
    advanced: bool = False

    def as_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        if isinstance(d["default"], tuple):
            d["default"] = list(d["default"])
        if d["choices"] is not None:
            d["choices"] = list(d["choices"])
        return d


def _type_name(tp: Any) -> str:
    if tp in (int, "int"):
        return "int"
    if tp in (float, "float"):
        return "float"
    if tp in (bool, "bool"):
        return "bool"
    if tp in (str, "str"):
        return "str"
    origin = typing.get_origin(tp)
    if origin is tuple:
        args = typing.get_args(tp)
        if args and args[0] is int:
            return "int-tuple"
        return "float-tuple"
    raise TypeError(f"unsupported parameter type {tp!r}")


def param_specs(params_cls: type) -> List[ParamSpec]:
    """The parameters of a params dataclass, in declaration order."""
    hints = typing.get_type_hints(params_cls)
    specs = []
    for f in dataclasses.fields(params_cls):
        m = f.metadata
        specs.append(ParamSpec(
            name=f.name, type=_type_name(hints[f.name]), default=f.default,
            label=m.get("label", f.name), help=m.get("help", ""),
            min=m.get("min"), max=m.get("max"), choices=m.get("choices"),
            advanced=bool(m.get("advanced", False))))
    return specs


#: Most values a tuple parameter may hold. A range such as ``0:1000000000``
#: would otherwise be expanded in full and exhaust memory before any check.
#: A range is first held against the parameter's declared ``min``/``max``
#: (refused at once if it leaves them), then against this cap.
MAX_TUPLE_VALUES = 4096
#: Largest magnitude of an int parameter: what numpy's int64 holds.
INT_LIMIT = 2 ** 63 - 1


def _expand_range(spec: ParamSpec, text: str, item: str, room: int) -> range:
    """The ``range`` of one ``a:b`` or ``a:b:step`` item of an int-tuple, checked
    against the spec's bounds and ``room`` (values still allowed) before it is
    expanded, so a huge range costs nothing."""
    fields = item.split(":")
    if len(fields) > 3:
        raise ParameterError(f"{spec.name}={text!r}: range {item.strip()!r} must be a:b or "
                             "a:b:step (b excluded, as in Python)")
    bounds = [int(v) for v in fields]  # ValueError: reported by the caller
    if len(bounds) == 3 and bounds[2] == 0:
        raise ParameterError(f"{spec.name}={text!r}: range {item.strip()!r} has a step of 0")
    r = range(*bounds)
    # Its length and ends by arithmetic: len() and r[-1] overflow past sys.maxsize.
    n = max(0, -(-(r.stop - r.start) // r.step))
    if n == 0:
        raise ParameterError(f"{spec.name}={text!r}: range {item.strip()!r} is empty "
                             "(b is excluded, as in Python)")
    last = r.start + (n - 1) * r.step
    low, high = min(r.start, last), max(r.start, last)
    if spec.min is not None and low < spec.min:
        raise ParameterError(f"{spec.name}={text!r}: range {item.strip()!r} goes below the "
                             f"minimum {spec.min}")
    if spec.max is not None and high > spec.max:
        raise ParameterError(f"{spec.name}={text!r}: range {item.strip()!r} goes above the "
                             f"maximum {spec.max}")
    if n > room:
        raise ParameterError(f"{spec.name}={text!r} holds more than {MAX_TUPLE_VALUES} values")
    return r


def _parse_value(spec: ParamSpec, text: str) -> Any:
    t = spec.type
    try:
        if t == "int":
            return int(text)
        if t == "float":
            return float(text)
        if t == "bool":
            low = text.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if t == "str":
            return text
        parts = [p for p in text.replace(";", ",").split(",") if p.strip()]
        if len(parts) > MAX_TUPLE_VALUES:
            raise ParameterError(f"{spec.name}={text[:40]!r}... holds more than "
                                 f"{MAX_TUPLE_VALUES} values")
        if t == "int-tuple":
            out: List[int] = []
            for p in parts:
                if ":" in p:  # a range a:b or a:b:step, b excluded, as in Python
                    out.extend(_expand_range(spec, text, p, MAX_TUPLE_VALUES - len(out)))
                else:
                    out.append(int(p))
                if len(out) > MAX_TUPLE_VALUES:
                    raise ParameterError(f"{spec.name}={text!r} holds more than "
                                         f"{MAX_TUPLE_VALUES} values")
            return tuple(out)
        return tuple(float(p) for p in parts)
    except ParameterError:
        raise  # already says what is wrong (it is a ValueError too)
    except ValueError:
        kind = {"int-tuple": "a comma-separated list of integers (ranges a:b allowed)",
                "float-tuple": "a comma-separated list of numbers"}.get(t, f"a value of type {t}")
        raise ParameterError(f"{spec.name}={text!r} is not {kind}") from None


def _as_int(spec: ParamSpec, v: Any) -> int:
    """``v`` as an int, or ``ParameterError``: bools are refused (True is no
    count), and a float only if it is whole (3.0 from a JSON file is 3, 2.5 is
    not), since methods use ints as sizes and indices."""
    if isinstance(v, (float, np.floating)) and not np.isfinite(v):
        raise ParameterError(f"{spec.name}={v!r} must be finite")
    out = whole(v)
    if out is None:
        raise ParameterError(f"{spec.name}={v!r} is not a whole number")
    if abs(out) > INT_LIMIT:  # numpy would raise OverflowError deep in a method
        raise ParameterError(f"{spec.name}={v!r} is too large")
    return out


def _as_float(spec: ParamSpec, v: Any) -> float:
    """``v`` as a finite float, or ``ParameterError`` (bools and text are refused)."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer,
                                                                np.floating)):
        raise ParameterError(f"{spec.name}={v!r} is not a number")
    try:
        out = float(v)
    except OverflowError:  # an int beyond the float range
        raise ParameterError(f"{spec.name}={v!r} is out of range") from None
    if not np.isfinite(out):
        raise ParameterError(f"{spec.name}={v!r} must be finite")
    return out


def check_type(spec: ParamSpec, value: Any) -> Any:
    """``value`` in the spec's declared type, or ``ParameterError`` naming the parameter.

    Values that are not CLI strings (the GUI's form, a project file, a
    script's dict) reach a method as they are, so a wrong type must be caught
    here: ``margin='abc'`` or ``components=2.5`` would otherwise fail deep in
    numpy. Lossless conversions are made (an int for a float, a whole float or
    a numpy integer for an int, a list for a tuple).
    """
    t = spec.type
    if t == "int":
        return _as_int(spec, value)
    if t == "float":
        return _as_float(spec, value)
    if t == "bool":
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        raise ParameterError(f"{spec.name}={value!r} is not true or false")
    if t == "str":
        if isinstance(value, str):
            return value
        raise ParameterError(f"{spec.name}={value!r} is not text")
    # Tuples: a list or tuple of numbers (JSON gives lists).
    if not isinstance(value, (tuple, list)):
        kind = "integers" if t == "int-tuple" else "numbers"
        raise ParameterError(f"{spec.name}={value!r} is not a list of {kind}")
    if len(value) > MAX_TUPLE_VALUES:
        raise ParameterError(f"{spec.name} holds {len(value)} values; at most "
                             f"{MAX_TUPLE_VALUES} are allowed")
    conv = _as_int if t == "int-tuple" else _as_float
    return tuple(conv(spec, v) for v in value)


def validate_value(spec: ParamSpec, value: Any) -> Any:
    """Raise ``ParameterError`` if ``value`` is not of the spec's type or is outside
    its range or choices; returns the value in the declared type (see ``check_type``)."""
    value = check_type(spec, value)
    values = value if isinstance(value, tuple) else (value,)
    if spec.type.endswith("tuple") and len(values) == 0 and spec.default != ():
        raise ParameterError(f"{spec.name} must not be empty")
    for v in values:
        if spec.choices is not None and v not in spec.choices:
            raise ParameterError(
                f"{spec.name}={v!r} is not one of {', '.join(map(str, spec.choices))}")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if spec.min is not None and v < spec.min:
                raise ParameterError(f"{spec.name}={v!r} is below the minimum {spec.min}")
            if spec.max is not None and v > spec.max:
                raise ParameterError(f"{spec.name}={v!r} is above the maximum {spec.max}")
    return value


def make_params(params_cls: type, values: Optional[Dict[str, Any]] = None,
                strings: Optional[Dict[str, str]] = None) -> Any:
    """Build and validate a params instance from typed values and/or strings.

    ``strings`` are the ``--set key=value`` texts of the CLI; ``values`` are
    already-typed values (the GUI's form, a project file), held to the
    declared type (``check_type``). Unknown names raise ``ParameterError``
    listing the accepted ones.
    """
    specs = {s.name: s for s in param_specs(params_cls)}
    kwargs: Dict[str, Any] = {}
    for src, parse in ((values or {}, False), (strings or {}, True)):
        for k, v in src.items():
            if k not in specs:
                raise ParameterError(
                    f"unknown parameter {k!r}; this method takes: {', '.join(specs) or 'none'}")
            if parse:
                v = _parse_value(specs[k], str(v))
            kwargs[k] = v
    for k, v in kwargs.items():
        kwargs[k] = validate_value(specs[k], v)
    return params_cls(**kwargs)


def params_to_dict(params: Any) -> Dict[str, Any]:
    """JSON-ready dict of a params instance (tuples become lists)."""
    return {k: (list(v) if isinstance(v, tuple) else v)
            for k, v in dataclasses.asdict(params).items()}


# --------------------------------------------------------------------------
# Hints
# --------------------------------------------------------------------------


@dataclass
class PaintHint:
    """Painted time–frequency weights for one target.

    Either ``mask`` on a grid given by ``times`` (s, shape (frames,)) and
    ``freqs`` (Hz, shape (bins,)) — mask shape (bins, frames), values in
    [0, 1] — or a list of ``rects`` ``(t0_s, t1_s, f0_hz, f1_hz, strength)``.
    :meth:`on_grid` puts either onto a method's own STFT grid.
    """

    mask: Optional[np.ndarray] = None
    times: Optional[np.ndarray] = None
    freqs: Optional[np.ndarray] = None
    rects: Tuple[Tuple[float, float, float, float, float], ...] = ()
    source: str = ""  # the file it was read from, for provenance ("" if painted in the app)

    def check(self, where: str = "") -> None:
        """Check that each rectangle is five finite numbers with a strength in [0, 1],
        and that a ``mask`` lies on a grid: ``times`` and ``freqs`` non-empty, 1-D,
        finite and strictly increasing, the mask of shape (len(freqs), len(times)),
        finite and in [0, 1]. Raises ParameterError saying what is wrong, after
        ``where`` (default: "paint hint" and the file it came from)."""
        where = where or " ".join(filter(None, ["paint hint", self.source]))
        for r in self.rects:
            r = tuple(r) if isinstance(r, (tuple, list, np.ndarray)) else (r,)
            if len(r) != 5:
                raise ParameterError(f"{where}: a rectangle is (t0_s, t1_s, f0_hz, f1_hz, "
                                     f"strength); got {r!r}")
            if not np.isfinite(np.asarray(r, dtype=np.float64)).all():
                raise ParameterError(f"{where}: paint rectangle {r} holds non-finite values")
            if not 0 <= r[4] <= 1:
                raise ParameterError(f"{where}: strength {r[4]} is not in [0, 1]")
        if self.mask is None:
            return
        for name, axis in (("times", self.times), ("freqs", self.freqs)):
            a = np.asarray(axis, dtype=np.float64) if axis is not None else np.zeros((0,))
            if a.ndim != 1:
                raise ParameterError(f"{where}: {name} must be a 1-D array, got shape {a.shape}")
            if a.size == 0:
                raise ParameterError(f"{where}: {name} is empty")
            if not np.isfinite(a).all():
                raise ParameterError(f"{where}: {name} holds non-finite values (NaN or inf)")
            if np.any(np.diff(a) <= 0):
                raise ParameterError(f"{where}: {name} must be strictly increasing")
        m = np.asarray(self.mask)
        expected = (np.size(self.freqs), np.size(self.times))
        if m.shape != expected:
            raise ParameterError(
                f"{where}: mask has shape {m.shape}, expected (len(freqs), len(times)) = {expected}")
        if not np.isfinite(m).all():
            # NaN would pass np.clip and turn every layer's mask into NaN.
            raise ParameterError(f"{where}: mask holds non-finite values (NaN or inf)")
        if m.size and (m.min() < 0 or m.max() > 1):
            raise ParameterError(f"{where}: mask values must be in [0, 1]; they run from "
                                 f"{m.min():.3g} to {m.max():.3g}")

    def on_grid(self, times: np.ndarray, freqs: np.ndarray) -> np.ndarray:
        """Weights on the grid ``freqs`` × ``times``: float32 (bins, frames) in [0, 1].

        ``times`` (frames,) may be one block of a longer frame grid; ``freqs``
        (bins,) is the whole bin grid. A mask is interpolated linearly along
        each axis within its own extent and is 0 outside it. Along an axis
        where it has a single point (one frame, or one frequency), its extent
        is half a grid step either side of that point, the step being that of
        the grid given here: it covers the nearest frame or bin (both, at a tie).
        The frame step of a one-frame ``times`` block is read from ``freqs`` by
        the program's STFT convention, hop = n_fft / 4 (audio/stft.py).
        """
        times = np.asarray(times, dtype=np.float64)
        freqs = np.asarray(freqs, dtype=np.float64)
        out = np.zeros((freqs.size, times.size), dtype=np.float32)
        self.check()
        if self.mask is not None:
            m = np.asarray(self.mask, dtype=np.float64)
            bin_step = _grid_step(freqs)
            if times.size >= 2:
                frame_step = _grid_step(times)
            else:
                frame_step = 1.0 / (4.0 * bin_step) if bin_step > 0 else 0.0
            f_lo, f_hi, wf_lo, wf_hi = _axis_weights(
                np.asarray(self.freqs, dtype=np.float64), freqs, bin_step)
            t_lo, t_hi, wt_lo, wt_hi = _axis_weights(
                np.asarray(self.times, dtype=np.float64), times, frame_step)
            # Only the rows and columns inside the mask's extent: paint is usually small.
            rows = np.flatnonzero((wf_lo > 0) | (wf_hi > 0))
            cols = np.flatnonzero((wt_lo > 0) | (wt_hi > 0))
            if rows.size and cols.size:
                block = np.zeros((rows.size, cols.size))
                for fi, wf in ((f_lo[rows], wf_lo[rows]), (f_hi[rows], wf_hi[rows])):
                    for ti, wt in ((t_lo[cols], wt_lo[cols]), (t_hi[cols], wt_hi[cols])):
                        block += wf[:, None] * wt[None, :] * m[np.ix_(fi, ti)]
                out[np.ix_(rows, cols)] = block
        for t0, t1, f0, f1, s in self.rects:
            sel_t = (times >= min(t0, t1)) & (times <= max(t0, t1))
            sel_f = (freqs >= min(f0, f1)) & (freqs <= max(f0, f1))
            block = out[np.ix_(sel_f, sel_t)]
            out[np.ix_(sel_f, sel_t)] = np.maximum(block, float(s))
        return np.clip(out, 0.0, 1.0)


def _grid_step(grid: np.ndarray) -> float:
    """The spacing of a uniform grid (n,); 0 for a grid of fewer than two points."""
    return float(np.median(np.diff(grid))) if grid.size >= 2 else 0.0


def _axis_weights(src: np.ndarray, dst: np.ndarray, step: float
                  ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Linear interpolation from the points ``src`` (n,) increasing, onto ``dst`` (m,).

    Returns ``lo, hi`` int (m,) and ``w_lo, w_hi`` float64 (m,): the value at
    ``dst[j]`` is ``w_lo[j] * v[lo[j]] + w_hi[j] * v[hi[j]]``. Both weights are 0
    outside ``[src[0], src[-1]]``; a lone point (n = 1) covers ``dst`` within
    ``step / 2`` of it, with weight 1. At a point of ``src`` the weights are
    exactly 1 and 0, so a mask on the same grid comes back unchanged.
    """
    n = src.size
    if n == 1:
        inside = np.abs(dst - src[0]) <= step / 2
        zero = np.zeros(dst.size, dtype=np.intp)
        return zero, zero, inside.astype(np.float64), np.zeros(dst.size)
    lo = np.clip(np.searchsorted(src, dst, side="right") - 1, 0, n - 2)
    hi = lo + 1
    frac = (dst - src[lo]) / (src[hi] - src[lo])
    inside = (dst >= src[0]) & (dst <= src[-1])
    return lo, hi, np.where(inside, 1.0 - frac, 0.0), np.where(inside, frac, 0.0)


@dataclass
class AudioHint:
    """An example recording: ``audio`` float32 (channels, samples) at ``sr`` Hz.

    When ``audio`` holds excerpts of a longer recording (a long file sampled as it
    was read: ``hintfiles.load_recording``), ``joins`` are the samples at which each
    excerpt after the first starts, and ``whole_s`` is the whole recording's
    duration (s). The excerpts are analysed apart: no frame spans a join."""

    audio: np.ndarray
    sr: int
    source: str = ""  # where it came from (a path), for provenance
    joins: Tuple[int, ...] = ()
    whole_s: Optional[float] = None

    def pieces(self) -> List[np.ndarray]:
        """The excerpts ``audio`` holds, as views split at ``joins`` (``[audio]`` when
        it holds a whole recording, or is not (channels, samples))."""
        a = np.asarray(self.audio)
        if a.ndim != 2 or not self.joins:
            return [a]
        edges = [0, *(int(j) for j in self.joins), a.shape[1]]
        return [a[:, t0:t1] for t0, t1 in zip(edges, edges[1:])]


@dataclass
class Hints:
    """What the user gave besides the mixture, keyed by target name.

    paint : target -> PaintHint
    examples : target -> clean example recordings of that target
    hums : target -> vocalized imitations (hummed, sung, whistled)
    time_ranges : target -> list of (t0_s, t1_s) where the target is active
    previous : when a run is being refined, the model state its method reported
        with its layers (``LayerProposal.extra["state"]``), so that the method can
        continue from the separation the user corrected instead of starting over
        (the session fills it in; a method ignores a state that is not its own
        or does not fit the new run). Not a target.
    """

    paint: Dict[str, PaintHint] = field(default_factory=dict)
    examples: Dict[str, List[AudioHint]] = field(default_factory=dict)
    hums: Dict[str, List[AudioHint]] = field(default_factory=dict)
    time_ranges: Dict[str, List[Tuple[float, float]]] = field(default_factory=dict)
    previous: Dict[str, Any] = field(default_factory=dict)

    def targets(self) -> List[str]:
        """Every hinted target name, in first-mention order."""
        seen: Dict[str, None] = {}
        for d in (self.paint, self.examples, self.hums, self.time_ranges):
            for k in d:
                seen.setdefault(k, None)
        return list(seen)

    def is_empty(self) -> bool:
        return not self.targets()


# --------------------------------------------------------------------------
# Proposals and methods
# --------------------------------------------------------------------------


@dataclass
class LayerProposal:
    """One layer a method proposes.

    Exactly one of:
    mask : float32 (channels or 1, bins, frames), weights on the STFT of the
        method's input in the program's convention (``audio.stft``); a single
        channel mask applies to every channel.
    waveform : float32 (channels, samples), same channels and length as the input.

    ``target`` is the hinted target this layer answers, if any; ``extra`` is
    data for the editor (a histogram, an azimugram), never needed to render;
    ``extra["note"]``, if there, is one sentence the user should read about the
    run (what a search decided), shown with its result.
    """

    name: str
    method: str
    params: Dict[str, Any]
    mask: Optional[np.ndarray] = None
    waveform: Optional[np.ndarray] = None
    target: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.mask is None) == (self.waveform is None):
            raise ValueError("a LayerProposal holds exactly one of mask or waveform")


class Method(abc.ABC):
    """Base class of separation methods; subclasses are registered by name.

    Class attributes
    ----------------
    name : the registry key (``--method NAME``)
    title : a short human name
    summary : one line for ``demixstudio methods``
    references : the papers the implementation follows
    Params : the frozen params dataclass
    min_channels, max_channels : what input the method takes (None = any)
    hint_kinds : which of the :class:`Hints` the method reads ("paint", "examples",
        "hums"); the editor shows the controls for those only
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    references: ClassVar[Tuple[str, ...]] = ()
    Params: ClassVar[type]
    min_channels: ClassVar[int] = 1
    max_channels: ClassVar[Optional[int]] = None
    hint_kinds: ClassVar[Tuple[str, ...]] = ()

    @abc.abstractmethod
    def separate(self, mix: np.ndarray, sr: int, params: Any, hints: Hints,
                 ctx: JobContext) -> List[LayerProposal]:
        """Separate ``mix`` float32 (channels, samples) at ``sr`` Hz into proposals."""

    def check_input(self, mix: np.ndarray) -> None:
        """Raise ``ParameterError`` unless ``mix`` is (channels, samples) audio this
        method can take: a real-valued NumPy array of two dimensions, with samples,
        not laid out as (samples, channels), with a channel count the method takes,
        no NaN or inf, not silent (every sample zero or next to it: a method's scale
        would be zero and its masks undefined; run on a muted layer or an empty
        recording, this says so instead of making NaN layers), and no sample beyond
        :data:`MAX_PEAK` (the factorisations run in float32, where such levels overflow
        into NaN layers)."""
        if not isinstance(mix, np.ndarray):
            raise ParameterError(f"the input must be a NumPy array (channels, samples); got "
                                 f"{type(mix).__name__}")
        problem = layout_problem(mix)
        if problem:
            raise ParameterError(f"the input {problem}")
        c = mix.shape[0]
        if c < self.min_channels or (self.max_channels is not None and c > self.max_channels):
            want = (f"{self.min_channels}" if self.max_channels == self.min_channels
                    else f"at least {self.min_channels}" if self.max_channels is None
                    else f"{self.min_channels} to {self.max_channels}")
            raise ParameterError(f"method {self.name!r} takes {want} channels; the input has {c}")
        # max and min carry NaN through and make no full-size temporary.
        hi, lo = float(mix.max()), float(mix.min())
        if not (np.isfinite(hi) and np.isfinite(lo)):
            raise ParameterError("the input holds NaN or infinite samples (a damaged file or "
                                 "an effect that blew up): nothing to separate")
        peak = max(hi, -lo)
        if peak > MAX_PEAK:
            raise ParameterError(
                f"the input's samples reach {peak:.3g}: audio is expected within about ±1 "
                f"(or an integer format's range); scale it down")
        if peak <= SILENCE_FLOOR:
            raise ParameterError("the input is silent: every channel is zero (or below −400 "
                                 "dBFS), nothing to separate")


#: More channels than this, and than samples, is taken for a (samples, channels) array.
MAX_CHANNELS = 64


def layout_problem(a: np.ndarray) -> Optional[str]:
    """What keeps the array ``a`` from being (channels, samples) audio, as the end of
    a sentence about it ("must hold real-valued samples; got complex64"), or None:
    two dimensions, real samples, at least one sample, and not laid out as (samples,
    channels) (more channels than :data:`MAX_CHANNELS` and than samples). For the
    input (``Method.check_input``) and for example and hum recordings alike."""
    if a.ndim != 2:
        return (f"must be (channels, samples) audio; got shape {a.shape}"
                + (" (mono: pass x[None])" if a.ndim == 1 else ""))
    if a.dtype.kind not in "fiu":
        return f"must hold real-valued samples; got {a.dtype}"
    c, n = a.shape
    if n == 0:
        return "holds no samples"
    if c > MAX_CHANNELS and c > n:
        return (f"has shape {a.shape}: {c} channels of {n} samples looks like "
                "(samples, channels); pass its transpose")
    return None


#: The largest sample magnitude taken: above 32-bit PCM's range (2.1e9), and 6000
#: times below where the NMF family's float32 fits first overflowed into NaN layers
#: (``nmf`` with β = 2, about 6e13; ``nmf-supervised`` and ``nmf-paint``, about 6e17).
MAX_PEAK = 1e10


#: Largest magnitude that still counts as silence: −400 dBFS, far below any real
#: recording (32-bit PCM's step is −187 dBFS) yet above float32's subnormals,
#: whose squares are zero (a file of them gave NaN layers).
SILENCE_FLOOR = 1e-20
