"""The project file, ``.dsproj``: a zip of ``project.json`` plus payloads.

Layout::

    project.json            versioned schema (see SCHEMA_VERSION)
    audio/mixture.flac      the mixture, 24-bit FLAC, divided by ``scale``
    audio/<layer id>.flac   waveform layers, the same way
    masks/<layer id>.npz    mask layers, float32, exact
    paint/<n>.npz           painted weights of target n: its allocated tiles,
                            float32 (tiles, TILE_BINS, TILE_FRAMES), exact
                            (schema 2; schema 1 files have no paint)

Audio is stored as 24-bit FLAC divided by its ``scale`` (the peak, or 1 if
the peak is below full scale), so it round-trips within one 24-bit LSB of
that scale. Audio FLAC cannot hold -- more channels than it allows (8), or a
rate above what libsndfile writes to FLAC (655350 Hz) -- is stored as NPZ
float32, exactly; the loader reads each payload by its declared kind.

Loading treats the file as untrusted: nothing is unpickled
(``allow_pickle=False``), member names that would escape the archive are
refused, and every payload's declared shape and size is checked against the
archive's own records before anything is allocated.
"""

from __future__ import annotations

import errno
import io
import json
import os
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any, Dict, Tuple

import numpy as np
import soundfile as sf

from demixstudio import __version__
from demixstudio.audio.atomic import atomic_path, describe_os_error
from demixstudio.audio.stft import StftConfig
from demixstudio.errors import DemixError, OutputError, ParameterError, ProjectFileError
from demixstudio.session.layer import EDITABLE, Layer, Provenance, check_setting
from demixstudio.session.paint import TILE_BINS, TILE_FRAMES, check_colour
from demixstudio.session.session import Session

FORMAT = "demixstudio-project"
SCHEMA_VERSION = 2  # 2: paint targets; 1 (no paint) still loads
MAX_JSON_BYTES = 16 << 20
MAX_PAYLOAD_BYTES = 64 << 30  # 64 GiB of float32: beyond any file we would write
MAX_RATIO = 2000  # uncompressed/compressed: a zip bomb, not a project
FLAC_MAX_CHANNELS = 8
# Masks are mostly soft masks in [0, 1], but a session holds others too:
# duplicate a layer and the masks sum above 1, so the residual (1 - sum) is
# negative, and extracting from it makes a layer with a negative mask; a merge
# sums masks. Whatever a session holds must save and load again, so the check
# is symmetric and generous: finite and |mask| <= MASK_LIMIT (120 dB), which
# refuses only garbage (a gain of 1e30 hidden in a mask), and save_project
# applies the same check before writing (see _check_mask).
MASK_LIMIT = 1e6
# libsndfile refuses to write FLAC above this rate; such audio is stored as NPZ.
FLAC_MAX_RATE = 655350
# The loader accepts every rate a session can hold (sample_rate(): any positive
# whole number of Hz, as opening a recording allows) up to what libsndfile and
# WAV headers can express (a signed 32-bit int).
MAX_RATE = 2 ** 31 - 1


# --------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------


def _audio_bytes(audio: np.ndarray, sr: int) -> Tuple[bytes, Dict[str, Any]]:
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    # The largest 24-bit step is 2^23 - 1: keep the peak at or below it.
    scale = max(1.0, peak * 2.0 ** 23 / (2.0 ** 23 - 1))
    buf = io.BytesIO()
    if audio.shape[0] <= FLAC_MAX_CHANNELS and int(sr) <= FLAC_MAX_RATE:
        # Quantise ourselves (round to nearest 24-bit step, 2^23 per unit) so the
        # round trip is within half an LSB; libsndfile's own float conversion
        # scales by 2^23 - 1 on write and 2^23 on read.
        with sf.SoundFile(buf, "w", samplerate=int(sr), channels=audio.shape[0],
                          format="FLAC", subtype="PCM_24") as f:
            for start in range(0, audio.shape[1], 1 << 20):
                block = audio[:, start:start + (1 << 20)].astype(np.float64) * (2.0 ** 23 / scale)
                q = np.clip(np.rint(block), -2 ** 23, 2 ** 23 - 1).astype(np.int32) << 8
                f.write(q.T)
        kind = "flac"
    else:
        np.savez_compressed(buf, audio=audio.astype(np.float32))
        kind, scale = "npz", 1.0
    return buf.getvalue(), {"kind": kind, "scale": scale, "shape": list(audio.shape)}


def _mask_bytes(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, mask=np.ascontiguousarray(mask, dtype=np.float32))
    return buf.getvalue()


def _check_saveable(session: Session, path: Path) -> None:
    """Raise OutputError if ``session`` holds something load_project would refuse.

    The loader's own checks, run on the session before a byte is written, so a
    save never leaves behind a file that cannot be opened again (the old file,
    if any, stays as it was).
    """
    try:
        _check_rate(session.sr, path)
        names: set = set()
        for layer in session.layers:
            _check_name(layer.name, names, f"{path}: layer {layer.name!r}")
            if layer.mask is not None:
                _check_mask(layer.mask, f"{path}: layer {layer.name!r}: mask")
    except ProjectFileError as exc:
        raise OutputError(f"cannot save {exc}; the project was not saved") from None


def save_project(session: Session, path: os.PathLike | str) -> Path:
    """Write ``session`` to a ``.dsproj`` file atomically. Returns the path.

    Raises OutputError, and writes nothing, if the session holds something the
    loader would refuse, or if the file cannot be written.
    """
    path = Path(path)
    if path.suffix.lower() != ".dsproj":
        path = path.with_suffix(path.suffix + ".dsproj") if path.suffix else path.with_suffix(".dsproj")
    _check_saveable(session, path)
    doc: Dict[str, Any] = {
        "format": FORMAT, "schema": SCHEMA_VERSION, "app_version": __version__,
        "name": session.name, "sr": session.sr, "channels": session.channels,
        "samples": session.samples, "source_path": session.source_path,
        "stft": {"n_fft": session.stft.n_fft, "hop": session.stft.hop},
        "layers": [],
    }
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w") as zf:
            data, meta = _audio_bytes(session.mixture, session.sr)
            member = f"audio/mixture.{meta['kind']}"
            # FLAC is already compressed: store it; NPZ and JSON are deflated.
            zf.writestr(member, data, compress_type=zipfile.ZIP_STORED)
            doc["mixture"] = {"file": member, **meta}
            for layer in session.layers:
                entry: Dict[str, Any] = {
                    "id": layer.id, **layer.settings(), "kind": layer.kind,
                    "provenance": layer.provenance.as_dict() if layer.provenance else None,
                }
                if layer.mask is not None:
                    member = f"masks/{layer.id}.npz"
                    zf.writestr(member, _mask_bytes(layer.mask))
                    entry["content"] = {"file": member, "kind": "npz",
                                        "shape": list(layer.mask.shape), "dtype": "float32"}
                elif layer.waveform is not None:
                    data, meta = _audio_bytes(layer.waveform, session.sr)
                    member = f"audio/{layer.id}.{meta['kind']}"
                    zf.writestr(member, data, compress_type=zipfile.ZIP_STORED)
                    entry["content"] = {"file": member, **meta}
                doc["layers"].append(entry)
            doc["paint"] = _save_paint(session, zf)
            zf.writestr("project.json", json.dumps(doc, indent=1),
                        compress_type=zipfile.ZIP_DEFLATED)
    return path


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def _safe_member(name: str) -> None:
    p = PurePosixPath(name)
    if (name.startswith(("/", "\\")) or "\\" in name or ".." in p.parts
            or (len(name) > 1 and name[1] == ":")):
        raise ProjectFileError(f"unsafe member path {name!r}: it would escape the archive")


def _member(zf: zipfile.ZipFile, name: Any, declared_bytes: int) -> zipfile.ZipInfo:
    if not isinstance(name, str):
        raise ProjectFileError(f"payload name {name!r} is not a string")
    _safe_member(name)
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise ProjectFileError(f"project.json names {name!r}, which the archive lacks") from None
    # The archive's own record of the size must be consistent with what the
    # payload declares, and neither may be absurd, before a byte is inflated.
    if info.file_size > max(declared_bytes * 2 + (1 << 20), 1 << 20):
        raise ProjectFileError(
            f"{name}: {info.file_size} bytes in the archive for a declared {declared_bytes}")
    if info.compress_size and info.file_size / info.compress_size > MAX_RATIO:
        raise ProjectFileError(f"{name}: compression ratio too high; refusing to inflate it")
    return info


def _shape(value: Any, what: str, ndim: int) -> Tuple[int, ...]:
    if (not isinstance(value, list) or len(value) != ndim
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise ProjectFileError(f"{what}: declared shape {value!r} is not {ndim} positive integers")
    shape = tuple(value)
    if int(np.prod(shape, dtype=np.int64)) * 4 > MAX_PAYLOAD_BYTES:
        raise ProjectFileError(f"{what}: declared shape {shape} is too large")
    return shape


def _read_npy_from_npz(raw: bytes, key: str, shape: Tuple[int, ...], what: str) -> np.ndarray:
    try:
        inner = zipfile.ZipFile(io.BytesIO(raw))
        info = inner.getinfo(f"{key}.npy")
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ProjectFileError(f"{what}: not a valid NPZ payload with {key!r}") from exc
    expected = int(np.prod(shape, dtype=np.int64)) * 4
    if info.file_size > expected + 4096:
        raise ProjectFileError(f"{what}: payload larger than its declared shape {shape}")
    with inner.open(info) as fh:
        try:
            version = np.lib.format.read_magic(fh)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            hdr_shape, fortran, dtype = read_header(fh)
        except ValueError as exc:
            raise ProjectFileError(f"{what}: bad array header ({exc})") from exc
        if tuple(hdr_shape) != shape or dtype != np.dtype("<f4"):
            raise ProjectFileError(
                f"{what}: array is {dtype} {tuple(hdr_shape)}, declared float32 {shape}")
        data = fh.read(expected + 1)
    if len(data) != expected:
        raise ProjectFileError(f"{what}: array data is truncated")
    arr = np.frombuffer(data, dtype="<f4").reshape(shape, order="F" if fortran else "C")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _read_audio(zf: zipfile.ZipFile, meta: Any, channels: int, samples: int,
                sr: int, what: str) -> np.ndarray:
    if not isinstance(meta, dict):
        raise ProjectFileError(f"{what}: missing audio description")
    shape = _shape(meta.get("shape"), what, 2)
    if shape != (channels, samples):
        raise ProjectFileError(f"{what}: shape {shape} differs from the mixture's {(channels, samples)}")
    scale = meta.get("scale", 1.0)
    if not isinstance(scale, (int, float)) or not np.isfinite(scale) or scale <= 0:
        raise ProjectFileError(f"{what}: bad scale {scale!r}")
    kind = meta.get("kind")
    declared = channels * samples * 4
    info = _member(zf, meta.get("file"), declared)
    raw = zf.read(info)
    if kind == "npz":
        return _read_npy_from_npz(raw, "audio", shape, what)
    if kind != "flac":
        raise ProjectFileError(f"{what}: unknown audio payload kind {kind!r}")
    try:
        with sf.SoundFile(io.BytesIO(raw)) as f:
            if (f.channels, f.frames, f.samplerate) != (channels, samples, sr):
                raise ProjectFileError(
                    f"{what}: FLAC holds {f.channels}×{f.frames} at {f.samplerate} Hz, "
                    f"declared {channels}×{samples} at {sr} Hz")
            audio = np.empty((channels, samples), dtype=np.float32)
            pos = 0
            while pos < samples:
                block = f.read(min(1 << 20, samples - pos), dtype="int32", always_2d=True)
                if not len(block):
                    break
                # int32 holds the 24-bit sample in its top bits: one unit is 2^-31.
                audio[:, pos:pos + len(block)] = block.T * np.float32(scale / 2.0 ** 31)
                pos += len(block)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise ProjectFileError(f"{what}: damaged FLAC payload ({exc})") from exc
    if pos != samples:
        raise ProjectFileError(f"{what}: FLAC payload is truncated")
    return audio


def load_project(path: os.PathLike | str) -> Session:
    """Open a ``.dsproj`` file as a new Session (with an empty undo history)."""
    path = Path(path)
    if not path.is_file():
        raise ProjectFileError(f"{path}: no such project file")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ProjectFileError(f"{path}: not a DemixStudio project (not a zip archive)") from exc
    with zf:
        for name in zf.namelist():
            _safe_member(name)
        try:
            info = zf.getinfo("project.json")
        except KeyError:
            raise ProjectFileError(f"{path}: not a DemixStudio project (no project.json)") from None
        if info.file_size > MAX_JSON_BYTES:
            raise ProjectFileError(f"{path}: project.json is implausibly large")
        try:
            try:
                doc = json.loads(zf.read(info).decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ProjectFileError(f"{path}: project.json is not valid JSON ({exc})") from exc
            except RecursionError:
                # json recurses once per nesting level: thousands of nested
                # brackets are a damaged or hostile file, not a project.
                raise ProjectFileError(f"{path}: project.json is nested too deeply to be "
                                       "a project") from None
            return _session_from(doc, zf, path)
        except ProjectFileError as exc:
            # Every message names the file (some checks only know a member or a
            # layer); the CLI and the editor show the message alone.
            if str(path) in str(exc):
                raise
            raise ProjectFileError(f"{path}: {exc}") from exc
        except RecursionError:
            raise ProjectFileError(f"{path}: project.json is nested too deeply to be "
                                   "a project") from None
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
            # The archive's directory was sound but a member's bytes are not (a bad
            # CRC, a truncated or corrupt deflate stream, a garbled method number).
            raise ProjectFileError(f"{path}: the project file is damaged ({exc})") from exc
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # a seek to a member's garbled (negative) offset
                raise ProjectFileError(f"{path}: the project file is damaged (a member's "
                                       "offset points outside the file)") from exc
            # The disk failed, or the file went away, mid-read.
            raise ProjectFileError(f"{path}: cannot read the project file "
                                   f"({describe_os_error(exc)})") from exc
        except (DemixError, KeyError, TypeError, ValueError) as exc:
            raise ProjectFileError(f"{path}: malformed project ({type(exc).__name__}: {exc})") from exc


def _session_from(doc: Dict[str, Any], zf: zipfile.ZipFile, path: Path) -> Session:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ProjectFileError(f"{path}: not a DemixStudio project")
    schema = doc.get("schema")
    if not isinstance(schema, int) or schema > SCHEMA_VERSION or schema < 1:
        raise ProjectFileError(
            f"{path}: project schema {schema!r} is not supported (this version reads 1 to "
            f"{SCHEMA_VERSION}); a newer DemixStudio wrote it")
    sr, channels, samples = doc["sr"], doc["channels"], doc["samples"]
    _shape([channels, samples], "mixture", 2)
    _check_rate(sr, path)
    stft = _stft_config(doc["stft"], path)
    source = doc.get("source_path")
    if source is not None and not isinstance(source, str):
        raise ProjectFileError(f"{path}: source_path {source!r} is not a file path")
    entries = doc["layers"]
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ProjectFileError(f"{path}: 'layers' must be a list of layer entries")
    name = doc.get("name", path.stem)
    if not isinstance(name, str):  # str() would name the song "None" or "{'a': 1}"
        raise ProjectFileError(f"{path}: the project name {name!r} is not text")
    mixture = _read_audio(zf, doc["mixture"], channels, samples, sr, "mixture")
    session = Session(mixture, sr, name=name, stft=stft,
                      source_path=source)
    frames = stft.frames(samples)
    layers = []
    ids: set = set()
    names: set = set()
    residual_seen = False
    for i, e in enumerate(entries):
        what = f"{path}: layer {i + 1} ({e.get('name', '?')})"
        layer_id = str(e["id"])
        if layer_id in ids:
            raise ProjectFileError(f"{what}: id {layer_id!r} is used by an earlier layer too")
        ids.add(layer_id)
        kind = e["kind"]
        if kind == "residual" and residual_seen:
            raise ProjectFileError(f"{what}: a second residual (a project has one)")
        _check_name(e.get("name"), names, what)
        settings = _settings(e, what)
        prov = Provenance.from_dict(e["provenance"]) if e.get("provenance") else None
        if kind == "residual":
            residual_seen = True
            for k, v in settings.items():
                setattr(session.residual, k, v)
            session.residual.id = layer_id
            continue
        content = e["content"]
        if not isinstance(content, dict):
            raise ProjectFileError(f"{what}: missing content description")
        if kind == "mask":
            shape = _shape(content["shape"], what, 3)
            if shape[0] not in (1, channels) or shape[1:] != (stft.bins, frames):
                raise ProjectFileError(f"{what}: mask shape {shape} does not fit the mixture")
            info = _member(zf, content["file"], int(np.prod(shape)) * 4)
            mask = _read_npy_from_npz(zf.read(info), "mask", shape, what)
            _check_mask(mask, f"{what}: mask")
            layers.append(Layer(mask=mask, provenance=prov, layer_id=layer_id, **settings))
        elif kind == "waveform":
            wave = _read_audio(zf, content, channels, samples, sr, what)
            layers.append(Layer(waveform=wave, provenance=prov, layer_id=layer_id, **settings))
        else:
            raise ProjectFileError(f"{what}: unknown layer kind {kind!r}")
    session._layers.extend(layers)
    _load_paint(doc.get("paint", []) if schema >= 2 else [], zf, session, path)
    session._layers_changed()
    return session


def _stft_config(value: Any, path: Path) -> StftConfig:
    """The project's StftConfig; a fractional size is refused, not truncated
    (masks were made on the exact grid the file names)."""
    if not isinstance(value, dict) or not all(
            isinstance(value.get(k), int) and not isinstance(value.get(k), bool)
            for k in ("n_fft", "hop")):
        raise ProjectFileError(f"{path}: stft {value!r} must give n_fft and hop as whole numbers")
    try:
        return StftConfig(value["n_fft"], value["hop"])
    except ParameterError as exc:
        raise ProjectFileError(f"{path}: stft: {exc}") from None


def _settings(entry: Dict[str, Any], what: str) -> Dict[str, Any]:
    """A layer entry's editable settings, each through the check an edit gets."""
    out: Dict[str, Any] = {}
    for k in EDITABLE:
        value = entry[k]
        try:
            out[k] = check_setting(k, value)
        except ParameterError as exc:
            raise ProjectFileError(f"{what}: {exc}") from None
        except (TypeError, ValueError):  # float(None), float("abc")
            raise ProjectFileError(f"{what}: {k} {value!r} is not a number") from None
    return out


def _check_rate(sr: Any, path: Path) -> None:
    """The rates a session can hold (a positive whole number of Hz), up to MAX_RATE."""
    if not isinstance(sr, int) or isinstance(sr, bool) or not 1 <= sr <= MAX_RATE:
        raise ProjectFileError(f"{path}: sample rate {sr!r} is not a whole number of Hz "
                               f"from 1 to {MAX_RATE}")


def _check_name(name: Any, taken: set, what: str) -> None:
    """Layer names are non-empty strings, unique in a project (files, the CLI and
    scripts refer to layers by name; Session.set refuses a second one)."""
    if not isinstance(name, str):
        # str(None) would make a layer called "None" out of a damaged entry.
        raise ProjectFileError(f"{what}: layer name {name!r} is not text")
    clean = name.strip()
    if clean in taken:
        raise ProjectFileError(f"{what}: the layer name {clean!r} is used by an earlier "
                               "layer too")
    taken.add(clean)


def _check_mask(mask: np.ndarray, what: str) -> None:
    """The check every stored mask passes, on save and on load: finite, |m| <= MASK_LIMIT."""
    _check_weights(mask, -MASK_LIMIT, MASK_LIMIT, what)


def _check_weights(a: np.ndarray, lo: float, hi: float, what: str) -> None:
    """Raise ProjectFileError unless every value of ``a`` is finite and in [lo, hi].

    min and max are reductions (no full-size temporary, unlike ``np.isfinite``)
    and a NaN carries through both, so two passes check everything.
    """
    least, most = float(a.min()), float(a.max())
    if not (np.isfinite(least) and np.isfinite(most)):
        raise ProjectFileError(f"{what}: holds NaN or infinite values")
    if least < lo or most > hi:
        raise ProjectFileError(f"{what}: values span [{least:.6g}, {most:.6g}], outside "
                               f"[{lo:g}, {hi:g}]")


# --------------------------------------------------------------------------
# Paint (schema 2)
# --------------------------------------------------------------------------


def _save_paint(session: Session, zf: zipfile.ZipFile) -> list:
    """Write each target's allocated tiles; returns the JSON entries."""
    out = []
    for i, name in enumerate(session.paint.targets()):
        keys = session.paint.tile_keys(name)
        entry: Dict[str, Any] = {"name": name, "colour": session.paint.colour(name),
                                 "tile": [TILE_BINS, TILE_FRAMES],
                                 "keys": [list(k) for k in keys]}
        if keys:
            member = f"paint/{i}.npz"
            tiles = np.stack([session.paint.tile(name, k) for k in keys])
            zf.writestr(member, _array_bytes("tiles", tiles))
            entry["content"] = {"file": member, "kind": "npz", "shape": list(tiles.shape),
                                "dtype": "float32"}
        out.append(entry)
    return out


def _array_bytes(key: str, arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **{key: np.ascontiguousarray(arr, dtype=np.float32)})
    return buf.getvalue()


def _load_paint(entries: Any, zf: zipfile.ZipFile, session: Session, path: Path) -> None:
    if not isinstance(entries, list):
        raise ProjectFileError(f"{path}: 'paint' must be a list of targets")
    nb, nt = session.paint.tile_grid()
    for i, e in enumerate(entries):
        what = f"paint target {i + 1}"
        if not isinstance(e, dict) or not isinstance(e.get("name"), str):
            raise ProjectFileError(f"{what}: missing name")
        what = f"paint target {e['name']!r}"
        if e.get("tile") != [TILE_BINS, TILE_FRAMES]:
            raise ProjectFileError(f"{what}: tile size {e.get('tile')!r} is not "
                                   f"{[TILE_BINS, TILE_FRAMES]}")
        keys = e.get("keys", [])
        if (not isinstance(keys, list) or not all(
                isinstance(k, list) and len(k) == 2 and all(
                    isinstance(v, int) and not isinstance(v, bool) for v in k) for k in keys)):
            raise ProjectFileError(f"{what}: tile keys must be pairs of integers")
        tkeys = [tuple(k) for k in keys]
        if len(set(tkeys)) != len(tkeys) or any(
                not (0 <= b < nb and 0 <= t < nt) for b, t in tkeys):
            raise ProjectFileError(f"{what}: tile keys repeat or lie outside the "
                                   f"{nb} × {nt} tile grid")
        try:
            colour = check_colour(e.get("colour", ""))
        except DemixError as exc:
            raise ProjectFileError(f"{what}: {exc}") from None
        if e["name"] in session.paint:
            raise ProjectFileError(f"{what}: the name appears twice")
        session.paint.add_target(e["name"], colour)
        if not tkeys:
            continue
        content = e.get("content")
        if not isinstance(content, dict):
            raise ProjectFileError(f"{what}: tiles listed but no payload")
        shape = _shape(content.get("shape"), what, 3)
        if shape != (len(tkeys), TILE_BINS, TILE_FRAMES):
            raise ProjectFileError(f"{what}: payload shape {shape} does not match its "
                                   f"{len(tkeys)} tiles")
        info = _member(zf, content.get("file"), int(np.prod(shape)) * 4)
        tiles = _read_npy_from_npz(zf.read(info), "tiles", shape, what)
        _check_weights(tiles, 0.0, 1.0, what)
        session.paint.set_tiles(e["name"], dict(zip(tkeys, tiles)))
