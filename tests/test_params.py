"""Method parameters: typed values and ``--set`` strings are checked against the
declared type, range and size, each refusal one ``ParameterError`` naming the
parameter, never a TypeError (or an out-of-memory) later inside a method."""

from __future__ import annotations

import dataclasses
from typing import Tuple

import numpy as np
import pytest

from demixstudio.errors import ParameterError
from demixstudio.separation import get_method, make_params, param, param_specs
from demixstudio.separation.base import MAX_TUPLE_VALUES


@dataclasses.dataclass(frozen=True)
class _Params:
    """Every parameter type, for the checks below."""

    count: int = param(4, label="Count", help="", min=1, max=100)
    gain: float = param(1.0, label="Gain", help="", min=0.0, max=10.0)
    flag: bool = param(False, label="Flag", help="")
    mode: str = param("a", label="Mode", help="", choices=("a", "b"))
    name: str = param("", label="Name", help="")
    lags: Tuple[int, ...] = param((), label="Lags", help="", min=0)
    steps: Tuple[int, ...] = param((), label="Steps", help="", min=0, max=50)
    pans: Tuple[float, ...] = param((), label="Pans", help="", min=-1.0, max=1.0)


def _refused(values=None, strings=None) -> str:
    with pytest.raises(ParameterError) as info:
        make_params(_Params, values, strings)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


# -- typed values (the GUI's form, a project file, a script) ------------------


@pytest.mark.parametrize("values,name", [
    ({"gain": "abc"}, "gain"),
    ({"gain": None}, "gain"),
    ({"gain": True}, "gain"),
    ({"gain": [1.0]}, "gain"),
    ({"gain": float("inf")}, "gain"),
    ({"count": 2.5}, "count"),
    ({"count": "3"}, "count"),
    ({"count": True}, "count"),
    ({"count": float("nan")}, "count"),
    ({"count": 2 ** 70}, "count"),
    ({"flag": 1}, "flag"),
    ({"flag": "yes"}, "flag"),
    ({"mode": 1}, "mode"),
    ({"name": 3}, "name"),
    ({"lags": 3}, "lags"),
    ({"lags": "1,2"}, "lags"),
    ({"lags": [1, 2.5]}, "lags"),
    ({"lags": [1, "x"]}, "lags"),
    ({"pans": [0.0, "left"]}, "pans"),
    ({"pans": [0.0, float("nan")]}, "pans"),
])
def test_wrong_types_are_refused_naming_the_parameter(values, name):
    assert _refused(values).startswith(name)


def test_lossless_conversions_are_made():
    p = make_params(_Params, {"count": 3.0, "gain": 2, "flag": np.bool_(True),
                              "lags": [np.int64(1), 2.0], "pans": [0, np.float32(0.5)],
                              "steps": (4,)})
    assert p.count == 3 and type(p.count) is int
    assert p.gain == 2.0 and type(p.gain) is float
    assert p.flag is True
    assert p.lags == (1, 2) and all(type(v) is int for v in p.lags)
    assert p.pans == (0.0, 0.5) and all(type(v) is float for v in p.pans)
    assert make_params(_Params, {"count": np.int32(7)}).count == 7


def test_the_audit_cases_on_real_methods():
    hpss = get_method("hpss").Params
    nmf = get_method("nmf").Params
    with pytest.raises(ParameterError, match="margin='abc' is not a number"):
        make_params(hpss, values={"margin": "abc"})
    with pytest.raises(ParameterError, match="components=2.5 is not a whole number"):
        make_params(nmf, values={"components": 2.5})
    assert make_params(nmf, values={"components": 3.0}).components == 3
    assert make_params(hpss, values={"margin": 3}).margin == 3.0


def test_defaults_and_every_registered_method_still_validate():
    """The defaults of every method pass their own checks, as values and as strings."""
    from demixstudio.separation import available

    for name in available():
        cls = get_method(name).Params
        defaults = {s.name: s.default for s in param_specs(cls)}
        assert make_params(cls, values=defaults) == cls()
        strings = {s.name: (",".join(map(str, s.default)) if isinstance(s.default, tuple)
                            else str(s.default))
                   for s in param_specs(cls) if not (s.type == "str" and s.default == "")}
        assert make_params(cls, strings=strings) == cls()


# -- strings (the CLI's --set, the GUI's tuple fields) -------------------------


def test_strings_still_parse():
    p = make_params(_Params, strings={"count": "5", "gain": "0.5", "flag": "yes", "mode": "b",
                                      "lags": "0,1,2:5,10:4:-3", "pans": "-0.5; 0.5"})
    assert (p.count, p.gain, p.flag, p.mode) == (5, 0.5, True, "b")
    assert p.lags == (0, 1, 2, 3, 4, 10, 7)
    assert p.pans == (-0.5, 0.5)
    assert make_params(_Params, strings={"lags": "0:%d" % MAX_TUPLE_VALUES}).lags == tuple(
        range(MAX_TUPLE_VALUES))


@pytest.mark.parametrize("text,says", [
    ("1:2:3:4", "must be a:b or a:b:step"),
    ("0:10:0", "step of 0"),
    ("5:2", "is empty"),
    ("-3:2", "below the minimum 0"),
    ("1:x", "comma-separated list of integers"),
    ("0:1000000000", f"more than {MAX_TUPLE_VALUES} values"),
    ("0:" + "9" * 40, f"more than {MAX_TUPLE_VALUES} values"),
    ("0:4000,0:4000", f"more than {MAX_TUPLE_VALUES} values"),
    (",".join(["1"] * (MAX_TUPLE_VALUES + 1)), f"more than {MAX_TUPLE_VALUES} values"),
])
def test_bad_ranges_are_refused_at_once(text, says):
    msg = _refused(strings={"lags": text})
    assert msg.startswith("lags") and says in msg, msg


def test_a_range_past_the_declared_maximum_is_refused_before_expansion():
    # steps has max=50: a billion-long range is refused by its end, not by expanding it.
    assert "above the maximum 50" in _refused(strings={"steps": "0:1000000000"})
    assert make_params(_Params, strings={"steps": "0:51"}).steps == tuple(range(51))


def test_typed_tuples_are_capped_too():
    assert "at most" in _refused({"lags": list(range(MAX_TUPLE_VALUES + 1))})


def test_hint_kinds_match_what_each_method_reads():
    """``Method.hint_kinds`` (which hint controls the editor shows) names exactly
    the fields of ``Hints`` the method's module reads, for every registered method."""
    import inspect
    import re
    import sys

    from demixstudio.separation import available

    kinds = ("paint", "examples", "hums", "time_ranges")
    for name in available():
        cls = type(get_method(name))
        source = inspect.getsource(sys.modules[cls.__module__])
        read = {k for k in kinds if re.search(rf"\bhints\.{k}\b", source)}
        assert set(cls.hint_kinds) == read, (name, cls.hint_kinds, read)
        assert set(cls.hint_kinds) <= set(kinds), name
