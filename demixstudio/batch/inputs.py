"""What a batch works on: audio files found in files, folders and list files.

An input is
- an audio file (by extension): itself, written to ``OUT/<name without extension>/``;
- a folder: every audio file under it, recursively (hidden files and folders
  skipped), written to ``OUT/<path relative to the folder, without extension>/``;
- a list file (``.txt``, ``.lst``, ``.list``): one path per line (blank lines
  and ``#`` comments skipped; relative paths are relative to the list
  file's folder), each a file or a folder as above.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Dict, Iterable, List, Optional

from demixstudio.batch.task import listed_files
from demixstudio.errors import ParameterError

#: File extensions taken as audio when scanning folders (what libsndfile reads).
AUDIO_EXTENSIONS = frozenset({
    ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc",
    ".caf", ".w64", ".rf64", ".au", ".snd"})
#: File extensions read as lists of paths.
LIST_EXTENSIONS = frozenset({".txt", ".lst", ".list"})


@dataclass(frozen=True)
class InputFile:
    """One file of a batch.

    path : the audio file (absolute)
    rel : where its outputs go below the output folder (POSIX form, no extension)
    """

    path: Path
    rel: PurePosixPath


def _is_hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _scan_folder(folder: Path, exclude: Optional[Path]) -> List[InputFile]:
    found = []
    for root, dirs, files in os.walk(folder):
        root_p = Path(root)
        # Never descend into the output folder (it may sit inside an input folder).
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and (exclude is None or (root_p / d).resolve() != exclude))
        results = listed_files(root_p) or set()  # stems of a separation result here
        for name in sorted(files):
            p = root_p / name
            if name.startswith(".") or p.suffix.lower() not in AUDIO_EXTENSIONS \
                    or name in results:
                continue
            rel = p.relative_to(folder)
            if _is_hidden(rel):
                continue
            found.append(InputFile(p.resolve(), PurePosixPath(rel.with_suffix("").as_posix())))
    return found


def _read_list(list_file: Path) -> List[Path]:
    try:
        text = list_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ParameterError(f"cannot read the list of inputs {list_file}: {exc}") from exc
    base = list_file.parent
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line).expanduser()
        out.append(p if p.is_absolute() else base / p)
    return out


def _expand(item: Path, exclude: Optional[Path], from_list: bool) -> List[InputFile]:
    if item.is_dir():
        return _scan_folder(item, exclude)
    if item.is_file():
        ext = item.suffix.lower()
        if ext in LIST_EXTENSIONS:
            if from_list:
                raise ParameterError(f"{item}: a list of inputs may name files and folders, "
                                     "not other lists")
            return [f for entry in _read_list(item) for f in _expand(entry, exclude, True)]
        # Any other file is taken as audio: a wrong guess fails for that file
        # alone, with its reason in the manifest.
        return [InputFile(item.resolve(), PurePosixPath(item.stem))]
    raise ParameterError(f"{item}: no such file or folder")


def collect_inputs(items: Iterable[os.PathLike | str], *,
                   exclude: Optional[os.PathLike | str] = None) -> List[InputFile]:
    """The audio files named by ``items`` (files, folders, list files), in order.

    ``exclude`` is a folder never scanned (the batch's output folder). A file
    named twice is kept once. Two different files that would share an output
    folder raise ``ParameterError`` naming both.
    """
    excl = Path(exclude).resolve() if exclude is not None else None
    seen: Dict[Path, InputFile] = {}
    by_rel: Dict[PurePosixPath, Path] = {}
    for item in items:
        for f in _expand(Path(item).expanduser(), excl, False):
            if f.path in seen:
                continue
            other = by_rel.get(f.rel)
            if other is not None:
                raise ParameterError(
                    f"{other} and {f.path} would both be written to <out>/{f.rel}/; "
                    "rename one, or pass their parent folder so the paths differ")
            seen[f.path] = f
            by_rel[f.rel] = f.path
    return list(seen.values())
