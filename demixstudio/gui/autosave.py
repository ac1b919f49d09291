"""Autosave and crash recovery.

While a document has unsaved edits it is written every ``interval_s`` seconds
and a few seconds after each edit to ``<data dir>/autosave/<token>.dsproj``
(``DEMIXSTUDIO_DATA_DIR`` moves the data dir), beside a small JSON record
(the process id, the song's name, where it came from, when). Saving runs in
a background thread, so editing never waits for it. A clean exit, a save by
the user or closing the document deletes both files; files whose process is
no longer running are what a crash left behind, and the next start offers
to recover them.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from PySide6.QtCore import QObject, QTimer, Signal

from demixstudio.audio.atomic import atomic_path
from demixstudio.gui.settings import data_dir
from demixstudio.gui.worker import BackgroundTask
from demixstudio.session.project import save_project

log = logging.getLogger("demixstudio.gui.autosave")

#: Seconds of quiet after an edit before it is autosaved.
EDIT_DELAY_S = 3.0


def autosave_dir() -> Path:
    return data_dir() / "autosave"


def pid_alive(pid: int) -> bool:
    """Whether a process with this id is running (on this machine)."""
    if pid <= 0 or pid >= 1 << 32:  # beyond any pid_t or DWORD: no such process
        return False
    if os.name == "nt":  # os.kill would terminate the process on Windows
        import ctypes

        k32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        handle = k32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        k32.GetExitCodeProcess(handle, ctypes.byref(code))
        k32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OSError, OverflowError):  # OverflowError: above a signed 32-bit pid_t
        return False
    return True


@dataclass
class RecoveryEntry:
    """One autosave left by a process that is gone."""

    project: Path
    record: Path
    name: str
    source: Optional[str]
    saved_at: float

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.saved_at))
        return f"“{self.name}”, autosaved {when}"

    def discard(self) -> None:
        for p in (self.project, self.record):
            try:
                p.unlink()
            except FileNotFoundError:
                pass


def recoverable() -> List[RecoveryEntry]:
    """Autosaves whose process no longer runs (a crash), newest first.

    A record that cannot be read (damaged, hand-edited, from another version) is
    logged and skipped; its files stay where they are.
    """
    d = autosave_dir()
    out: List[RecoveryEntry] = []
    if not d.is_dir():
        return out
    for rec in d.glob("*.json"):
        try:
            entry = _entry(rec)
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
            # RecursionError: JSON nested too deep for the parser
            log.warning("skipping the unreadable autosave record %s: %s", rec, exc)
            continue
        if entry is not None:
            out.append(entry)
    out.sort(key=lambda e: e.saved_at, reverse=True)
    return out


def _entry(rec: Path) -> Optional[RecoveryEntry]:
    """The RecoveryEntry of record ``rec``; None while its process runs or when
    its project is gone. Raises OSError, ValueError, KeyError, TypeError or
    RecursionError for a record without a readable process id (whether its
    process crashed cannot be told).

    Only the pid decides; the rest only describes the autosave, so a bad name,
    source or time falls back to the project file's own (stem, none, mtime).
    """
    doc = json.loads(rec.read_text(encoding="utf-8"))
    pid = doc["pid"]
    if not isinstance(pid, int) or isinstance(pid, bool):  # 1.5, "12", Infinity, null
        raise TypeError(f"process id {pid!r} is not a whole number")
    proj = rec.with_suffix(".dsproj")
    if pid == os.getpid() or pid_alive(pid) or not proj.is_file():
        return None
    name, source = doc.get("name"), doc.get("source")
    return RecoveryEntry(proj, rec, name if isinstance(name, str) and name else proj.stem,
                         source if isinstance(source, str) else None,
                         _saved_at(doc.get("saved_at"), proj))


def _saved_at(value: object, proj: Path) -> float:
    """The record's time if it is one ``describe`` can show, else the project's mtime."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            time.localtime(value)  # NaN: ValueError; inf, 1e300: OverflowError or OSError
            return float(value)
        except (OverflowError, OSError, ValueError):
            pass
    return proj.stat().st_mtime


class Autosaver(QObject):
    """Autosaves one session at a time. ``mark_edited()`` after each edit;
    ``mark_saved()`` when the user saved; ``close()`` on a clean exit."""

    saved = Signal(str)  # the autosave's path

    def __init__(self, interval_s: int = 60, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.session = None
        self.dirty = False
        self._edits = 0  # counts mark_edited() calls: which edits a finished save holds
        self._submitted = -1  # the count the newest submitted save holds
        self.token = ""
        self._task = BackgroundTask(self)
        self._task.done.connect(self._done)
        self._periodic = QTimer(self)
        self._periodic.setInterval(int(interval_s * 1000))
        self._periodic.timeout.connect(self.save_now)
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(int(EDIT_DELAY_S * 1000))
        self._debounce.timeout.connect(self.save_now)
        self.enabled = True

    @property
    def project_path(self) -> Path:
        return autosave_dir() / f"{self.token}.dsproj"

    @property
    def record_path(self) -> Path:
        return autosave_dir() / f"{self.token}.json"

    def set_session(self, session) -> None:
        """Start autosaving ``session`` (the previous one's autosave is removed)."""
        self._remove_files()
        self.session = session
        self.dirty = False
        self.token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._debounce.stop()
        if session is not None:
            self._periodic.start()
        else:
            self._periodic.stop()

    def mark_edited(self) -> None:
        if self.session is None or not self.enabled:
            return
        self.dirty = True
        self._edits += 1
        self._debounce.start()

    def mark_saved(self) -> None:
        """The user saved: nothing to recover any more."""
        self.dirty = False
        self._debounce.stop()
        self._remove_files()

    def save_now(self) -> None:
        """Write the autosave in the background (if there are unsaved edits).

        ``dirty`` clears only when a write succeeds: a failed one (a full disk)
        is logged by the task and the next tick tries again, rather than leaving
        the edits unsaved until the next edit.
        """
        if self.session is None or not self.dirty or not self.enabled:
            return
        if self._task.busy and self._submitted == self._edits:
            return  # a save of exactly these edits is already on its way
        session, proj, rec, edits = self.session, self.project_path, self.record_path, self._edits
        self._submitted = edits

        def work(ctx):
            proj.parent.mkdir(parents=True, exist_ok=True)
            save_project(session, proj)
            doc = {"pid": os.getpid(), "name": session.name, "source": session.source_path,
                   "saved_at": time.time()}
            with atomic_path(rec) as tmp:
                tmp.write_text(json.dumps(doc), encoding="utf-8")
            return str(proj)

        def written(path: str) -> str:  # on the GUI thread, only after a success
            if self.session is session and self._edits == edits:  # nothing edited since
                self.dirty = False
            return path
        self._task.submit("autosave", work, written)

    def wait(self, ms: int = 60000) -> bool:
        return self._task.wait(ms)

    def _done(self, path: str) -> None:
        log.info("autosaved %s", path)
        self.saved.emit(path)

    def _remove_files(self) -> None:
        if not self.token:
            return
        self._task.cancel()  # a pending autosave must not write the files back
        self._task.wait()
        for p in (self.project_path, self.record_path):
            try:
                p.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("could not remove %s: %s", p, exc)

    def close(self) -> None:
        """A clean exit: stop, and leave nothing to recover."""
        self._periodic.stop()
        self._debounce.stop()
        self._task.cancel()
        self._remove_files()
        self.session = None
