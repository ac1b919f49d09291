"""Autosave and crash recovery.

While a document has unsaved edits it is written every ``interval_s`` seconds
and a few seconds after each edit to ``<data dir>/autosave/<token>.dsproj``
(``DEMIXSTUDIO_DATA_DIR`` moves the data dir), beside a small JSON record
(the process id and what identifies that process beyond its id, the song's
name, where it came from, the project file it was saved as, when). Saving runs
in a background thread, so editing never waits for it. A clean exit, a save by
the user or closing the document deletes both files; files whose process is
no longer running are what a crash left behind, and the next start offers
to recover them. A process id alone is not enough: after a reboot another
process may have the same id, so the record also holds the process's start
time (and on Linux the boot id), and a running process that started at
another time is not the one that wrote it.

A recovered autosave is kept (claimed by the recovering process) until that
process's own first autosave or a save by the user has been written, so a
second crash right after recovering still leaves something to recover.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from PySide6.QtCore import QObject, QTimer, Signal

from demixstudio.audio import atomic
from demixstudio.audio.atomic import atomic_path, describe_os_error
from demixstudio.errors import OutputError
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


def _linux_identity(pid: int) -> Optional[Dict[str, Any]]:
    """Linux: the boot id and the process's start time (clock ticks since boot)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        boot = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
        # The command name (field 2) may hold spaces and parentheses: split after its ')'.
        fields = stat[stat.rindex(")") + 2:].split()
        return {"kind": "linux", "boot": boot, "start": int(fields[19])}  # field 22
    except (OSError, ValueError, IndexError):
        return None


def _psutil_identity(pid: int) -> Optional[Dict[str, Any]]:
    try:
        import psutil  # optional
    except ImportError:
        return None
    try:
        return {"kind": "psutil", "start": float(psutil.Process(pid).create_time())}
    except Exception:  # NoSuchProcess, AccessDenied, ...
        return None


def process_identity(pid: int) -> Optional[Dict[str, Any]]:
    """What tells process ``pid`` apart from a later one with the same id (its
    start time, with the boot id on Linux); None where it cannot be read."""
    if sys.platform.startswith("linux"):
        found = _linux_identity(pid)
        if found is not None:
            return found
    return _psutil_identity(pid)


def _same_identity(recorded: Dict[str, Any], now: Dict[str, Any]) -> bool:
    if recorded.get("kind") != now.get("kind"):
        return True  # not comparable: the process id alone decides
    if now["kind"] == "linux":
        return recorded.get("boot") == now["boot"] and recorded.get("start") == now["start"]
    start = recorded.get("start")
    if not isinstance(start, (int, float)) or isinstance(start, bool):
        return True
    return abs(float(start) - now["start"]) < 1.0  # psutil's time may wobble a little


def writer_alive(pid: int, identity: object) -> bool:
    """Whether the process that wrote a record (``pid`` and, when recorded, its
    ``identity``) still runs. A running process with that id but another start
    time (or another boot) is a later process that reused the id: the writer is gone."""
    if isinstance(identity, dict) and identity.get("kind") == "linux" \
            and sys.platform.startswith("linux"):
        boot = _linux_identity(os.getpid())
        if boot is not None and identity.get("boot") != boot["boot"]:
            return False  # written before a reboot
    if not pid_alive(pid):
        return False
    if not isinstance(identity, dict):
        return True  # an older record: only the pid is known
    now = process_identity(pid)
    return True if now is None else _same_identity(identity, now)


def remove_stale_parts(folder: Optional[Path] = None) -> None:
    """Remove the temporaries (``*.part``) that a process killed while writing its
    autosave left in the autosave folder. Never raises.

    Uses ``demixstudio.audio.atomic.remove_stale_parts(folder)`` where it exists;
    otherwise removes the parts whose writer (named by the token in the file name,
    ``.<pid>-<hex>.….part``) no longer runs.
    """
    d = Path(folder) if folder is not None else autosave_dir()
    if not d.is_dir():
        return
    shared = getattr(atomic, "remove_stale_parts", None)
    if callable(shared):
        try:
            shared(d)
        except Exception as exc:  # never stop the editor for a cleanup
            log.warning("could not remove stale temporaries in %s: %s", d, exc)
        return
    try:
        parts = list(d.glob(".*.part"))
    except OSError as exc:
        log.warning("could not list %s: %s", d, exc)
        return
    for part in parts:
        token = part.name[1:].split(".", 1)[0]  # ".<pid>-<hex>.<random>.dsproj.part"
        try:
            pid = int(token.split("-", 1)[0])
        except ValueError:
            continue  # not one of ours
        if pid == os.getpid():
            continue
        identity = None
        try:
            identity = json.loads((d / f"{token}.json").read_text(encoding="utf-8")).get("proc")
        except Exception:  # no record (killed before its first one) or unreadable
            pass
        if writer_alive(pid, identity):
            continue
        try:
            part.unlink()
            log.info("removed the stale temporary %s", part)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove %s: %s", part, exc)


@dataclass
class RecoveryEntry:
    """One autosave left by a process that is gone."""

    project: Path
    record: Path
    name: str
    source: Optional[str]
    saved_at: float
    #: the .dsproj the document was saved as (None: never saved as a project)
    project_path: Optional[str] = None

    def claim(self) -> None:
        """Mark this autosave as being recovered by this process: another start
        (while this process runs) does not offer it, a crash of this process
        before it autosaves the document again does. Best effort."""
        try:
            doc = json.loads(self.record.read_text(encoding="utf-8"))
            if not isinstance(doc, dict):
                raise ValueError("not a record")
            doc["pid"] = os.getpid()
            doc["proc"] = process_identity(os.getpid())
            doc["recovered_by"] = os.getpid()
            with atomic_path(self.record) as tmp:
                tmp.write_text(json.dumps(doc), encoding="utf-8")
        except Exception as exc:
            log.warning("could not mark %s as recovered: %s", self.record, exc)

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

    Only the process (its pid and, where recorded, its start time) decides; the
    rest only describes the autosave, so a bad name, source or time falls back to
    the project file's own (stem, none, mtime).
    """
    doc = json.loads(rec.read_text(encoding="utf-8"))
    pid = doc["pid"]
    if not isinstance(pid, int) or isinstance(pid, bool):  # 1.5, "12", Infinity, null
        raise TypeError(f"process id {pid!r} is not a whole number")
    proj = rec.with_suffix(".dsproj")
    if writer_alive(pid, doc.get("proc")) or not proj.is_file():  # this process's too
        return None
    name, source, path = doc.get("name"), doc.get("source"), doc.get("project")
    return RecoveryEntry(proj, rec, name if isinstance(name, str) and name else proj.stem,
                         source if isinstance(source, str) else None,
                         _saved_at(doc.get("saved_at"), proj),
                         path if isinstance(path, str) and path else None)


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
    ``mark_saved()`` when the user saved; ``close()`` on a clean exit.

    ``saved(path)`` follows each autosave written, ``failed(reason)`` each one
    that could not be (a full disk): the window shows it, and the next tick tries
    again. ``document_path`` is the project file the document is saved as (kept in
    the record, so a recovered document saves back there).
    """

    saved = Signal(str)  # the autosave's path
    failed = Signal(str)  # why an autosave could not be written (one line)

    def __init__(self, interval_s: int = 60, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.session = None
        self.dirty = False
        self.document_path: Optional[str] = None
        self._edits = 0  # counts mark_edited() calls: which edits a finished save holds
        self._submitted = -1  # the count the newest submitted save holds
        self.token = ""
        self._identity = process_identity(os.getpid())
        self._adopted: Optional[RecoveryEntry] = None  # a crash's autosave being recovered
        self._task = BackgroundTask(self)
        self._task.done.connect(self._done)
        self._task.failed.connect(self._failed)
        self._periodic = QTimer(self)
        self._periodic.setInterval(int(interval_s * 1000))
        self._periodic.timeout.connect(self.save_now)
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(int(EDIT_DELAY_S * 1000))
        self._debounce.timeout.connect(self.save_now)
        self.enabled = True
        remove_stale_parts()  # what processes killed mid-write left (start-up)

    @property
    def project_path(self) -> Path:
        return autosave_dir() / f"{self.token}.dsproj"

    @property
    def record_path(self) -> Path:
        return autosave_dir() / f"{self.token}.json"

    @property
    def adopted(self) -> Optional[RecoveryEntry]:
        """The crash's autosave being recovered, until this session's own is written."""
        return self._adopted

    def set_session(self, session, project_path: Optional[Path | str] = None) -> None:
        """Start autosaving ``session`` (the previous one's autosave is removed)."""
        self._remove_files()
        self.session = session
        self.dirty = False
        self.document_path = str(project_path) if project_path else None
        self.token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._debounce.stop()
        if session is not None:
            self._periodic.start()
        else:
            self._periodic.stop()

    def adopt(self, entry: RecoveryEntry) -> None:
        """The current session was recovered from ``entry``: keep its files (claimed
        by this process) until this session's own autosave or a save is written."""
        if self._adopted is not None and self._adopted.project != entry.project:
            self._adopted.discard()
        entry.claim()
        self._adopted = entry

    def mark_edited(self) -> None:
        if self.session is None or not self.enabled:
            return
        self.dirty = True
        self._edits += 1
        self._debounce.start()

    def mark_saved(self, project_path: Optional[Path | str] = None) -> None:
        """The user saved (to ``project_path``): nothing to recover any more."""
        if project_path:
            self.document_path = str(project_path)
        self.dirty = False
        self._debounce.stop()
        self._remove_files()

    def mark_clean(self) -> None:
        """The document is back in the state last saved or opened (undone to it):
        nothing to recover, as after a save (an autosave of a later state is removed)."""
        self.mark_saved()

    def save_now(self) -> None:
        """Write the autosave in the background (if there are unsaved edits).

        ``dirty`` clears only when a write succeeds: a failed one (a full disk)
        is reported by ``failed`` and the next tick tries again, rather than
        leaving the edits unsaved until the next edit.
        """
        if self.session is None or not self.dirty or not self.enabled:
            return
        if self._task.busy and self._submitted == self._edits:
            return  # a save of exactly these edits is already on its way
        session, proj, rec, edits = self.session, self.project_path, self.record_path, self._edits
        doc = {"pid": os.getpid(), "proc": self._identity, "name": session.name,
               "source": session.source_path, "project": self.document_path}
        self._submitted = edits

        def work(ctx):
            try:
                proj.parent.mkdir(parents=True, exist_ok=True)
                save_project(session, proj)
                with atomic_path(rec) as tmp:
                    tmp.write_text(json.dumps({**doc, "saved_at": time.time()}),
                                   encoding="utf-8")
            except OSError as exc:  # the reason a user can act on: "no space left on the disk"
                raise OutputError(f"cannot write in {proj.parent}: "
                                  f"{describe_os_error(exc)}") from exc
            return str(proj)

        def written(path: str) -> str:  # on the GUI thread, only after a success
            if self.session is session:
                if self._edits == edits:  # nothing edited since
                    self.dirty = False
                if self._adopted is not None:  # our own autosave has taken over
                    self._adopted.discard()
                    self._adopted = None
            return path
        self._task.submit("autosave", work, written)

    def wait(self, ms: int = 60000) -> bool:
        return self._task.wait(ms)

    def _done(self, path: str) -> None:
        log.info("autosaved %s", path)
        self.saved.emit(path)

    def _failed(self, _label: str, reason: str) -> None:
        self.failed.emit(reason)

    def _remove_files(self) -> None:
        if self._adopted is not None:  # a save, a new document or a clean exit
            self._adopted.discard()
            self._adopted = None
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
