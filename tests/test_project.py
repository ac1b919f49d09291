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
