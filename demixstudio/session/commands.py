"""Undoable edits of a session (the command pattern).

Every change a user makes goes through ``Session.history.push(command)``,
which runs it; ``undo`` and ``redo`` replay the command's inverse or itself.
A command keeps what it needs to undo (the old value, the removed layers),
never a copy of the whole session.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Sequence

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


class History:
    """The undo and redo stacks of one session."""

    def __init__(self, session: "Session", on_change: Callable[[], None]) -> None:
        self._s = session
        self._undo: List[Command] = []
        self._redo: List[Command] = []
        self._on_change = on_change

    def push(self, cmd: Command) -> Command:
        """Run ``cmd`` and make it the next thing to undo."""
        cmd.do(self._s)
        self._undo.append(cmd)
        self._redo.clear()
        self._on_change()
        return cmd

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo_label(self) -> Optional[str]:
        return self._undo[-1].label if self._undo else None

    def redo_label(self) -> Optional[str]:
        return self._redo[-1].label if self._redo else None

    def undo(self) -> bool:
        if not self._undo:
            return False
        cmd = self._undo.pop()
        cmd.undo(self._s)
        self._redo.append(cmd)
        self._on_change()
        return True

    def redo(self) -> bool:
        if not self._redo:
            return False
        cmd = self._redo.pop()
        cmd.do(self._s)
        self._undo.append(cmd)
        self._on_change()
        return True

    def clear(self) -> None:
        self._undo.clear()
        self._redo.clear()
        self._on_change()
