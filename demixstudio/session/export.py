"""Export: each layer as a stem, and the remix.

Stems have the mixture's length, rate and start, so they line up at zero
in a DAW. File names are ``<song> - <layer>.<ext>``. A stem carries its
layer's gain and pan (mute and solo decide what the remix contains, not
which stems are written). All files of one export are written to
temporary names and renamed together at the end: an export that fails (a
full disk, no permission) leaves nothing under a final name.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from demixstudio.audio.atomic import atomic_paths
from demixstudio.audio.io import output_format, peak, write_audio
from demixstudio.errors import OutputError, ParameterError
from demixstudio.session.layer import Layer
from demixstudio.session.session import Session

# Above this an integer sample clips (a little over 1.0: float rounding in the
# masks must not count as clipping).
CLIP_LEVEL = 1.0 + 1e-6

_UNSAFE = re.compile(r'[\\/:*?"<>|\x00-\x1f]')


def safe_filename(text: str) -> str:
    """``text`` made usable as a file name on every desktop OS."""
    cleaned = _UNSAFE.sub("_", text).strip(" .")
    return cleaned or "untitled"


@dataclass(frozen=True)
class ExportedFile:
    """One written file: which layer (None for the remix), where, and whether
    its integer format clipped it (``clipped_db``: its peak in dBFS when above
    full scale, else None)."""

    layer: Optional[str]
    path: Path
    clipped_db: Optional[float] = None


def clipped_db(audio) -> Optional[float]:
    """The peak of (channels, samples) audio in dBFS when an integer format would
    clip it, else None."""
    level = peak(audio)
    return round(20 * math.log10(level), 2) if level > CLIP_LEVEL else None


def clipping_warning(name: str, level_db: float,
                     remedy: str = "export as float WAV to keep it exactly") -> str:
    """The one line that says ``name`` was clipped (the CLI and the editor word it alike)."""
    return f"{name} peaks at {level_db:+.1f} dBFS and was clipped at full scale; {remedy}"


def clipping_warnings(files: Sequence[ExportedFile]) -> List[str]:
    """One line per clipped file, saying how to keep it whole."""
    return [clipping_warning(f.path.name, f.clipped_db) for f in files
            if f.clipped_db is not None]


def export(session: Session, folder: os.PathLike | str, *, stems: bool = True,
           remix: bool = False, layers: Optional[Sequence[Layer | str]] = None,
           ext: str = "wav", bits: str = "24", song: Optional[str] = None,
           naming: str = "{song} - {layer}", apply_settings: bool = True,
           sidecars: Optional[Dict[str, Callable[[List[ExportedFile]], str]]] = None
           ) -> List[ExportedFile]:
    """Write stems and/or the remix of ``session`` into ``folder``.

    Parameters
    ----------
    layers : the layers to write as stems (default: all, residual included)
    ext : "wav" or "flac"; bits : "16", "24" or "float" (WAV only)
    song : the song name in file names (default: the session's name)
    naming : file name template for stems, with ``{song}`` and ``{layer}``
    apply_settings : apply each layer's gain and pan to its stem
    sidecars : text files to write beside the audio ({file name: a function
        of the list of files written, returning the text}, e.g. a manifest);
        they are published together with the audio, all or nothing

    Integer formats cannot hold samples beyond full scale (stems of a loud,
    limited master often exceed it where the mixture does not): such a file is
    clipped, as every editor does, and says so in ``clipped_db`` (see
    :func:`clipping_warnings`), since clipped stems no longer add up exactly;
    float WAV keeps everything.

    Returns the files written, in layer order, the remix last.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise OutputError(f"cannot export into {folder}: no such folder")
    ext = ext.lower().lstrip(".")
    fmt, subtype = output_format(f"x.{ext}", bits)
    song_name = safe_filename(song or session.name)
    chosen = list(session.layers) if layers is None else [
        x if isinstance(x, Layer) else session.layer(x) for x in layers]
    jobs: List[tuple] = []
    names = set()
    if stems:
        for layer in chosen:
            fname = safe_filename(_file_stem(naming, song_name, layer.name)) + f".{ext}"
            if fname in names:
                raise ParameterError(f"two layers would both be written as {fname!r}; rename one")
            names.add(fname)
            jobs.append((layer, folder / fname))
    if remix:
        fname = f"{song_name} - remix.{ext}"
        if fname in names:
            # A layer named "remix" would be written over by the remix itself.
            raise ParameterError(f"a stem and the remix would both be written as {fname!r}; "
                                 "rename that layer")
        jobs.append((None, folder / fname))
    if not jobs:
        raise ParameterError("nothing to export: choose stems and/or the remix")
    texts = {folder / name: make for name, make in (sidecars or {}).items()}
    refuse_overwriting_the_input(session, [p for _, p in jobs] + list(texts))
    files: List[ExportedFile] = []
    with atomic_paths([p for _, p in jobs] + list(texts)) as temps:
        for (layer, final), tmp in zip(jobs, temps):
            audio = (session.mixdown() if layer is None
                     else session.stem(layer, apply_settings=apply_settings))
            clipped = clipped_db(audio) if subtype != "FLOAT" else None
            write_audio(tmp, audio, session.sr, fmt, subtype, shown=final)
            files.append(ExportedFile(None if layer is None else layer.name, final, clipped))
        # The sidecars are made last (they may describe the audio files, their
        # clipping included) and published with them, all or nothing.
        for tmp, make in zip(temps[len(jobs):], texts.values()):
            tmp.write_text(make(files), encoding="utf-8")
    return files


def _file_stem(naming: str, song: str, layer: str) -> str:
    try:
        return naming.format(song=song, layer=layer)
    except (KeyError, IndexError, ValueError) as exc:
        raise ParameterError(f"file name template {naming!r} is not valid: it may hold "
                             "{song} and {layer} and nothing else in braces") from exc


def refuse_overwriting_the_input(session: Session, paths: Sequence[Path]) -> None:
    """The recording a session was opened from is never the target of a write
    (an export's files, a remix): raise ``OutputError`` if one of ``paths`` is it."""
    if not session.source_path:
        return
    src = Path(session.source_path)
    for p in paths:
        same = (os.path.samefile(p, src) if p.exists() and src.exists()
                else p.resolve() == src.resolve())
        if same:
            raise OutputError(f"{p.name} would write over the input recording {src}; "
                              "choose another name or folder")

