"""``demixstudio eval``: score a folder of estimates against a folder of references.

References are the true source images (one audio file each). Estimates are
the files of a ``separate --out`` folder (those listed in its ``layers.json``
when present) or any audio files. When there are more estimates than
references (a residual, extra components), the estimates that best match
the references are chosen first (by SI-SDR, a one-to-one assignment); BSS
Eval then solves the permutation among those.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
from scipy.optimize import linear_sum_assignment

from demixstudio.audio.io import load_audio
from demixstudio.errors import ParameterError
from demixstudio.metrics.bsseval import bss_eval
from demixstudio.metrics.sisdr import si_sdr

AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff", ".oga", ".opus")


def _audio_files(folder: Path) -> List[Path]:
    if not folder.is_dir():
        raise ParameterError(f"{folder}: no such folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_EXTS)
    if not files:
        raise ParameterError(f"{folder}: holds no audio files")
    return files


def _estimate_files(folder: Path) -> List[Path]:
    listing = folder / "layers.json"
    if listing.is_file():
        try:
            doc = json.loads(listing.read_text(encoding="utf-8"))
            files = [folder / x["file"] for x in doc["layers"] if x.get("file")]
        except (ValueError, KeyError, TypeError) as exc:
            raise ParameterError(f"{listing}: not a valid layers.json ({exc})") from exc
        if files:
            return files
    return _audio_files(folder)


def _fit(audio: np.ndarray, channels: int, length: int, name: str) -> np.ndarray:
    if audio.shape[0] != channels:
        if audio.shape[0] == 1:
            audio = np.repeat(audio, channels, axis=0)
        else:
            raise ParameterError(f"{name} has {audio.shape[0]} channels; the references have {channels}")
    if audio.shape[1] >= length:
        return audio[:, :length]
    return np.pad(audio, ((0, 0), (0, length - audio.shape[1])))


def evaluate_folders(reference: Path, estimates: Path, *, device: Optional[str] = None
                     ) -> Dict[str, Any]:
    """BSS Eval v4 of the estimates in one folder against the references in another.

    Returns a JSON-ready dict: ``sources`` (per reference: reference,
    estimate, sdr, sir, sar, isr in dB), ``median_sdr``, ``unmatched``
    (estimate files not assigned to a reference) and ``elapsed_s``.
    """
    t0 = time.monotonic()
    ref_files = _audio_files(reference)
    est_files = _estimate_files(estimates)
    refs = [load_audio(p) for p in ref_files]
    sr = refs[0][1]
    if any(r[1] != sr for r in refs):
        raise ParameterError(f"{reference}: the references have different sample rates")
    channels = refs[0][0].shape[0]
    length = max(r[0].shape[1] for r in refs)
    ref = np.stack([_fit(a, channels, length, p.name) for (a, _), p in zip(refs, ref_files)])
    ests = [_fit(load_audio(p, sr=sr)[0], channels, length, p.name) for p in est_files]
    if len(ests) < len(ref_files):
        raise ParameterError(
            f"{len(ests)} estimates for {len(ref_files)} references; every reference needs one")
    est = np.stack(ests)
    chosen = np.arange(len(ests))
    if len(ests) > len(ref_files):
        # Pick the estimates that match the references best, one each.
        score = np.array([[np.mean(si_sdr(r, e)) for e in est] for r in ref])
        _, chosen = linear_sum_assignment(-np.nan_to_num(score, nan=-1e9))
    res = bss_eval(ref, est[chosen], sr, device=None if device in (None, "auto") else device)
    rows = []
    for i, p in enumerate(ref_files):
        j = int(chosen[res.permutation[i]])
        rows.append({"reference": p.name, "estimate": est_files[j].name,
                     "sdr": float(res.sdr[i]), "sir": float(res.sir[i]),
                     "sar": float(res.sar[i]), "isr": float(res.isr[i])})
    used = {r["estimate"] for r in rows}
    return {"sources": rows, "median_sdr": float(np.nanmedian([r["sdr"] for r in rows])),
            "unmatched": [p.name for p in est_files if p.name not in used],
            "sr": sr, "elapsed_s": round(time.monotonic() - t0, 3)}
