"""Atomic file writes: write a temporary file beside the target, then rename.

A reader (or a crash) never sees a half-written file under the final name,
and a failed write leaves whatever was there before untouched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

from demixstudio.errors import OutputError

# mkstemp creates files readable by the owner only; finished files get the
# permissions any new file would (0666 less the umask), read once at import.
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


def describe_os_error(exc: OSError) -> str:
    """A short human reason for an OSError (disk full, permission denied...)."""
    if exc.errno == errno.ENOSPC:
        return "no space left on the disk"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return exc.strerror or str(exc)


# Temporaries are named ``.<final name>.<random>.<PID>.part``: hidden, beside
# their final file (a rename within one folder is atomic), and carrying the
# writer's process id so a later run can tell a temporary left by a killed
# process from one being written now (see remove_stale_parts).
_PART_SUFFIX = ".part"
_PART_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.(\d+)\.part$")


def _temp_beside(final: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.",
                                suffix=f".{os.getpid()}{_PART_SUFFIX}", dir=final.parent)
    os.close(fd)
    return Path(name)


def _check_replaceable(final: Path, shown: Path) -> None:
    """Raise OutputError unless a rename onto ``final`` can succeed: its folder
    exists and is writable, and ``final`` is not a folder."""
    folder = final.parent
    if not folder.is_dir():
        raise OutputError(f"cannot write {shown}: the folder {folder} does not exist")
    if final.is_dir():
        raise OutputError(f"cannot write {shown}: a folder has that name")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"cannot write {shown}: permission denied")


def _keep_aside(final: Path) -> Optional[Path]:
    """A second name for the existing ``final`` (None if there is none), so a
    failed publish can put the old file back. ``final`` itself stays in place
    (a hard link, else a copy), so a crash at any point leaves a file under the
    final name and the aside copy is a mere temporary."""
    if not final.exists():
        return None
    aside = _temp_beside(final)
    aside.unlink()  # the name only: os.link wants a free name
    try:
        os.link(final, aside)
    except OSError:  # no hard links here (FAT, some network shares): copy
        shutil.copy2(final, aside)
    return aside


def _publish(temps: Sequence[Path], finals: Sequence[Path], shown: Sequence[Path]) -> None:
    """Rename every temporary onto its final name, all or nothing.

    With several files, each existing final file is kept aside before it is
    replaced; if a later rename fails, the earlier ones are undone (old files
    put back, new ones removed) and the error names the file that failed.
    """
    many = len(finals) > 1
    done: List[Tuple[Path, Optional[Path]]] = []
    try:
        for tmp, final, name in zip(temps, finals, shown):
            aside = _keep_aside(final) if many else None
            try:
                os.replace(tmp, final)
            except OSError as exc:
                if aside is not None:
                    with contextlib.suppress(OSError):
                        aside.unlink()
                raise OutputError(f"cannot write {name}: {describe_os_error(exc)}") from exc
            done.append((final, aside))
    except BaseException:
        for final, aside in reversed(done):
            with contextlib.suppress(OSError):
                if aside is not None:
                    os.replace(aside, final)
                else:
                    final.unlink()
        raise
    for _, aside in done:
        if aside is not None:
            with contextlib.suppress(OSError):
                aside.unlink()


@contextlib.contextmanager
def atomic_paths(finals: Sequence[os.PathLike | str]) -> Iterator[List[Path]]:
    """Yield temporary paths beside each of ``finals``; rename them all on success.

    All or nothing: every final name is checked before anything is written and
    again before the first rename (not a folder, its folder writable); the
    renames happen only after every file was written, and one that still fails
    undoes those made before it. On any exception every temporary file is
    removed and the exception is re-raised (``OSError`` as ``OutputError``
    naming the file and the reason). A final path that is a symbolic link is
    written through: its target is replaced, the link stays.
    """
    shown = [Path(f) for f in finals]
    # Resolve links first: os.replace onto a link would replace the link itself.
    real = [Path(os.path.realpath(f)) for f in shown]
    temps: List[Path] = []
    try:
        for final, name in zip(real, shown):
            _check_replaceable(final, name)
            temps.append(_temp_beside(final))
        yield temps
        for tmp in temps:
            # Flush to disk before the rename so a crash can't leave an empty
            # file under the final name.
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp, _FILE_MODE)
        # Again: writing may have taken minutes, and a half-published export is
        # what this all exists to prevent.
        for final, name in zip(real, shown):
            _check_replaceable(final, name)
        _publish(temps, real, shown)
    except BaseException as exc:
        for tmp in temps:
            with contextlib.suppress(OSError):
                tmp.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            where = shown[0] if len(shown) == 1 else shown[0].parent
            raise OutputError(f"cannot write {where}: {describe_os_error(exc)}") from exc
        raise


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (on doubt, True: a file is kept, not lost)."""
    if pid <= 0:
        return True
    if pid == os.getpid():
        return True
    if os.name == "nt":  # os.kill would terminate the process there
        import ctypes

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return kernel32.GetLastError() == 5  # access denied: it exists
        try:
            code = ctypes.c_ulong()
            if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
                return True
            return code.value == 259  # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: another user's process
        return True
    return True


def remove_stale_parts(folder: os.PathLike | str) -> List[Path]:
    """Delete the temporaries in ``folder`` left by writers that no longer run.

    A process killed mid-write (a crash during an autosave) leaves its
    ``.<name>.<random>.<PID>.part`` temporary behind forever; one whose PID is
    not a running process is removed. Temporaries of running processes, and
    files not named by :func:`atomic_paths` (older temporaries without a PID
    included), are left alone. A reused PID only keeps a stale file longer.
    Returns the files removed; never raises for a missing folder or a file it
    cannot remove.
    """
    removed: List[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _PART_NAME.match(entry.name)
        if not m:
            continue
        try:
            if not entry.is_file(follow_symlinks=False) or _pid_alive(int(m.group(1))):
                continue
            os.unlink(entry.path)
        except (OSError, ValueError, OverflowError):
            continue
        removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def atomic_path(final: os.PathLike | str) -> Iterator[Path]:
    """One-file form of :func:`atomic_paths`: yields the temporary path."""
    with atomic_paths([final]) as temps:
        yield temps[0]
