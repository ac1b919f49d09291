"""The model store: checkpoints the user trained or imported, in the user data folder.

Location: ``$DEMIXSTUDIO_MODELS_DIR`` if set, else
``platformdirs.user_data_dir("demixstudio")/models``. Each model is a folder
``<name>/`` holding ``model.safetensors`` (the weights) and ``manifest.json``:

    {"format": "demixstudio-model", "version": 1, "name", "arch", "hparams",
     "targets", "sample_rate", "nb_channels", "weights": "model.safetensors",
     "sha256", "source", "imported_from"}

Import reads weights only — safetensors, or ``torch.load(weights_only=True)``
for Open-Unmix's ``.pth`` files — never an arbitrary pickle; it rebuilds the
model from the hyper-parameters, loads the weights strictly (every parameter
present, every shape right) and only then writes the store entry. The
checksum is verified on every load. Manifests and json files are checked for
structure, types and sane sizes first (they may have been edited by hand), so
a bad checkpoint is refused in one line naming the file and the value; a
store entry that became unreadable is skipped by :func:`list_models` (with a
logged warning) rather than hiding the others. Writes to the store go through
hidden temporary names and single renames, so a failed import or removal
(a read-only store, a full disk) leaves every entry as it was.

Accepted checkpoints:

- a folder written by ``demixstudio train`` (``manifest.json`` + ``model.safetensors``);
- Open-Unmix's layout: a folder of ``<target>.pth`` (a state dict) with
  ``<target>.json`` (its training arguments: ``args.nfft``, ``args.nhop``,
  ``args.hidden_size``, ``args.nb_channels``, ...) and optionally
  ``separator.json`` (``sample_rate``, ``nfft``, ``nhop``, ``nb_channels``),
  or one such ``<target>.pth`` file with its json beside it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch

from demixstudio.audio.atomic import atomic_path, describe_os_error
from demixstudio.errors import DemixError, OutputError, ParameterError
from demixstudio.separation.dnn.models import ARCHITECTURES, StemModel, build_model
from demixstudio.separation.dnn.models.base import (MAX_N_FFT, check_sample_rate,
                                                     check_targets, whole_number)
from demixstudio.separation.dnn.models.umx import OpenUnmix

log = logging.getLogger("demixstudio.models")

ENV_VAR = "DEMIXSTUDIO_MODELS_DIR"
MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"
FORMAT = "demixstudio-model"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
#: Open-Unmix's default sample rate, used when a checkpoint has no separator.json.
UMX_DEFAULT_RATE = 44100
MUSDB_ORDER = ("vocals", "drums", "bass", "other")


@dataclass(frozen=True)
class ModelInfo:
    """One store entry, as ``models list`` shows it."""

    name: str
    arch: str
    targets: Tuple[str, ...]
    sample_rate: int
    nb_channels: int
    sha256: str
    source: str
    path: Path

    def as_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "arch": self.arch, "targets": list(self.targets),
                "sample_rate": self.sample_rate, "nb_channels": self.nb_channels,
                "sha256": self.sha256, "source": self.source, "path": str(self.path)}


def models_dir() -> Path:
    """The store folder (not created)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("demixstudio", appauthor=False)) / "models"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


#: Terminal control sequences (colours, cursor moves) some libraries put in messages.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")


def _first_line(exc: BaseException) -> str:
    """``TypeName: first line of the message`` (some exceptions have no message at all).

    Terminal escape codes (torch colours its unpickling errors) are removed, and
    any other control character, so the line prints as plain text.
    """
    text = re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", "", _ANSI.sub("", str(exc)))
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0][:160]}" if lines else type(exc).__name__


#: What a checkpoint that slipped past every check may still raise while it is
#: read or its model built; turned into one line by :func:`_checkpoint_guard`.
_UNEXPECTED = (ValueError, TypeError, KeyError, IndexError, AttributeError, ArithmeticError,
               RuntimeError)


@contextlib.contextmanager
def _checkpoint_guard(path: Path, what: str = "import") -> Iterator[None]:
    """Read errors and unexpected failures while reading ``path`` as one clear line.

    The readers check the structure, types and sizes they rely on and say
    what is wrong; this is only the backstop for what they did not foresee,
    so that a strange checkpoint is refused rather than reported as an
    internal error.
    """
    try:
        yield
    except DemixError:
        raise
    except OSError as exc:
        raise ParameterError(f"cannot {what} {path}: {describe_os_error(exc)}") from None
    except _UNEXPECTED as exc:
        raise ParameterError(f"cannot {what} {path}: the checkpoint is not a valid model "
                             f"({_first_line(exc)})") from None


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise ParameterError(f"model name {name!r} must be letters, digits, '.', '_' or '-' "
                             "(at most 100, not starting with a dot)")
    return name


def check_import_name(name: str, *, overwrite: bool = False) -> str:
    """``name`` if it is valid and free in the store (or ``overwrite``), else a clear refusal.

    For callers that import only after long work (``train --import-as``).
    """
    check_name(name)
    dest = _store_folder(f"import as {name!r}") / name
    if dest.exists() and not overwrite:
        raise ParameterError(f"a model named {name!r} is already in the store; "
                             "remove it first, choose another name or add --force")
    return name


# --------------------------------------------------------------------------
# native layout
# --------------------------------------------------------------------------


def save_model(model: StemModel, folder: Path, *, source: str = "demixstudio",
               extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Write ``model`` as ``folder/model.safetensors`` + ``folder/manifest.json``; returns the manifest."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"arch": model.arch})
    manifest = {"format": FORMAT, "version": 1, "name": folder.name, "arch": model.arch,
                "hparams": model.hparams(), "targets": list(model.targets),
                "sample_rate": model.sample_rate, "nb_channels": model.nb_channels,
                "weights": WEIGHTS, "sha256": _sha256(folder / WEIGHTS), "source": source,
                **(extra or {})}
    with atomic_path(folder / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest


def _read_manifest(folder: Path) -> Dict[str, Any]:
    try:
        m = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ParameterError(f"{folder / MANIFEST}: not a readable model manifest ({exc})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT or m.get("arch") not in ARCHITECTURES:
        raise ParameterError(f"{folder / MANIFEST}: not a {FORMAT} manifest with a known arch "
                             f"({', '.join(ARCHITECTURES)})")
    if not isinstance(m.get("hparams"), dict):
        raise ParameterError(f"{folder / MANIFEST}: no hparams object; the manifest is damaged")
    weights = m.setdefault("weights", WEIGHTS)
    # A bare file name: the weights belong to the folder, never to a path elsewhere.
    if not isinstance(weights, str) or Path(weights).name != weights or weights in ("", ".", ".."):
        raise ParameterError(f"{folder / MANIFEST}: weights={weights!r} must be the name of "
                             "a file in the model folder")
    sha = m.get("sha256")
    if sha is not None and not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}|", sha)):
        raise ParameterError(f"{folder / MANIFEST}: sha256 must be a hex SHA-256 digest")
    return m


def _summary(folder: Path, m: Dict[str, Any]) -> Tuple[Tuple[str, ...], int, int]:
    """The manifest's checked ``targets``, ``sample_rate`` and ``nb_channels``."""
    try:
        for key in ("targets", "sample_rate", "nb_channels"):
            if key not in m:
                raise ParameterError(f"no {key}; the manifest is damaged")
        return (tuple(check_targets(m["targets"])), check_sample_rate(m["sample_rate"]),
                whole_number("nb_channels", m["nb_channels"], 1, 2))
    except ParameterError as exc:
        raise ParameterError(f"{folder / MANIFEST}: {exc}") from None


def _load_state_strict(model: StemModel, state: Dict[str, torch.Tensor], where: str) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ParameterError(f"{where}: weights do not fit a {model.arch} model with these "
                             f"hyper-parameters (missing {missing[:4]}, unexpected {unexpected[:4]})")
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise ParameterError(f"{where}: {k} has shape {tuple(v.shape)}, "
                                 f"the model expects {tuple(own[k].shape)}")
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise ParameterError(f"{where}: {k} holds NaN or infinite values")
    model.load_state_dict(state, strict=True)


def load_model_folder(folder: Path) -> StemModel:
    """Load a native model folder, verifying its checksum; returns the model in eval mode."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    m = _read_manifest(folder)
    weights = folder / m["weights"]
    if not weights.is_file():
        raise ParameterError(f"{weights}: missing weights file")
    try:
        digest = _sha256(weights)
    except OSError as exc:
        raise ParameterError(f"cannot read {weights}: {describe_os_error(exc)}") from None
    if m.get("sha256") and digest != m["sha256"]:
        raise ParameterError(f"{weights}: checksum mismatch; the file is damaged or was changed")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ParameterError(f"{weights}: not a readable safetensors file ({exc})") from None
    try:
        model = build_model(m["arch"], m["hparams"])
    except ParameterError as exc:
        raise ParameterError(f"{folder / MANIFEST}: {exc}") from None
    _load_state_strict(model, state, str(weights))
    # The summary is what `models list` shows and the hparams what runs: an
    # edit to one of them alone must not make the store describe another model.
    if _summary(folder, m) != (tuple(model.targets), model.sample_rate, model.nb_channels):
        raise ParameterError(f"{folder / MANIFEST}: targets, sample_rate or nb_channels "
                             "disagree with the hparams; the manifest was changed")
    return model.eval()


# --------------------------------------------------------------------------
# Open-Unmix layout
# --------------------------------------------------------------------------


def _torch_load_weights(path: Path) -> Dict[str, torch.Tensor]:
    """A state dict from ``path`` via ``torch.load(weights_only=True)`` (no arbitrary pickle)."""
    if path.is_file() and path.stat().st_size == 0:
        raise ParameterError(f"{path}: the file is empty")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except OSError as exc:
        raise ParameterError(f"cannot read {path}: {describe_os_error(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - the unpickler raises many kinds
        raise ParameterError(f"{path}: not a weights-only checkpoint; refusing to load it "
                             f"({_first_line(exc)})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # an Open-Unmix training checkpoint (.chkpnt)
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                            for k, v in obj.items()):
        raise ParameterError(f"{path}: does not hold a state dict of tensors")
    return obj


def _umx_files(path: Path) -> List[Tuple[str, Path, Path]]:
    """(target, .pth, .json) triples of an Open-Unmix folder or single file."""
    if path.is_file():
        target = path.stem.split("-")[0]
        js = path.with_name(target + ".json")
        if not js.is_file():
            raise ParameterError(f"{path}: Open-Unmix weights need {js.name} beside them")
        return [(target, path, js)]
    out = []
    for pth in sorted(path.glob("*.pth")):
        target = pth.stem.split("-")[0]  # hub files are named <target>-<sha>.pth
        js = path / f"{target}.json"
        if js.is_file():
            out.append((target, pth, js))
    # MUSDB's order first (Open-Unmix's own), then any other target by name.
    return sorted(out, key=lambda t: (MUSDB_ORDER.index(t[0]) if t[0] in MUSDB_ORDER
                                      else len(MUSDB_ORDER), t[0]))


def _read_json_object(path: Path, what: str) -> Dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ParameterError(f"cannot read {path}: {describe_os_error(exc)}") from None
    except ValueError as exc:
        raise ParameterError(f"{path}: not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ParameterError(f"{path}: not {what} (a JSON object was expected, "
                             f"not {type(doc).__name__})")
    return doc


def _umx_hparams(triples, state_of: Dict[str, Dict[str, torch.Tensor]],
                 folder: Path) -> Dict[str, Any]:
    """OpenUnmix hyper-parameters from the json files and the weights' shapes.

    Every value is checked here, with the file it came from in the message:
    the shapes must be those of an Open-Unmix network and the sizes sane,
    before any model is built from them.
    """
    sep: Dict[str, Any] = {}
    if (folder / "separator.json").is_file():
        sep = _read_json_object(folder / "separator.json", "an Open-Unmix separator.json")
    hp: Optional[Dict[str, Any]] = None
    for target, pth, js in triples:
        doc = _read_json_object(js, "an Open-Unmix target json")
        args = doc.get("args")
        if not isinstance(args, dict) or "nfft" not in args or "nhop" not in args:
            raise ParameterError(f"{js}: not an Open-Unmix target json (needs args.nfft, "
                                 "args.nhop)")
        try:
            nfft = whole_number("args.nfft", args["nfft"], 64, MAX_N_FFT)
            nhop = whole_number("args.nhop", args["nhop"], 1, nfft)
            bandwidth = args.get("bandwidth", 16000)
            if isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float)):
                raise ParameterError(f"args.bandwidth={bandwidth!r} must be a number of Hz")
        except ParameterError as exc:
            raise ParameterError(f"{js}: {exc}") from None
        rate_file = folder / "separator.json" if "sample_rate" in sep else js
        try:
            rate = check_sample_rate(sep.get("sample_rate",
                                             args.get("sample_rate", UMX_DEFAULT_RATE)))
        except ParameterError as exc:
            raise ParameterError(f"{rate_file}: {exc}") from None
        st = state_of[target]
        for key in ("fc1.weight", "fc3.weight", "input_mean", "lstm.weight_ih_l0"):
            if key not in st:
                raise ParameterError(f"{pth}: no {key}; not an Open-Unmix state dict")
        mean, fc1 = st["input_mean"], st["fc1.weight"]
        if mean.dim() != 1 or mean.shape[0] == 0:
            raise ParameterError(f"{pth}: input_mean has shape {tuple(mean.shape)}; "
                                 "Open-Unmix holds one value per input bin")
        max_bin = int(mean.shape[0])
        if fc1.dim() != 2 or fc1.shape[1] not in (max_bin, 2 * max_bin):
            raise ParameterError(f"{pth}: fc1.weight has shape {tuple(fc1.shape)}; Open-Unmix "
                                 f"expects (hidden size, {max_bin} or {2 * max_bin}) for "
                                 f"{max_bin} input bins")
        nb_layers = len([k for k in st if re.fullmatch(r"lstm\.weight_ih_l\d+", k)])
        this = {"sample_rate": rate, "nb_channels": int(fc1.shape[1]) // max_bin,
                "n_fft": nfft, "hop": nhop, "hidden_size": int(fc1.shape[0]),
                "nb_layers": nb_layers, "unidirectional": "lstm.weight_ih_l0_reverse" not in st,
                "bandwidth": float(bandwidth), "max_bin": max_bin}
        if hp is None:
            hp = this
        elif hp != this:
            raise ParameterError(f"{js}: targets of one Open-Unmix model must share their "
                                 f"STFT and sizes ({this} vs {hp})")
    assert hp is not None
    return hp


def read_open_unmix(path: Path) -> OpenUnmix:
    """Build an :class:`OpenUnmix` from Open-Unmix's files (weights only, strict)."""
    path = Path(path)
    triples = _umx_files(path)
    if not triples:
        raise ParameterError(f"{path}: no Open-Unmix <target>.pth with a <target>.json found")
    state_of = {}
    for target, pth, _js in triples:
        st = _torch_load_weights(pth)
        # Older Open-Unmix files also carry the STFT window; it is not a weight.
        state_of[target] = {k: v for k, v in st.items()
                            if not (k.endswith("window") or k.startswith(("stft.", "transform.")))}
    folder = path if path.is_dir() else path.parent
    hp = _umx_hparams(triples, state_of, folder)
    try:
        model = OpenUnmix(targets=[t for t, _, _ in triples], **hp)
    except ParameterError as exc:
        raise ParameterError(f"{path}: {exc}") from None
    for target, pth, _ in triples:
        _load_state_strict(model.target_models[target], state_of[target], str(pth))
    return model.eval()


def export_open_unmix(model: OpenUnmix, folder: Path, *,
                      history: Optional[Dict[str, Any]] = None) -> List[Path]:
    """Write ``model`` in Open-Unmix's layout: ``<target>.pth``, ``<target>.json``, ``separator.json``."""
    if not isinstance(model, OpenUnmix):
        raise ParameterError(f"only umx models have an Open-Unmix layout, not {model.arch}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for t in model.targets:
        state = {k: v.detach().cpu() for k, v in model.target_models[t].state_dict().items()}
        with atomic_path(folder / f"{t}.pth") as tmp:
            torch.save(state, str(tmp))
        args = {"target": t, "nfft": model.n_fft, "nhop": model.hop,
                "hidden_size": model.hidden_size, "nb_channels": model.nb_channels,
                "bandwidth": model.bandwidth, "unidirectional": model.unidirectional,
                "sample_rate": model.sample_rate}
        doc = {"args": args, **(history or {})}
        with atomic_path(folder / f"{t}.json") as tmp:
            tmp.write_text(json.dumps(doc, indent=4, sort_keys=True), encoding="utf-8")
        written += [folder / f"{t}.pth", folder / f"{t}.json"]
    sep = {"nfft": model.n_fft, "nhop": model.hop, "sample_rate": model.sample_rate,
           "nb_channels": model.nb_channels}
    with atomic_path(folder / "separator.json") as tmp:
        tmp.write_text(json.dumps(sep, indent=4, sort_keys=True), encoding="utf-8")
    written.append(folder / "separator.json")
    return written


# --------------------------------------------------------------------------
# the store
# --------------------------------------------------------------------------


def read_checkpoint(path: Path) -> Tuple[StemModel, str]:
    """A model from any accepted checkpoint, and its source (``demixstudio`` or ``open-unmix``)."""
    path = Path(path).expanduser()
    with _checkpoint_guard(path):
        if not path.exists():
            raise ParameterError(f"{path}: no such file or folder")
        if path.is_dir() and (path / MANIFEST).is_file():
            return load_model_folder(path), "demixstudio"
        if (path.is_dir() and _umx_files(path)) or path.suffix == ".pth":
            return read_open_unmix(path), "open-unmix"
    raise ParameterError(f"{path}: not a model checkpoint; expected a folder from "
                         "`demixstudio train` (manifest.json) or Open-Unmix files "
                         "(<target>.pth + <target>.json)")


def _store_folder(action: str) -> Path:
    """The store folder, refused at once when something other than a folder has its name."""
    root = models_dir()
    if root.exists() and not root.is_dir():
        raise OutputError(f"cannot {action}: the model store {root} is not a folder "
                          f"(set {ENV_VAR} to a folder)")
    return root


def _write_failure(exc: BaseException) -> str:
    """The reason behind a failed write (``OutputError`` wraps the ``OSError``)."""
    cause = exc if isinstance(exc, OSError) else exc.__cause__
    return describe_os_error(cause) if isinstance(cause, OSError) else str(exc)


def import_model(path: Path, name: Optional[str] = None, *, overwrite: bool = False) -> ModelInfo:
    """Validate the checkpoint at ``path`` and add it to the store as ``name``.

    The entry is written beside the store's others under a hidden name and
    renamed into place only when complete; a model it replaces (``overwrite``)
    is set aside first and put back if the rename fails, so a failed import
    leaves the store as it was.
    """
    path = Path(path).expanduser()
    model, source = read_checkpoint(path)
    # Resolved first: `.` or `dir/..` has no name of its own.
    default = path.resolve()
    name = check_name(name or (default.stem if default.is_file() else default.name))
    root = _store_folder(f"import {path}")
    dest = root / name
    if dest.exists() and not overwrite:
        raise ParameterError(f"a model named {name!r} is already in the store; "
                             "remove it first or choose another name")
    tmp = root / f".{name}.importing"
    old = root / f".{name}.replaced"
    try:
        for leftover in (tmp, old):  # from an import that was interrupted
            if leftover.exists():
                shutil.rmtree(leftover)
        save_model(model, tmp, source=source, extra={"name": name, "imported_from": str(path)})
        if dest.exists():
            dest.rename(old)
        try:
            tmp.rename(dest)
        except OSError:
            if old.exists():
                old.rename(dest)
            raise
    except (OSError, OutputError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"cannot import {path} into the model store {root}: "
                          f"{_write_failure(exc)}") from None
    shutil.rmtree(old, ignore_errors=True)
    return _info(dest)


def _info(folder: Path) -> ModelInfo:
    m = _read_manifest(folder)
    targets, rate, channels = _summary(folder, m)
    return ModelInfo(folder.name, m["arch"], targets, rate, channels,
                     str(m.get("sha256") or ""), str(m.get("source") or ""), folder)


def _entries() -> Iterator[Tuple[Path, Optional[ModelInfo], str]]:
    """(folder, info, "") for each store entry by name, or (folder, None, reason) if broken."""
    root = models_dir()
    if not root.is_dir():
        if root.exists():
            log.warning("the model store %s is not a folder; it holds no models", root)
        return
    try:
        folders = sorted(root.iterdir())
    except OSError as exc:
        raise ParameterError(f"cannot read the model store {root}: "
                             f"{describe_os_error(exc)}") from None
    for d in folders:
        if d.name.startswith(".") or not d.is_dir():
            continue  # hidden: an import or removal under way, or one that was interrupted
        if not (d / MANIFEST).is_file():
            continue
        try:
            yield d, _info(d), ""
        except ParameterError as exc:
            yield d, None, str(exc)


def list_models() -> List[ModelInfo]:
    """Every valid entry of the store, by name.

    A broken entry (a damaged or hand-edited manifest) is skipped with a
    logged warning, so that it neither hides the others nor stops a run that
    names another model; :func:`broken_models` lists them.
    """
    out = []
    for d, info, reason in _entries():
        if info is None:
            log.warning("model %r is broken and was skipped: %s", d.name, reason)
        else:
            out.append(info)
    return out


def broken_models() -> List[Tuple[str, str]]:
    """(name, reason) of each store entry that cannot be listed or loaded, by name."""
    return [(d.name, reason) for d, info, reason in _entries() if info is None]


def load_model(name: str) -> StemModel:
    """The stored model called ``name`` (eval mode)."""
    folder = models_dir() / check_name(name)
    if not (folder / MANIFEST).is_file():
        names = ", ".join(m.name for m in list_models()) or "none; import one with " \
            "`demixstudio models import PATH`"
        raise ParameterError(f"no model {name!r} in {models_dir()}; available: {names}")
    with _checkpoint_guard(folder, "load model"):
        return load_model_folder(folder)


def remove_model(name: str) -> Path:
    """Delete the store entry ``name``; returns its folder.

    The entry is first renamed to a hidden name, in one step: if that fails
    (a read-only store) the model is still whole, and once it succeeded the
    model is gone from the store even if deleting its files is cut short.
    """
    root = _store_folder(f"remove model {name!r}")
    folder = root / check_name(name)
    if not (folder / MANIFEST).is_file():
        raise ParameterError(f"no model {name!r} in {root}")
    trash = root / f".{name}.removing"
    try:
        if trash.exists():  # left by a removal that was interrupted
            shutil.rmtree(trash)
        folder.rename(trash)
    except OSError as exc:
        raise OutputError(f"cannot remove model {name!r} from {root}: "
                          f"{describe_os_error(exc)}; the model is unchanged") from None
    shutil.rmtree(trash, ignore_errors=True)
    if trash.exists():
        log.warning("model %r was removed from the store but %s could not be deleted",
                    name, trash)
    return folder
