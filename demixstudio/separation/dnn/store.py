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
checksum is verified on every load.

Accepted checkpoints:

- a folder written by ``demixstudio train`` (``manifest.json`` + ``model.safetensors``);
- Open-Unmix's layout: a folder of ``<target>.pth`` (a state dict) with
  ``<target>.json`` (its training arguments: ``args.nfft``, ``args.nhop``,
  ``args.hidden_size``, ``args.nb_channels``, ...) and optionally
  ``separator.json`` (``sample_rate``, ``nfft``, ``nhop``, ``nb_channels``),
  or one such ``<target>.pth`` file with its json beside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from demixstudio.audio.atomic import atomic_path
from demixstudio.errors import ParameterError
from demixstudio.separation.dnn.models import ARCHITECTURES, StemModel, build_model
from demixstudio.separation.dnn.models.umx import OpenUnmix

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


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise ParameterError(f"model name {name!r} must be letters, digits, '.', '_' or '-' "
                             "(at most 100, not starting with a dot)")
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
    return m


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
    weights = folder / m.get("weights", WEIGHTS)
    if not weights.is_file():
        raise ParameterError(f"{weights}: missing weights file")
    if m.get("sha256") and _sha256(weights) != m["sha256"]:
        raise ParameterError(f"{weights}: checksum mismatch; the file is damaged or was changed")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ParameterError(f"{weights}: not a readable safetensors file ({exc})") from None
    model = build_model(m["arch"], m["hparams"])
    _load_state_strict(model, state, str(weights))
    return model.eval()


# --------------------------------------------------------------------------
# Open-Unmix layout
# --------------------------------------------------------------------------


def _torch_load_weights(path: Path) -> Dict[str, torch.Tensor]:
    """A state dict from ``path`` via ``torch.load(weights_only=True)`` (no arbitrary pickle)."""
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - the unpickler raises many kinds
        raise ParameterError(f"{path}: not a weights-only checkpoint; refusing to load it "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]})") from None
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


def _umx_hparams(triples, state_of: Dict[str, Dict[str, torch.Tensor]],
                 folder: Path) -> Dict[str, Any]:
    """OpenUnmix hyper-parameters from the json files and the weights' shapes."""
    sep: Dict[str, Any] = {}
    if (folder / "separator.json").is_file():
        try:
            sep = json.loads((folder / "separator.json").read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ParameterError(f"{folder / 'separator.json'}: not JSON ({exc})") from None
    hp: Optional[Dict[str, Any]] = None
    for target, _pth, js in triples:
        try:
            args = json.loads(js.read_text(encoding="utf-8"))["args"]
            nfft, nhop = int(args["nfft"]), int(args["nhop"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ParameterError(f"{js}: not an Open-Unmix target json (needs args.nfft, "
                                 f"args.nhop; {exc})") from None
        st = state_of[target]
        for key in ("fc1.weight", "fc3.weight", "input_mean", "lstm.weight_ih_l0"):
            if key not in st:
                raise ParameterError(f"{_pth}: no {key}; not an Open-Unmix state dict")
        nb_layers = len([k for k in st if re.fullmatch(r"lstm\.weight_ih_l\d+", k)])
        hidden = int(st["fc1.weight"].shape[0])
        max_bin = int(st["input_mean"].shape[0])
        nb_channels = int(st["fc1.weight"].shape[1]) // max_bin
        this = {"sample_rate": int(sep.get("sample_rate", args.get("sample_rate", UMX_DEFAULT_RATE))),
                "nb_channels": nb_channels, "n_fft": nfft, "hop": nhop, "hidden_size": hidden,
                "nb_layers": nb_layers, "unidirectional": "lstm.weight_ih_l0_reverse" not in st,
                "bandwidth": float(args.get("bandwidth", 16000)), "max_bin": max_bin}
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
    model = OpenUnmix(targets=[t for t, _, _ in triples], **hp)
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
    if not path.exists():
        raise ParameterError(f"{path}: no such file or folder")
    if path.is_dir() and (path / MANIFEST).is_file():
        return load_model_folder(path), "demixstudio"
    if (path.is_dir() and _umx_files(path)) or path.suffix == ".pth":
        return read_open_unmix(path), "open-unmix"
    raise ParameterError(f"{path}: not a model checkpoint; expected a folder from "
                         "`demixstudio train` (manifest.json) or Open-Unmix files "
                         "(<target>.pth + <target>.json)")


def import_model(path: Path, name: Optional[str] = None, *, overwrite: bool = False) -> ModelInfo:
    """Validate the checkpoint at ``path`` and add it to the store as ``name``."""
    path = Path(path).expanduser()
    model, source = read_checkpoint(path)
    name = check_name(name or (path.stem if path.is_file() else path.name))
    dest = models_dir() / name
    if dest.exists() and not overwrite:
        raise ParameterError(f"a model named {name!r} is already in the store; "
                             "remove it first or choose another name")
    tmp = dest.with_name(f".{name}.importing")
    if tmp.exists():
        shutil.rmtree(tmp)
    save_model(model, tmp, source=source, extra={"name": name, "imported_from": str(path)})
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return _info(dest)


def _info(folder: Path) -> ModelInfo:
    m = _read_manifest(folder)
    return ModelInfo(folder.name, m["arch"], tuple(m["targets"]), int(m["sample_rate"]),
                     int(m["nb_channels"]), m.get("sha256", ""), m.get("source", ""), folder)


def list_models() -> List[ModelInfo]:
    """Every valid entry of the store, by name (broken entries are skipped)."""
    root = models_dir()
    if not root.is_dir():
        return []
    out = []
    for d in sorted(root.iterdir()):
        if d.is_dir() and not d.name.startswith(".") and (d / MANIFEST).is_file():
            try:
                out.append(_info(d))
            except ParameterError:
                continue
    return out


def load_model(name: str) -> StemModel:
    """The stored model called ``name`` (eval mode)."""
    folder = models_dir() / check_name(name)
    if not (folder / MANIFEST).is_file():
        names = ", ".join(m.name for m in list_models()) or "none; import one with " \
            "`demixstudio models import PATH`"
        raise ParameterError(f"no model {name!r} in {models_dir()}; available: {names}")
    return load_model_folder(folder)


def remove_model(name: str) -> Path:
    folder = models_dir() / check_name(name)
    if not (folder / MANIFEST).is_file():
        raise ParameterError(f"no model {name!r} in {models_dir()}")
    shutil.rmtree(folder)
    return folder
