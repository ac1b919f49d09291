"""Whole operations shared by the front ends (CLI, batch, GUI scripts).

``separate_to_folder`` is ``demixstudio separate``: load a file, run a
method, write one file per layer and ``layers.json``.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from demixstudio.audio.io import load_audio
from demixstudio.errors import OutputError, ParameterError
from demixstudio.jobs.context import JobContext, NullContext
from demixstudio.separation.base import Hints, make_params, param_specs, params_to_dict
from demixstudio.separation.hintfiles import describe_hints
from demixstudio.separation.registry import get_method
from demixstudio.session.export import export
from demixstudio.session.session import Session

# A residual quieter than this (relative RMS) is rounding, not signal: it is
# reported in layers.json but not written as a file.
NEGLIGIBLE_RESIDUAL_DB = -80.0
#: What ``separate`` writes beside the stems.
MANIFEST = "layers.json"


def method_params(method_name: str, *, sources: "Optional[int | str]" = None,
                  settings: Optional[Dict[str, str]] = None, device: Optional[str] = None) -> Any:
    """Params for ``method_name`` from the CLI's ``--sources``, ``--set`` and ``--device``.

    ``sources="auto"`` is ``sources=0`` for methods whose 0 means "find the
    count" (their ``sources`` parameter accepts 0); others refuse it.
    """
    method = get_method(method_name)
    specs = {s.name: s for s in param_specs(method.Params)}
    names = set(specs)
    strings = dict(settings or {})
    if sources is not None:
        if "sources" not in names:
            raise ParameterError(f"method {method_name!r} does not take --sources")
        if sources == "auto":
            low = specs["sources"].min
            if low is not None and low > 0:
                raise ParameterError(f"method {method_name!r} cannot count its sources; "
                                     "give --sources N")
            sources = 0
        strings["sources"] = str(sources)
    if device not in (None, "auto"):
        if "device" in names:
            strings["device"] = device
        elif device != "cpu":
            raise ParameterError(f"method {method_name!r} runs on the CPU only; --device {device} "
                                 "applies to torch methods")
    return make_params(method.Params, strings=strings)


def run_notes(layers) -> list[str]:
    """The sentences a run's method left for the user (``LayerProposal.extra["note"]``),
    each once, in the layers' order."""
    notes = []
    for x in layers:
        note = x.provenance.analysis.get("note") if x.provenance is not None else None
        if note and note not in notes:
            notes.append(str(note))
    return notes


def separate_to_folder(mix_path: Path | str, method: str, out: Path | str, *,
                       params: Any = None, hints: Optional[Hints] = None,
                       ctx: Optional[JobContext] = None, ext: str = "wav", bits: str = "24",
                       sr: Optional[int] = None,
                       hint_warnings: Sequence[str] = ()) -> Dict[str, Any]:
    """Separate one file into ``out``; returns what ``layers.json`` records.

    ``hint_warnings``: what the caller was told while reading ``hints`` (a hint
    recording cut short), recorded with the mixture's own warnings."""
    ctx = ctx or NullContext()
    t0 = time.monotonic()
    mix_path = Path(mix_path)
    warnings: List[str] = []  # read but not whole: said in layers.json and by the caller
    audio, rate = load_audio(mix_path, sr=sr, on_warning=warnings.append)
    warnings.extend(hint_warnings)
    m = get_method(method)
    params = params if params is not None else m.Params()
    session = Session(audio, rate, name=mix_path.stem, source_path=str(mix_path))
    m.check_input(audio)
    out = Path(out)
    prepare_folder(out)
    layers = session.run_method(method, params, hints, ctx)
    residual_db = session.residual_level_db()
    to_write = list(layers)
    if residual_db > NEGLIGIBLE_RESIDUAL_DB:
        to_write.append(session.residual)
    stale = _files_of_an_earlier_run(out)
    doc: Dict[str, Any] = {}

    def manifest(written) -> str:
        files = {w.layer: w for w in written}
        doc.update({
            "mixture": str(mix_path), "sr": rate, "channels": session.channels,
            "samples": session.samples, "method": method, "params": params_to_dict(params),
            "hints": describe_hints(hints) if hints else {},
            "elapsed_s": round(time.monotonic() - t0, 3),
            "residual_db": None if not np.isfinite(residual_db) else round(residual_db, 2),
            "notes": run_notes(layers),
            "warnings": warnings,
            "layers": [{"name": x.name, "file": files[x.name].path.name,
                        "method": x.provenance.method if x.provenance else None,
                        "params": x.provenance.params if x.provenance else {},
                        **({"clipped_db": files[x.name].clipped_db}
                           if files[x.name].clipped_db is not None else {})}
                       for x in to_write],
        })
        return json.dumps(doc, indent=2)

    # The stems and layers.json are published together: a failed write leaves the
    # folder as it was, never new stems beside an old manifest.
    written = export(session, out, layers=to_write, ext=ext, bits=bits, naming="{layer}",
                     apply_settings=False, sidecars={MANIFEST: manifest})
    # Stems an earlier run wrote here that this one did not (other layer names)
    # would read as part of this result: they go.
    for name in stale - {w.path.name for w in written} - {MANIFEST}:
        with contextlib.suppress(OSError):
            (out / name).unlink()
    return doc


def _files_of_an_earlier_run(out: Path) -> set:
    """The file names the ``layers.json`` already in ``out`` lists (none if unreadable)."""
    try:
        old = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        return {Path(x["file"]).name for x in old["layers"] if x.get("file")}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def prepare_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from demixstudio.audio.atomic import describe_os_error
        raise OutputError(f"cannot create the output folder {out}: {describe_os_error(exc)}") from exc
    if not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder")


def missing_folders(folder: Path) -> List[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first:
    what ``folder.mkdir(parents=True)`` is about to create."""
    made = []
    p = Path(folder).absolute()
    while not p.exists() and p != p.parent:
        made.append(p)
        p = p.parent
    return made


def remove_empty_folders(folders: Sequence[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty; one with anything
    in it, and so each above it, is kept. ``rmdir`` never removes a file."""
    for p in folders:
        try:
            p.rmdir()
        except OSError:
            return


def check_device_present(params: Any) -> None:
    """Refuse a device (``params.device``) this machine lacks, before any work.

    For ``separate`` and for a batch on local workers, which see the same
    hardware as this process: ``device=cuda`` without CUDA is then one clear
    error at once, rather than a failure after the output folder is made (or
    the same failure recorded for every file). Not for a remote cluster,
    whose workers may well have the GPU this machine lacks.
    """
    device = getattr(params, "device", None)
    if isinstance(device, str) and device.lower() not in ("auto", "cpu"):
        from demixstudio.devices import pick_device

        pick_device(device)
