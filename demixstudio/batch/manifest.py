"""The batch manifest: one JSON record per line, per file and run.

Records are appended by the coordinating process only (workers return them),
each line flushed to disk at once, so an interrupted batch leaves a valid
manifest (a torn last line, if any, is ignored on reading).

A file is *done* — and skipped on a re-run — when all of these hold:
- its latest record (skips aside) says ``ok``;
- that record was made with the same method, parameters, hints and output
  format, the same model (its checksum) and the same hint files (size and
  modification time) — the ``signature``;
- the input has not changed since (same size and modification time);
- the outputs are there: ``layers.json`` parses and every file it lists exists.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

from demixstudio.audio.atomic import describe_os_error
from demixstudio.errors import OutputError

MANIFEST_NAME = "manifest.jsonl"
#: Statuses a file's record can have. "skipped" lines only log a re-run's
#: decision; the others record an attempt.
STATUSES = ("ok", "error", "cancelled", "skipped")


def signature(method: str, params: Dict[str, Any], hints: Iterable[str], ext: str,
              bits: str, inputs: Optional[Dict[str, Any]] = None) -> str:
    """A short stable hash of everything that decides a file's outputs.

    ``inputs``: what the parameters name but do not hold — the model's
    checksum, the hint files' size and modification time — so that a model
    re-imported under the same name, or a hint file rewritten in place,
    makes the files be separated again.
    """
    doc = {"method": method, "params": params, "hints": sorted(hints), "ext": ext, "bits": bits}
    if inputs:
        doc["inputs"] = inputs
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def input_stamp(path: Path) -> Dict[str, int]:
    """Size and modification time of an input (empty if it can't be read)."""
    try:
        st = path.stat()
    except OSError:
        return {}
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def append(manifest: Path, records: Iterable[Dict[str, Any]]) -> None:
    """Append records as JSON lines and flush them to disk."""
    lines = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in records)
    if not lines:
        return
    try:
        with open(manifest, "a", encoding="utf-8") as fh:
            fh.write(lines)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise OutputError(f"cannot write the manifest {manifest}: {describe_os_error(exc)}") from exc


def read(manifest: Path) -> List[Dict[str, Any]]:
    """Every well-formed record of ``manifest`` (none if it does not exist)."""
    if not manifest.is_file():
        return []
    out = []
    with open(manifest, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a crash or a full disk
            if isinstance(rec, dict) and "output" in rec and rec.get("status") in STATUSES:
                out.append(rec)
    return out


def latest(records: Iterable[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """The latest attempt (not a skip) recorded for each output path."""
    last: Dict[str, Dict[str, Any]] = {}
    for rec in records:
        if rec["status"] != "skipped":
            last[rec["output"]] = rec
    return last


def outputs_complete(folder: Path) -> bool:
    """Whether ``folder`` holds a readable ``layers.json`` and every file it lists."""
    try:
        doc = json.loads((folder / "layers.json").read_text(encoding="utf-8"))
        files = [x["file"] for x in doc["layers"] if x.get("file")]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return bool(files) and all((folder / f).is_file() for f in files)


def is_done(record: Optional[Dict[str, Any]], out_root: Path, sig: str,
            stamp: Dict[str, int]) -> bool:
    """Whether a file whose latest record is ``record`` needs no new run (see the module doc)."""
    if record is None or record.get("status") != "ok" or record.get("signature") != sig:
        return False
    if not stamp or record.get("input_size") != stamp.get("size") \
            or record.get("input_mtime_ns") != stamp.get("mtime_ns"):
        return False
    return outputs_complete(out_root / record["output"])
