"""Undoable edits of a session (the command pattern).

Every change a user makes goes through ``Session.history.push(command)``,
which runs it; ``undo`` and ``redo`` replay the command's inverse or itself.
A command keeps what it needs to undo (the old value, the removed layers),
never a copy of the whole session.

The history is bounded by memory, as editors bound theirs (SpectraLayers and
Audacity drop the oldest undo steps): what its commands hold that the session
no longer uses (the masks and waveforms of replaced layers, paint tiles before a
stroke) is measured after each step, and while it exceeds ``History.budget``
the oldest undo steps are dropped, never the most recent one. A run on a
25-minute stereo file replaces ~2-3 GB of masks, so an unbounded history grew by
that much per run until the memory checks refused runs. ``History.dropped``
says how many steps were dropped (the editor can say "the oldest steps can no
longer be undone"); a memory check that would refuse an output first asks the
history to free what it holds (:meth:`History.release_bytes`, see
``demixstudio.jobs.memory.register_reclaimer``).

The history also knows the session's *clean* state, the one last opened or
saved (:meth:`History.mark_clean`): ``History.is_clean`` is true exactly when
undoing or redoing has come back to it. Each state is named by a number
(``History.state``: the step that made it), so a state left by an edit on a
branch that a later edit discarded, or one whose step was dropped from the
oldest end, is never reached again and the document stays modified.
"""

from __future__ import annotations

import abc
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Sequence

import numpy as np

from demixstudio.jobs import memory
from demixstudio.session.layer import Layer, check_setting

if TYPE_CHECKING:  # pragma: no cover - typing only
    from demixstudio.session.session import Session


class Command(abc.ABC):
    """One undoable step; ``label`` names it in an Undo menu."""

    label = "edit"

    @abc.abstractmethod
    def do(self, s: "Session") -> None:
        """Apply the change (also used for redo)."""

    @abc.abstractmethod
    def undo(self, s: "Session") -> None:
        """Revert exactly what ``do`` changed."""


class SetLayerSettings(Command):
    """Change one or more settings (name, colour, gain_db, pan, mute, solo) of a layer."""

    def __init__(self, layer_id: str, **settings: Any) -> None:
        self.layer_id = layer_id
        self.new = {k: check_setting(k, v) for k, v in settings.items()}
        self.old: dict = {}
        keys = ", ".join(self.new)
        self.label = f"change {keys}"

    def do(self, s: "Session") -> None:
        layer = s.layer(self.layer_id)
        self.old = {k: getattr(layer, k) for k in self.new}
        s._apply_settings(layer, self.new)

    def undo(self, s: "Session") -> None:
        s._apply_settings(s.layer(self.layer_id), self.old)


class ReplaceLayers(Command):
    """Remove some layers and insert others at the position of the first removed one.

    Covers adding (nothing removed), deleting (nothing inserted), re-separating
    a layer (one removed, its proposals inserted), replacing every layer with
    a new separation of the mixture, and merging.
    """

    def __init__(self, remove_ids: Sequence[str], insert: Sequence[Layer],
                 label: str = "edit layers", index: Optional[int] = None) -> None:
        self.remove_ids = list(remove_ids)
        self.insert = list(insert)
        self.label = label
        self.index = index
        self._removed: List[tuple] = []  # (index, layer), in ascending index order

    def do(self, s: "Session") -> None:
        order = s._layers
        removed = sorted(((order.index(s.layer(i)), s.layer(i)) for i in self.remove_ids),
                         key=lambda p: p[0])
        at = self.index if self.index is not None else (
            removed[0][0] if removed else len(order))
        for idx, _ in reversed(removed):
            del order[idx]
        at -= sum(1 for idx, _ in removed if idx < at)
        order[at:at] = self.insert
        self._removed = removed
        self._at = at
        s._layers_changed()

    def undo(self, s: "Session") -> None:
        order = s._layers
        del order[self._at:self._at + len(self.insert)]
        for idx, layer in self._removed:
            order.insert(idx, layer)
        s._layers_changed()


class MoveLayer(Command):
    """Move a layer to another position in the list."""

    label = "reorder layers"

    def __init__(self, layer_id: str, new_index: int) -> None:
        self.layer_id = layer_id
        self.new_index = new_index

    def do(self, s: "Session") -> None:
        order = s._layers
        layer = s.layer(self.layer_id)
        self.old_index = order.index(layer)
        order.remove(layer)
        order.insert(max(0, min(self.new_index, len(order))), layer)
        s._layers_changed()

    def undo(self, s: "Session") -> None:
        order = s._layers
        layer = s.layer(self.layer_id)
        order.remove(layer)
        order.insert(self.old_index, layer)
        s._layers_changed()


# --------------------------------------------------------------------------
# What the history holds
# --------------------------------------------------------------------------

#: The history's memory budget is the larger of these two: a quarter of the
#: machine's memory (the live layers, their rendered audio and the next run's
#: output, which a run may make as large as 80 % of the free memory, need the
#: rest), and 1 GiB, so that a small machine still keeps a few undo steps of an
#: ordinary song (a 4-layer run on 4 minutes of 44.1 kHz stereo is ~0.4 GB of masks).
HISTORY_SHARE = 0.25
HISTORY_MIN_BUDGET = 1 << 30


def default_budget() -> int:
    """:data:`HISTORY_SHARE` of this process's memory (the machine's, or its
    container's limit), at least :data:`HISTORY_MIN_BUDGET` bytes."""
    total = memory.total_bytes()
    return max(HISTORY_MIN_BUDGET, int(HISTORY_SHARE * total) if total else 0)


_SCALARS = (str, bytes, int, float, complex, bool, type(None))


def _root(a: np.ndarray) -> np.ndarray:
    """The array that owns ``a``'s memory (``a`` itself unless it is a view)."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def held_arrays(*objs: Any) -> Dict[int, int]:
    """The arrays reachable from ``objs``, as {id of the array owning the memory:
    its bytes}: a view (a slice, a broadcast mask) counts as its base, once.

    Follows layers (mask, waveform, provenance: analysis, kept recordings),
    containers and DemixStudio objects' attributes; not a Session (commands
    name layers by id, the session is not theirs to count)."""
    from demixstudio.session.session import Session

    out: Dict[int, int] = {}
    seen: set = set()
    stack: List[Any] = list(objs)
    while stack:
        obj = stack.pop()
        if isinstance(obj, _SCALARS):
            continue
        if isinstance(obj, np.ndarray):
            if obj.dtype != object:
                base = _root(obj)
                out[id(base)] = int(base.nbytes)
                continue
            stack.extend(obj.ravel().tolist())
            continue
        if id(obj) in seen or isinstance(obj, (Session, History)):
            continue
        seen.add(id(obj))
        if isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        elif type(obj).__module__.startswith("demixstudio") and not callable(obj):
            d = getattr(obj, "__dict__", None)
            if d is not None:
                stack.extend(d.values())
            for slot in getattr(type(obj), "__slots__", ()):
                stack.append(getattr(obj, slot, None))
    return out


class History:
    """The undo and redo stacks of one session, bounded by memory.

    ``budget``: bytes the history may hold beyond what the session uses now
    (:meth:`held_bytes`); None for no bound. Default :func:`default_budget`.
    After each :meth:`push` the oldest undo steps are dropped while the history
    holds more (never the most recent step, which may alone exceed it: a run on
    a long file). ``dropped`` counts the undo steps dropped since the last
    :meth:`clear` and ``truncated`` says whether there were any (undoing every
    step no longer returns to where the session started); ``dropped_redo``
    counts redo steps dropped by :meth:`release_bytes`. Each change, a drop
    included, calls ``on_change`` (the session's ``"history"`` event), on the
    thread that made it, except a release from another thread (a memory check
    in a background run), which the next change reports.

    ``state`` names the session's current state (the step that made it, so two
    different states never share a number); :meth:`mark_clean` makes a state the
    clean one (the one opened or saved) and ``is_clean`` says whether the session
    is in it now: undoing or redoing back to it counts, while a state whose step
    was discarded (redo steps after a new edit, a dropped step) is never reached
    again.

    Thread safety: every change holds a lock, so a release from a worker thread
    and an edit on the main thread do not interleave.
    """

    def __init__(self, session: "Session", on_change: Callable[[], None],
                 budget: Optional[int] = -1) -> None:
        self._s = session
        self._undo: List[Command] = []
        self._redo: List[Command] = []
        self._on_change = on_change
        self._lock = threading.RLock()
        self._budget: Optional[int] = default_budget() if budget == -1 else budget
        self.dropped = 0
        self.dropped_redo = 0
        # States: 0 is the one the history started in; each pushed step gets the
        # next number, the state it makes. ``_base`` is the state below the oldest
        # undo step (the one undoing everything returns to).
        self._serial = 0
        self._base = 0
        self._clean: Optional[int] = 0
        memory.register_reclaimer(self)

    # -- memory ------------------------------------------------------------------
    @property
    def budget(self) -> Optional[int]:
        return self._budget

    @budget.setter
    def budget(self, nbytes: Optional[int]) -> None:
        """Set the bound (None: none) and drop the oldest undo steps beyond it now."""
        if nbytes is not None and nbytes < 0:
            raise ValueError("the history's budget is a number of bytes ≥ 0, or None")
        with self._lock:
            self._budget = nbytes
            if self.trim():
                self._on_change()

    @property
    def truncated(self) -> bool:
        """True when undo steps were dropped (since the last clear): the oldest
        state can no longer be reached by undoing."""
        return self.dropped > 0

    def _live(self) -> Dict[int, int]:
        s = self._s
        return held_arrays(s._layers, s.residual, s.paint, s.mixture)

    def _costs(self, cmds: Iterable[Command], live: Dict[int, int]) -> List[Dict[int, int]]:
        return [{k: v for k, v in held_arrays(c).items() if k not in live} for c in cmds]

    def held_bytes(self) -> int:
        """Bytes of the arrays the undo and redo steps hold that the session does not
        use now (an array a live layer still uses costs nothing; one held by
        several steps counts once)."""
        with self._lock:
            held: Dict[int, int] = {}
            for cost in self._costs([*self._undo, *self._redo], self._live()):
                held.update(cost)
            return sum(held.values())

    def _drop(self, cmds: List[Command], keep: int, want: Optional[int]) -> int:
        """Drop steps of this history in order ``cmds`` (oldest first) until the
        history holds no more than ``want`` bytes (None: until ``keep`` remain),
        keeping at least ``keep`` of them. Returns the bytes freed."""
        undo_ids = {id(c) for c in self._undo}
        all_cmds = [*self._undo, *self._redo]
        costs = dict(zip(map(id, all_cmds), self._costs(all_cmds, self._live())))
        refs: Dict[int, int] = {}
        size: Dict[int, int] = {}
        for cost in costs.values():
            for k, v in cost.items():
                refs[k] = refs.get(k, 0) + 1
                size[k] = v
        held = sum(size.values())
        start = held
        gone: List[Command] = []
        for cmd in cmds[:max(0, len(cmds) - keep)]:
            if want is not None and held <= want:
                break
            for k in costs[id(cmd)]:
                refs[k] -= 1
                if not refs[k]:
                    held -= size[k]
            gone.append(cmd)
        for cmd in gone:  # the undo steps among them oldest first
            if id(cmd) in undo_ids:
                self._undo.remove(cmd)
                self._base = _state_of(cmd)  # the state it made is now the oldest
                self.dropped += 1
            else:
                self._redo.remove(cmd)
                self.dropped_redo += 1
        return start - held if gone else 0

    def trim(self) -> int:
        """Drop the oldest undo steps while the history holds more than ``budget``,
        keeping the most recent one; returns how many were dropped."""
        with self._lock:
            if self._budget is None or len(self._undo) <= 1:
                return 0
            before = self.dropped
            self._drop(list(self._undo), 1, self._budget)
            return self.dropped - before

    def release_bytes(self, nbytes: int) -> int:
        """Free at least ``nbytes`` (as far as the history holds them) for an output
        that would otherwise be refused: redo steps first, the furthest first (the
        run's own step will discard them anyway), then the oldest undo steps, the
        most recent included if need be. Returns the bytes freed."""
        with self._lock:
            held = self.held_bytes()
            if nbytes <= 0 or not held:
                return 0
            want = max(0, held - nbytes)
            freed = self._drop([*self._redo, *self._undo], 0, want)
            if freed and threading.current_thread() is threading.main_thread():
                self._on_change()
            return freed

    def reclaimable_bytes(self) -> int:
        """What :meth:`release_bytes` could free: everything the history holds."""
        return self.held_bytes()

    # -- the clean state ------------------------------------------------------------
    @property
    def state(self) -> int:
        """The number of the session's current state: the step that made it (0 for
        the state the history started in). Undo and redo return to the same number."""
        with self._lock:
            return _state_of(self._undo[-1]) if self._undo else self._base

    def mark_clean(self, state: Optional[int] = None) -> None:
        """Make ``state`` (default: the current one) the clean state: the one the
        document was opened or saved in. ``None`` after :meth:`forget_clean`."""
        with self._lock:
            self._clean = self.state if state is None else state

    def forget_clean(self) -> None:
        """No state of this history is the saved one (a document recovered from an
        autosave, or one never saved): ``is_clean`` stays False until the next mark."""
        with self._lock:
            self._clean = None

    @property
    def is_clean(self) -> bool:
        """Whether the session is in the clean state (:meth:`mark_clean`)."""
        with self._lock:
            return self._clean is not None and self.state == self._clean

    @property
    def clean_reachable(self) -> bool:
        """Whether undoing or redoing can still reach the clean state."""
        with self._lock:
            if self._clean is None:
                return False
            return self._clean == self._base or any(
                _state_of(c) == self._clean for c in (*self._undo, *self._redo))

    # -- the stacks ----------------------------------------------------------------
    def push(self, cmd: Command) -> Command:
        """Run ``cmd`` and make it the next thing to undo (then :meth:`trim`)."""
        with self._lock:
            cmd.do(self._s)
            self._serial += 1
            cmd._history_state = self._serial
            self._undo.append(cmd)
            self._redo.clear()
            self.trim()
            self._on_change()
            return cmd

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_steps(self) -> int:
        return len(self._undo)

    @property
    def redo_steps(self) -> int:
        return len(self._redo)

    def undo_label(self) -> Optional[str]:
        undo = self._undo
        return undo[-1].label if undo else None

    def redo_label(self) -> Optional[str]:
        redo = self._redo
        return redo[-1].label if redo else None

    def undo(self) -> bool:
        with self._lock:
            if not self._undo:
                return False
            cmd = self._undo.pop()
            cmd.undo(self._s)
            self._redo.append(cmd)
            self._on_change()
            return True

    def redo(self) -> bool:
        with self._lock:
            if not self._redo:
                return False
            cmd = self._redo.pop()
            cmd.do(self._s)
            self._undo.append(cmd)
            self._on_change()
            return True

    def clear(self) -> None:
        """Forget every step (the arrays only they held are freed); resets ``dropped``.
        The session stays in its state, clean if it was."""
        with self._lock:
            self._base = self.state
            self._undo.clear()
            self._redo.clear()
            self.dropped = 0
            self.dropped_redo = 0
            self._on_change()


def _state_of(cmd: Command) -> int:
    """The state a pushed step makes (:attr:`History.state`)."""
    return cmd._history_state  # type: ignore[attr-defined]
