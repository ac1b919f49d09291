"""The .dsproj project file: exact round trips, and safe loading of untrusted files."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from conftest import shared
from demixstudio.audio.io import load_audio
from demixstudio.errors import ProjectFileError
from demixstudio.separation.base import LayerProposal
from demixstudio.session import Session
from demixstudio.session.project import load_project, save_project


@pytest.fixture
def session(rng):
    mix, sr = load_audio(shared("easton_ellises_falcon69/vocals.wav"))
    other, _ = load_audio(shared("easton_ellises_falcon69/drums.wav"))
    mix = (mix + other)[:, : sr * 2]
    s = Session(mix, sr, name="falcon")
    m = rng.random((1, s.stft.bins, s.stft.frames(s.samples))).astype(np.float32)
    s.apply_proposals([LayerProposal("voice", "test", {"k": 3, "lags": [1, 2]}, mask=m),
                       LayerProposal("loud", "test", {}, waveform=mix * 1.8)])
    s.set("voice", gain_db=-4.5, pan=0.25, mute=True, colour="#123abc")
    s.set("residual", solo=True)
    return s


def test_round_trip(tmp_path, session):
    p = save_project(session, tmp_path / "song.dsproj")
    t = load_project(p)
    assert [x.name for x in t.layers] == [x.name for x in session.layers]
    for a, b in zip(session.layers, t.layers):
        assert a.settings() == b.settings() and a.id == b.id and a.kind == b.kind
    assert np.array_equal(t.layer("voice").mask, session.layer("voice").mask)  # masks: exact
    lsb = 2.0 ** -23
    assert np.abs(t.mixture - session.mixture).max() <= lsb  # audio: within 1 LSB of 24-bit
    loud = session.layer("loud").waveform
    assert np.abs(t.layer("loud").waveform - loud).max() <= lsb * np.abs(loud).max()
    assert t.layer("voice").provenance.params == {"k": 3, "lags": [1, 2]}
    assert t.sr == session.sr and t.stft == session.stft
    assert np.allclose(t.mixdown(), session.mixdown(), atol=1e-5)
    assert t.balance_error() <= 1e-4


def _rewrite(src, dst, edit_doc=None, extra=None, replace=None):
    """Copy a project archive, editing project.json and/or members."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename == "project.json" and edit_doc:
                doc = json.loads(data)
                edit_doc(doc)
                data = json.dumps(doc).encode()
            if replace and item.filename in replace:
                data = replace[item.filename]
            zout.writestr(item.filename, data)
        for name, data in (extra or {}).items():
            zout.writestr(name, data)
    return dst


def test_rejects_escaping_member(tmp_path, session):
    p = save_project(session, tmp_path / "a.dsproj")
    bad = _rewrite(p, tmp_path / "b.dsproj", extra={"../../evil.txt": b"x"})
    with pytest.raises(ProjectFileError, match="escape"):
        load_project(bad)
    bad2 = _rewrite(p, tmp_path / "c.dsproj",
                    edit_doc=lambda d: d["mixture"].__setitem__("file", "/etc/passwd"))
    with pytest.raises(ProjectFileError, match="escape"):
        load_project(bad2)


def test_checks_declared_sizes(tmp_path, session):
    p = save_project(session, tmp_path / "a.dsproj")
    # A huge declared shape is refused before anything is allocated.
    def huge(d):
        d["layers"][0]["content"]["shape"] = [1, 1025, 10 ** 12]
    with pytest.raises(ProjectFileError, match="too large|does not fit"):
        load_project(_rewrite(p, tmp_path / "b.dsproj", edit_doc=huge))
    # A payload whose header disagrees with the declared shape is refused.
    voice = [x for x in session.layers if x.name == "voice"][0]
    buf = io.BytesIO()
    np.savez(buf, mask=np.zeros((1, 3, 3), np.float32))
    with pytest.raises(ProjectFileError):
        load_project(_rewrite(p, tmp_path / "c.dsproj",
                              replace={f"masks/{voice.id}.npz": buf.getvalue()}))


def test_never_unpickles(tmp_path, session):
    p = save_project(session, tmp_path / "a.dsproj")
    voice = [x for x in session.layers if x.name == "voice"][0]
    buf = io.BytesIO()
    np.savez(buf, mask=np.array([{"evil": 1}], dtype=object))  # an object array = a pickle
    with pytest.raises(ProjectFileError):
        load_project(_rewrite(p, tmp_path / "b.dsproj",
                              replace={f"masks/{voice.id}.npz": buf.getvalue()}))


def test_bad_files(tmp_path, session):
    with pytest.raises(ProjectFileError, match="no such"):
        load_project(tmp_path / "missing.dsproj")
    junk = tmp_path / "junk.dsproj"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ProjectFileError, match="not a zip"):
        load_project(junk)
    p = save_project(session, tmp_path / "a.dsproj")
    newer = _rewrite(p, tmp_path / "n.dsproj", edit_doc=lambda d: d.__setitem__("schema", 99))
    with pytest.raises(ProjectFileError, match="schema 99"):
        load_project(newer)
    broken = _rewrite(p, tmp_path / "k.dsproj", edit_doc=lambda d: d["layers"][0].pop("kind"))
    with pytest.raises(ProjectFileError, match="malformed"):
        load_project(broken)


def test_save_is_atomic(tmp_path, session, monkeypatch):
    p = save_project(session, tmp_path / "a.dsproj")
    before = p.read_bytes()

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(zipfile.ZipFile, "writestr", boom)
    with pytest.raises(Exception, match="no space left"):
        save_project(session, p)
    assert p.read_bytes() == before  # the old project is untouched
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.dsproj"]


def _member_data_offset(path, name):
    """Where member ``name``'s (compressed) bytes start in the archive at ``path``."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    h = info.header_offset  # a 30-byte local header, then the name and the extra field
    header = path.read_bytes()[h:h + 30]
    name_len, extra_len = (int.from_bytes(header[k:k + 2], "little") for k in (26, 28))
    return h + 30 + name_len + extra_len, info.compress_size


def test_damaged_members_are_one_clear_line(tmp_path, session):
    """Bytes that no longer match the archive's records (a bad CRC, a broken
    deflate stream) are a damaged file, not an internal error."""
    p = save_project(session, tmp_path / "a.dsproj")
    for member in ("audio/mixture.flac", "project.json"):  # stored / deflated
        start, size = _member_data_offset(p, member)
        raw = bytearray(p.read_bytes())
        raw[start + size // 2:start + size // 2 + 8] = b"\xff" * 8
        bad = tmp_path / "bad.dsproj"
        bad.write_bytes(bytes(raw))
        with pytest.raises(ProjectFileError, match=r"bad\.dsproj: the project file is damaged \("):
            load_project(bad)


def _entry(doc, name):
    return next(e for e in doc["layers"] if e["name"] == name)


def test_layers_must_be_a_list_of_entries(tmp_path, session):
    p = save_project(session, tmp_path / "a.dsproj")
    for i, edit in enumerate([lambda d: d.__setitem__("layers", {"voice": d["layers"][0]}),
                              lambda d: d["layers"].insert(0, 5),
                              lambda d: d["layers"].append(None)]):
        with pytest.raises(ProjectFileError, match="'layers' must be a list of layer entries"):
            load_project(_rewrite(p, tmp_path / f"b{i}.dsproj", edit_doc=edit))


@pytest.mark.parametrize("layer", ["residual", "voice"])
@pytest.mark.parametrize("key, value, reason", [
    ("gain_db", "abc", "gain_db 'abc' is not a number"),
    ("gain_db", 1e300, "gain 1e\\+300 dB must be between -120 and \\+24"),
    ("gain_db", None, "gain_db None is not a number"),
    ("pan", 5, "pan 5 must be between -1"),
    ("colour", "red", "colour 'red' must look like #rrggbb"),
    ("name", "", "a layer name must not be empty"),
])
def test_layer_settings_are_checked_like_edits(tmp_path, session, layer, key, value, reason):
    """The residual's settings too (they used to be set without any check)."""
    p = save_project(session, tmp_path / "a.dsproj")
    bad = _rewrite(p, tmp_path / "b.dsproj",
                   edit_doc=lambda d: _entry(d, layer).__setitem__(key, value))
    shown = "" if key == "name" else layer  # the project names the layer and the reason
    with pytest.raises(ProjectFileError, match=rf"b\.dsproj: layer \d \({shown}\): {reason}"):
        load_project(bad)


def _with_mask(tmp_path, p, layer, mask, name):
    buf = io.BytesIO()
    np.savez(buf, mask=mask.astype(np.float32))
    return _rewrite(p, tmp_path / name, replace={f"masks/{layer.id}.npz": buf.getvalue()})


@pytest.mark.parametrize("value, reason", [(np.nan, "NaN or infinite"),
                                           (np.inf, "NaN or infinite"),
                                           (-0.5, "outside \\[0, 1000\\]"),
                                           (1e30, "outside \\[0, 1000\\]")])
def test_masks_are_checked(tmp_path, session, value, reason):
    p = save_project(session, tmp_path / "a.dsproj")
    voice = session.layer("voice")
    mask = voice.mask.copy()
    mask[0, 7, 3] = value
    bad = _with_mask(tmp_path, p, voice, mask, "b.dsproj")
    with pytest.raises(ProjectFileError, match=rf"b\.dsproj: layer 1 \(voice\): mask: .*{reason}"):
        load_project(bad)


def test_masks_with_rounding_still_load(tmp_path, session):
    """Float32 sums of masks that share out the whole stray a little past [0, 1]:
    a merge is such a sum, and it must load."""
    s = Session(session.mixture, session.sr, name="parts")
    shape = (1, s.stft.bins, s.stft.frames(s.samples))
    parts = np.random.default_rng(3).dirichlet(np.ones(7), size=shape).astype(np.float32)
    s.apply_proposals([LayerProposal(f"p{j}", "test", {}, mask=parts[..., j]) for j in range(7)])
    merged = s.merge([x for x in s.layers if not x.is_residual])
    t = load_project(save_project(s, tmp_path / "m.dsproj"))
    assert np.array_equal(t.layer(merged.name).mask, merged.mask)
    p = save_project(session, tmp_path / "a.dsproj")
    voice = session.layer("voice")
    mask = voice.mask.copy()
    mask[0, 1, 1], mask[0, 2, 2] = 1.0 + 3e-7, -2e-7
    t = load_project(_with_mask(tmp_path, p, voice, mask, "r.dsproj"))
    assert np.array_equal(t.layer("voice").mask, mask)


def test_structure_is_checked(tmp_path, session):
    p = save_project(session, tmp_path / "a.dsproj")
    cases = [
        (lambda d: d.__setitem__("source_path", 5), "source_path 5 is not a file path"),
        (lambda d: d.__setitem__("source_path", ["/x.wav"]), "is not a file path"),
        (lambda d: d["layers"][1].__setitem__("id", d["layers"][0]["id"]),
         "is used by an earlier layer too"),
        (lambda d: d["layers"].append(dict(_entry(d, "residual"), id="other")),
         "a second residual"),
        (lambda d: d["stft"].__setitem__("n_fft", 2048.7), "n_fft and hop as whole numbers"),
        (lambda d: d["stft"].__setitem__("hop", "512"), "n_fft and hop as whole numbers"),
        (lambda d: d.__setitem__("stft", [2048, 512]), "n_fft and hop as whole numbers"),
    ]
    for i, (edit, reason) in enumerate(cases):
        with pytest.raises(ProjectFileError, match=reason):
            load_project(_rewrite(p, tmp_path / f"b{i}.dsproj", edit_doc=edit))
    # A project without a recording's path (made from an array) still loads.
    t = load_project(_rewrite(p, tmp_path / "n.dsproj",
                              edit_doc=lambda d: d.__setitem__("source_path", None)))
    assert t.source_path is None
