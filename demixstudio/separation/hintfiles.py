"""Hints given as files (the CLI's ``--hint KIND:TARGET=FILE``, batch jobs).

KIND is ``example`` (a clean recording of the target), ``hum`` (a vocalized
imitation) or ``paint``. A paint FILE is JSON — a list of
``[t0_s, t1_s, f0_hz, f1_hz, strength]`` rectangles, bare or as ``{"rects": [...]}``
— or an ``.npz`` with
``mask`` (freqs × frames, values in [0, 1]), ``times`` (s) and ``freqs``
(Hz), interpolated later onto the method's own grid (0 outside the mask's
extent; a mask of one frame or one frequency covers the nearest frame or bin of
that grid: see ``PaintHint.on_grid``).
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Callable, Iterable, Optional, Tuple

import numpy as np

from demixstudio.audio.io import (ENERGY_STEP, audio_info, load_audio, read_spans, resample,
                                  scan_energies)
from demixstudio.errors import ParameterError
from demixstudio.separation import excerpts
from demixstudio.separation.base import AudioHint, Hints, PaintHint

KINDS = ("example", "hum", "paint")


def parse_hint_spec(spec: str) -> Tuple[str, str, Path]:
    """Split ``KIND:TARGET=FILE`` into its parts, naming what is wrong if it can't."""
    kind, sep, rest = spec.partition(":")
    target, sep2, file = rest.partition("=")
    if not sep or not sep2 or not target.strip() or not file.strip():
        raise ParameterError(f"hint {spec!r} must look like KIND:TARGET=FILE (e.g. example:vocals=voice.wav)")
    if kind not in KINDS:
        raise ParameterError(f"hint kind {kind!r} is not one of {', '.join(KINDS)}")
    return kind, target.strip(), Path(file.strip())


def load_paint(path: Path) -> PaintHint:
    """Read a paint hint file (JSON rectangles or an NPZ mask)."""
    if path.is_dir():
        raise ParameterError(f"paint hint {path}: is a folder, not a paint file")
    if not path.is_file():
        raise ParameterError(f"paint hint {path}: no such file")
    if path.suffix.lower() == ".npz":
        hint = PaintHint(**_npz_arrays(path), source=str(path))
        hint.check()
        return hint
    if path.suffix.lower() == ".npy":
        # A bare mask has no time or frequency axis to put it on the method's grid.
        raise ParameterError(f"paint hint {path}: a .npy holds one array; save the mask with "
                             f"its axes as an NPZ (numpy.savez(FILE, mask=..., times=..., "
                             f"freqs=...)) or give JSON rectangles")
    form = ("a paint file is JSON, a list of [t0_s, t1_s, f0_hz, f1_hz, strength] "
            "rectangles, or an NPZ of mask, times and freqs")
    try:
        rects = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        # Binary: most likely a recording given as paint instead of as example: or hum:.
        raise ParameterError(f"paint hint {path}: not a paint file ({form}; a recording "
                             "goes with example: or hum:)") from None
    except json.JSONDecodeError as exc:
        raise ParameterError(f"paint hint {path}: not JSON ({exc}); {form}") from None
    if isinstance(rects, dict) and set(rects) == {"rects"}:
        rects = rects["rects"]  # {"rects": [...]}, as PaintHint names them
    if not isinstance(rects, list):
        kind = {"dict": "object", "str": "string", "NoneType": "null", "bool": "boolean"}.get(
            type(rects).__name__, "number")
        raise ParameterError(f"paint hint {path}: holds a JSON {kind}; {form}")
    for i, r in enumerate(rects):
        if not (isinstance(r, list) and len(r) == 5
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in r)):
            shown = json.dumps(r)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise ParameterError(f"paint hint {path}: rectangle {i + 1} is {shown}, not five "
                                 "numbers [t0_s, t1_s, f0_hz, f1_hz, strength]")
    hint = PaintHint(rects=tuple(tuple(float(v) for v in r) for r in rects), source=str(path))
    hint.check()
    return hint


NPZ_ARRAYS = ("mask", "times", "freqs")


def _npz_arrays(path: Path) -> dict:
    """``mask``, ``times`` and ``freqs`` of an NPZ paint file as real arrays (mask
    float32, the axes float64, shapes unchecked); a ParameterError naming the file
    for anything that is not an NPZ archive holding them as numbers."""
    not_npz = f"paint hint {path}: not a valid NPZ file (save it with numpy.savez)"
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile):
        # Without the zip signature np.load takes the file for a pickle and
        # refuses it as such: the user's mistake is the file's format.
        raise ParameterError(not_npz) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ParameterError(f"paint hint {path}: holds one .npy array, not an NPZ archive "
                             f"of {', '.join(NPZ_ARRAYS)}")
    with archive:
        missing = [k for k in NPZ_ARRAYS if k not in archive.files]
        if missing:
            raise ParameterError(f"paint hint {path}: has no {', '.join(missing)} "
                                 f"(an NPZ paint file needs {', '.join(NPZ_ARRAYS)})")
        out = {}
        for k in NPZ_ARRAYS:
            try:
                a = archive[k]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
                raise ParameterError(f"paint hint {path}: {k} cannot be read as numbers "
                                     f"({exc})") from None
            if not isinstance(a, np.ndarray) or a.dtype.kind not in "biuf":
                what = a.dtype if isinstance(a, np.ndarray) else "raw bytes"
                raise ParameterError(f"paint hint {path}: {k} holds {what}, not real numbers")
            out[k] = a.astype(np.float32 if k == "mask" else np.float64)
    return out


def load_recording(path: os.PathLike | str, sr: Optional[int] = None,
                   on_warning: Optional[Callable[[str], None]] = None) -> AudioHint:
    """An example or hum file as an ``AudioHint`` at ``sr`` (None: the file's rate).

    A file longer than ``excerpts.MAX_EXAMPLE_S`` is sampled as it is read: one pass
    measures where it has sound, and only the excerpts the methods would analyse
    (``excerpts.example_spans``) are decoded and resampled, each on its own
    (``AudioHint.joins``). An hour of 44.1 kHz stereo then costs 60–90 MB, not
    1.2–1.9 GB. Errors and ``on_warning`` are those of ``load_audio``; a file that
    stops decoding before its end is read whole, as ``load_audio`` salvages it."""
    def whole() -> AudioHint:
        audio, rate = load_audio(path, sr=sr, on_warning=on_warning)
        return AudioHint(audio, rate, str(path))

    info = audio_info(path)
    if info.frames <= excerpts.MAX_EXAMPLE_S * info.sr:
        return whole()
    # Blocks of at most a sixteenth of the shortest excerpt, so that even at a low
    # rate each excerpt-long stretch holds whole blocks to measure.
    step = min(ENERGY_STEP, max(1, int(excerpts.MIN_EXCERPT_S * info.sr) // 16))
    scan = scan_energies(path, step=step, on_warning=on_warning)
    if scan is None:
        return whole()
    spans = excerpts.example_spans([scan.frames], [scan.sr], audio=[scan.stretches])[0]
    pieces = read_spans(path, spans)
    if not pieces:  # nothing where the pass read audio: a file that changed since?
        return whole()
    rate = scan.sr if sr is None else int(sr)
    if rate != scan.sr:
        pieces = [resample(p, scan.sr, rate) for p in pieces]
    joins = tuple(int(j) for j in np.cumsum([p.shape[1] for p in pieces[:-1]]))
    # A file cut short to within the limit is whole after all.
    sampled = sum(b - a for a, b in spans) < scan.frames
    return AudioHint(np.concatenate(pieces, axis=1), rate, str(path), joins=joins,
                     whole_s=scan.frames / scan.sr if sampled else None)


def load_hints(specs: Iterable[str], sr: int,
               on_warning: Optional[Callable[[str], None]] = None) -> Hints:
    """Build ``Hints`` from ``KIND:TARGET=FILE`` specs; audio is resampled to ``sr``
    (a long recording is sampled as it is read: :func:`load_recording`).

    ``on_warning`` hears of a recording that is read but not whole (cut short:
    see ``load_audio``), which is then used for what it holds; without it such a
    file may be an error."""
    hints = Hints()
    for spec in specs:
        kind, target, path = parse_hint_spec(spec)
        if kind == "paint":
            if target in hints.paint:
                raise ParameterError(f"two paint hints for {target!r}; give one file per target")
            hints.paint[target] = load_paint(path)
        else:
            bucket = hints.examples if kind == "example" else hints.hums
            bucket.setdefault(target, []).append(load_recording(path, sr, on_warning))
    return hints


def describe_hints(hints: Hints) -> dict:
    """A JSON-ready summary of hints for provenance (files, not data)."""
    out: dict = {}
    for kind, d in (("example", hints.examples), ("hum", hints.hums)):
        for target, lst in d.items():
            out.setdefault(kind, {})[target] = [h.source for h in lst]
    for target, paint in hints.paint.items():
        out.setdefault("paint", {})[target] = paint.source
    return out
