"""Atomic file writes: write a temporary file beside the target, then rename.

A reader (or a crash) never sees a half-written file under the final name,
and a failed write leaves whatever was there before untouched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Iterator, List, Sequence

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
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "permission denied"
    return exc.strerror or str(exc)


@contextlib.contextmanager
def atomic_paths(finals: Sequence[os.PathLike | str]) -> Iterator[List[Path]]:
    """Yield temporary paths beside each of ``finals``; rename them all on success.

    All or nothing: the renames happen only after every file was written, and
    on any exception every temporary file is removed and the exception is
    re-raised (``OSError`` as ``OutputError`` naming the reason).
    """
    finals = [Path(f) for f in finals]
    temps: List[Path] = []
    try:
        for final in finals:
            folder = final.parent if str(final.parent) else Path(".")
            if not folder.is_dir():
                raise OutputError(f"cannot write {final}: the folder {folder} does not exist")
            fd, tmp_name = tempfile.mkstemp(prefix=f".{final.stem}.",
                                            suffix=final.suffix + ".part", dir=folder)
            os.close(fd)
            temps.append(Path(tmp_name))
        yield temps
        for tmp in temps:
            # Flush to disk before the rename so a crash can't leave an empty
            # file under the final name.
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp, _FILE_MODE)
        for tmp, final in zip(temps, finals):
            os.replace(tmp, final)
    except BaseException as exc:
        for tmp in temps:
            with contextlib.suppress(OSError):
                tmp.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            where = finals[0] if len(finals) == 1 else finals[0].parent
            raise OutputError(f"cannot write {where}: {describe_os_error(exc)}") from exc
        raise


@contextlib.contextmanager
def atomic_path(final: os.PathLike | str) -> Iterator[Path]:
    """One-file form of :func:`atomic_paths`: yields the temporary path."""
    with atomic_paths([final]) as temps:
        yield temps[0]
