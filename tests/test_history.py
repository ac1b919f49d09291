"""The undo history is bounded by memory (session/commands.py: History).

Without a bound, every run on a long file kept the masks it replaced: ~2-3 GB
a run on 25 minutes of stereo, until the memory checks refused runs."""

from __future__ import annotations

import numpy as np
import pytest

from demixstudio.errors import InsufficientMemoryError, ParameterError
from demixstudio.jobs import memory
from demixstudio.separation.base import LayerProposal
from demixstudio.session.commands import HISTORY_MIN_BUDGET, default_budget, held_arrays
from demixstudio.session.session import Session

SR = 8000


@pytest.fixture
def s():
    rng = np.random.default_rng(0)
    return Session(rng.standard_normal((2, SR * 2)).astype(np.float32) * 0.1, SR)


def _grid(s):
    return s.stft.bins, s.stft.frames(s.samples)


def _run(s, k, seed, on=None):
    """A stand-in for a method: ``k`` random masks (1 channel) summing to at most 1."""
    rng = np.random.default_rng(seed)
    w = rng.random((k + 1, 1, *_grid(s))).astype(np.float32)
    w /= w.sum(axis=0)
    return s.apply_proposals([LayerProposal(f"part {i}", "fake", {"seed": seed}, mask=w[i].copy())
                              for i in range(k)], on=on)


def _state(s):
    """What the session is, exactly: each layer's id, name and content (copied)."""
    return [(x.id, x.name, None if x.mask is None else x.mask.copy(),
             None if x.waveform is None else x.waveform.copy()) for x in s.layers]


def _same(a, b):
    assert [(i, n) for i, n, _, _ in a] == [(i, n) for i, n, _, _ in b]
    for (_, _, ma, wa), (_, _, mb, wb) in zip(a, b):
        for x, y in ((ma, mb), (wa, wb)):
            assert (x is None) == (y is None)
            if x is not None:
                np.testing.assert_array_equal(x, y)


def _mask_bytes(layers):
    return sum(x.mask.nbytes for x in layers)


def test_default_budget_is_a_quarter_of_memory_and_at_least_1_gib(monkeypatch):
    monkeypatch.setattr(memory, "total_bytes", lambda: 64 << 30)
    assert default_budget() == 16 << 30
    monkeypatch.setattr(memory, "total_bytes", lambda: 2 << 30)
    assert default_budget() == HISTORY_MIN_BUDGET == 1 << 30
    monkeypatch.setattr(memory, "total_bytes", lambda: None)
    assert default_budget() == HISTORY_MIN_BUDGET


def test_shared_arrays_are_not_double_counted(s):
    """A step whose arrays a live layer uses holds nothing extra; a layer held by
    two steps (inserted by one, removed by the next) counts once; a view counts as
    the array it views."""
    h = s.history
    first = _run(s, 3, 1)
    assert h.held_bytes() == 0  # its layers are the live ones
    second = _run(s, 2, 2)
    assert h.held_bytes() == _mask_bytes(first)
    third = _run(s, 2, 3)
    # `second` is both what step 2 inserted and what step 3 removed: once.
    assert h.held_bytes() == _mask_bytes(first) + _mask_bytes(second)
    h.undo()  # `second` is live again; `third` is held by the redo step
    assert h.held_bytes() == _mask_bytes(first) + _mask_bytes(third)
    # An array and views of it count once, as the array.
    base = np.zeros((4, 1000), np.float32)
    assert held_arrays([base, base[1:], np.broadcast_to(base[:1], (50, 1000))]) == {
        id(base): base.nbytes}


def test_many_steps_stay_under_a_small_budget_and_recent_ones_undo_exactly(s):
    h = s.history
    one = 3 * np.prod(_grid(s)) * 4  # the masks of one 3-layer run
    h.budget = int(2.5 * one)
    states = [_state(s)]
    for i in range(12):
        _run(s, 3, 100 + i)
        if i % 3 == 2:
            s.set(s.layers[0], gain_db=-3.0 - i, name=f"renamed {i}")
        if i % 4 == 3:
            s.remove(s.layers[1])
        states.append(_state(s))  # after each group of steps (one or more)
        assert h.held_bytes() <= h.budget
    assert h.truncated and h.dropped > 0
    assert h.undo_steps >= 3
    # The steps that are left undo exactly, back to a state that was.
    final = _state(s)
    n = h.undo_steps
    while h.undo():
        pass
    reached = _state(s)
    assert any([i for i, *_ in st] == [i for i, *_ in reached] for st in states[1:])
    assert not h.undo()
    for _ in range(n):
        assert h.redo()
    assert not h.can_redo
    _same(_state(s), final)


def test_undo_after_trimming_restores_the_most_recent_steps(s):
    h = s.history
    h.budget = 0  # only the most recent step is kept, whatever it holds
    a = _state(s)
    _run(s, 2, 1)
    b = _state(s)
    _run(s, 3, 2)
    c = _state(s)
    _run(s, 2, 3)
    d = _state(s)
    assert h.undo_steps == 1 and h.dropped == 2 and h.truncated
    assert h.undo_label() == "separate with fake"
    assert h.undo()
    _same(_state(s), c)
    assert not h.undo() and not h.can_undo
    assert h.redo()
    _same(_state(s), d)
    # Undo then a new step: the redo step goes, and the budget is kept.
    h.undo()
    _run(s, 1, 4)
    assert not h.can_redo and h.undo_steps == 1
    h.undo()
    _same(_state(s), c)
    del a, b


def test_a_larger_budget_keeps_everything(s):
    h = s.history
    states = [_state(s)]
    for i in range(5):
        _run(s, 2, i)
        states.append(_state(s))
    assert h.dropped == 0 and not h.truncated and h.undo_steps == 5
    for st in reversed(states[:-1]):
        assert h.undo()
        _same(_state(s), st)


def test_lowering_the_budget_trims_at_once_and_says_so(s):
    h = s.history
    events = []
    s.subscribe(lambda kind, _: events.append(kind))
    for i in range(4):
        _run(s, 2, i)
    assert h.undo_steps == 4 and h.held_bytes() > 0
    events.clear()
    h.budget = 0
    assert h.undo_steps == 1 and h.dropped == 3 and h.held_bytes() > 0  # the last step's
    assert "history" in events


def test_clear_history_frees_everything(s):
    events = []
    s.subscribe(lambda kind, _: events.append(kind))
    s.history.budget = 0
    for i in range(3):
        _run(s, 2, i)
    assert s.history.truncated
    layers = _state(s)
    s.clear_history()
    assert not s.history.can_undo and not s.history.can_redo
    assert s.history.held_bytes() == 0 and not s.history.truncated
    assert events[-1] == "history"
    _same(_state(s), layers)


def test_paint_steps_are_bounded_too(s):
    h = s.history
    bins, frames = _grid(s)
    tile = np.ones((bins // 2, frames // 2), np.float32)
    s.paint_stroke("voice", slice(0, bins // 2), slice(0, frames // 2), tile * 0.5)
    s.paint_stroke("voice", slice(0, bins // 2), slice(0, frames // 2), tile * 0.25)
    one = h.held_bytes()  # the tiles one stroke replaced (the store's are not counted)
    assert one > 0
    h.budget = int(2.5 * one)
    for i in range(10):
        s.paint_stroke("voice", slice(0, bins // 2), slice(0, frames // 2), tile * (i % 2))
        assert h.held_bytes() <= h.budget
    assert h.truncated
    before = s.paint.region("voice", 0, bins // 2, 0, frames // 2).copy()
    h.undo()
    after = s.paint.region("voice", 0, bins // 2, 0, frames // 2)
    assert not np.array_equal(before, after)
    h.redo()
    np.testing.assert_array_equal(s.paint.region("voice", 0, bins // 2, 0, frames // 2), before)


def test_a_check_that_would_refuse_frees_the_history_first(s, monkeypatch):
    """A run whose output does not fit the free memory, but would once the history
    gave back what it holds, goes ahead: redo steps go first, then the oldest."""
    h = s.history
    monkeypatch.setattr(memory, "_reclaimers", [])
    memory.register_reclaimer(h)
    for i in range(4):
        _run(s, 2, i)
    h.undo()
    held = h.held_bytes()
    assert held > 0 and h.redo_steps == 1
    base = 1 << 20
    # The free memory grows by what the history frees.
    monkeypatch.setattr(memory, "available_bytes", lambda: base + held - h.held_bytes())
    need = memory.SHARE * (base + held // 2)
    memory.check_fits(int(need), "test output", "advice")
    assert h.dropped_redo == 1 and not h.can_redo
    assert h.held_bytes() <= held - held // 2
    assert h.can_undo or h.dropped  # what it kept still undoes
    # More than the history holds: refused, and nothing is dropped for nothing.
    steps, left = h.undo_steps, h.held_bytes()
    with pytest.raises(InsufficientMemoryError):
        memory.check_fits(int(memory.SHARE * (base + held) * 4), "test output", "advice")
    assert h.undo_steps == steps and h.held_bytes() == left


# -- the clean state (the one opened or saved): the editor's "modified" ---------------------
def test_undo_or_redo_back_to_the_clean_state_is_clean(s):
    h = s.history
    _run(s, 2, 1)
    h.mark_clean()  # saved here
    assert h.is_clean and h.clean_reachable
    s.set(s.layers[0], gain_db=-6.0)
    s.set(s.layers[0], mute=True)
    assert not h.is_clean
    h.undo()
    assert not h.is_clean
    h.undo()
    assert h.is_clean  # back where it was saved
    h.undo()
    assert not h.is_clean  # before the save
    h.redo()
    assert h.is_clean  # redo back to it counts too
    h.redo()
    assert not h.is_clean
    # Events that change nothing (a budget that drops nothing) keep it as it is.
    h.undo()
    h.budget = None
    assert h.is_clean


def test_a_new_edit_after_undoing_past_the_clean_state_makes_it_unreachable(s):
    h = s.history
    s.set(s.layers[0], gain_db=-6.0)
    h.mark_clean()
    h.undo()
    s.set(s.layers[0], gain_db=-3.0)  # the saved state was on the discarded redo branch
    assert not h.is_clean and not h.clean_reachable
    h.undo()
    assert not h.is_clean  # the state before both edits, not the saved one
    s.set(s.layers[0], gain_db=-6.0)  # the same value again, but another step
    assert not h.is_clean


def test_a_clean_state_whose_step_was_dropped_is_unreachable(s):
    h = s.history
    h.mark_clean()  # opened with no layers
    h.budget = 0  # keep only the most recent step
    _run(s, 2, 1)
    _run(s, 2, 2)
    assert h.truncated and not h.clean_reachable
    while h.undo():
        pass
    assert not h.is_clean  # undoing everything no longer reaches the opened state
    # A clean state made by a dropped step is still the oldest one, reachable by undo.
    h.budget = None
    h.mark_clean()
    _run(s, 2, 3)
    h.budget = 0
    assert h.dropped > 0 and h.clean_reachable
    h.undo()
    assert h.is_clean


def test_clearing_the_history_keeps_the_session_clean_or_not(s):
    h = s.history
    _run(s, 2, 1)
    h.mark_clean()
    s.clear_history()
    assert h.is_clean
    s.set(s.layers[0], gain_db=-6.0)
    s.clear_history()
    assert not h.is_clean and not h.clean_reachable
    h.forget_clean()
    assert not h.is_clean


def test_a_new_paint_target_is_one_undo_step(s):
    """A project saves its paint targets, empty ones too: making one is an edit."""
    h = s.history
    h.mark_clean()
    assert s.add_paint_target(" drums ") == "drums"
    assert s.paint.targets() == ["drums"] and not h.is_clean
    assert h.undo_label() == "new paint target drums"
    colour = s.paint.colour("drums")
    assert s.add_paint_target("drums") == "drums" and h.undo_steps == 1  # exists: no step
    h.undo()
    assert s.paint.targets() == [] and h.is_clean
    h.redo()
    assert s.paint.targets() == ["drums"] and s.paint.colour("drums") == colour
    with pytest.raises(ParameterError):
        s.add_paint_target("  ")
