"""Export: each layer as a stem, and the remix.

Stems have the mixture's length, rate and start, so they line up at zero
in a DAW. File names are ``<song> - <layer>.<ext>``. A stem carries its
layer's gain and pan (mute and solo decide what the remix contains, not
which stems are written). All files of one export are written to
temporary names and renamed together at the end: an export that fails (a
full disk, no permission) leaves nothing under a final name.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from demixstudio.audio.atomic import atomic_paths
from demixstudio.audio.io import output_format, write_audio
from demixstudio.errors import OutputError, ParameterError
from demixstudio.session.layer import Layer
from demixstudio.session.session import Session

_UNSAFE = re.compile(r'[\\/:*?"<>|\x00-\x1f]')


def safe_filename(text: str) -> str:
    """``text`` made usable as a file name on every desktop OS."""
    cleaned = _UNSAFE.sub("_", text).strip(" .")
    return cleaned or "untitled"


@dataclass(frozen=True)
class ExportedFile:
    """One written file: which layer (None for the remix), where."""

    layer: Optional[str]
    path: Path


def export(session: Session, folder: os.PathLike | str, *, stems: bool = True,
           remix: bool = False, layers: Optional[Sequence[Layer | str]] = None,
           ext: str = "wav", bits: str = "24", song: Optional[str] = None,
           naming: str = "{song} - {layer}", apply_settings: bool = True) -> List[ExportedFile]:
    """Write stems and/or the remix of ``session`` into ``folder``.

    Parameters
    ----------
    layers : the layers to write as stems (default: all, residual included)
    ext : "wav" or "flac"; bits : "16", "24" or "float" (WAV only)
    song : the song name in file names (default: the session's name)
    naming : file name template for stems, with ``{song}`` and ``{layer}``
    apply_settings : apply each layer's gain and pan to its stem

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
            fname = safe_filename(naming.format(song=song_name, layer=layer.name)) + f".{ext}"
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
    with atomic_paths([p for _, p in jobs]) as temps:
        for (layer, _), tmp in zip(jobs, temps):
            audio = (session.mixdown() if layer is None
                     else session.stem(layer, apply_settings=apply_settings))
            write_audio(tmp, audio, session.sr, fmt, subtype)
    return [ExportedFile(None if layer is None else layer.name, p) for layer, p in jobs]
