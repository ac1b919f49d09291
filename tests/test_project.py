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
                                           (-1e7, "outside \\[-1e\\+06, 1e\\+06\\]"),
                                           (1e30, "outside \\[-1e\\+06, 1e\\+06\\]")])
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
        (lambda d: d.__setitem__("name", None), "the project name None is not text"),
        (lambda d: d.__setitem__("name", {"a": 1}), "the project name .* is not text"),
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


# -- what a session holds must save and load again --------------------------------


def _duplicate(s, name):
    """What the editor's layer menu > Duplicate does: the same content, a new layer."""
    from demixstudio.session.commands import ReplaceLayers
    from demixstudio.session.layer import Layer
    src = s.layer(name)
    copy = Layer(f"{name} copy", mask=src.mask, waveform=src.waveform, colour=src.colour)
    s.history.push(ReplaceLayers([], [copy], label="duplicate"))
    return copy


def test_negative_mask_from_the_residual_saves_and_loads(tmp_path, session):
    """Duplicate a mask layer (masks then sum above 1), extract from the residual
    (1 - sum: negative): the new layer's mask is negative and the project used to
    save but not load."""
    s = Session(session.mixture, session.sr, name="neg")
    shape = (1, s.stft.bins, s.stft.frames(s.samples))
    s.apply_proposals([LayerProposal("a", "test", {}, mask=np.full(shape, 0.99, np.float32))])
    _duplicate(s, "a")
    s.paint_stroke("sel", slice(10, 60), slice(5, 40), np.ones((50, 35), np.float32))
    new = s.extract_selection("sel", s.residual)
    assert new.mask is not None and float(new.mask.min()) < -0.9  # the case that failed
    t = load_project(save_project(s, tmp_path / "neg.dsproj"))
    assert np.array_equal(t.layer(new.name).mask, new.mask)
    assert [x.name for x in t.layers] == [x.name for x in s.layers]


def test_save_refuses_what_the_loader_would_and_writes_nothing(tmp_path, session):
    from demixstudio.errors import OutputError
    p = save_project(session, tmp_path / "a.dsproj")
    before = p.read_bytes()
    session.layer("voice").mask[0, 3, 3] = 1e30  # no edit makes this; a bug might
    with pytest.raises(OutputError, match=r"cannot save .*a\.dsproj: layer 'voice': mask: "
                                          r".*outside \[-1e\+06, 1e\+06\]"):
        save_project(session, p)
    assert p.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.dsproj"]


@pytest.mark.parametrize("sr", [800, 999, 700_000, 1_000_000])
def test_every_rate_a_session_takes_saves_and_loads(tmp_path, sr):
    """FLAC cannot store rates above 655350 Hz (saving raised a raw LibsndfileError)
    and the loader refused rates below 1000 Hz that opening a recording accepts."""
    x = (0.1 * np.random.default_rng(1).standard_normal((2, sr // 4))).astype(np.float32)
    s = Session(x, sr, name=f"sr{sr}")
    p = save_project(s, tmp_path / "r.dsproj")
    t = load_project(p)
    assert t.sr == sr and t.mixture.shape == x.shape
    assert np.abs(t.mixture - x).max() <= 2.0 ** -23
    with zipfile.ZipFile(p) as z:
        kind = json.loads(z.read("project.json"))["mixture"]["kind"]
    assert kind == ("flac" if sr <= 655350 else "npz")


@pytest.mark.parametrize("sr", [0, -44100, 44100.5, True, "44100", 2 ** 31])
def test_impossible_rates_are_refused(tmp_path, session, sr):
    p = save_project(session, tmp_path / "a.dsproj")
    bad = _rewrite(p, tmp_path / "b.dsproj", edit_doc=lambda d: d.__setitem__("sr", sr))
    with pytest.raises(ProjectFileError, match=r"b\.dsproj: sample rate .* is not a whole number"):
        load_project(bad)


# -- damaged and hand-edited files -------------------------------------------------


def test_deeply_nested_json_is_a_project_error(tmp_path, session):
    p = save_project(session, tmp_path / "a.dsproj")
    deep = ("[" * 200_000 + "]" * 200_000).encode()
    bad = _rewrite(p, tmp_path / "b.dsproj", replace={"project.json": deep})
    with pytest.raises(ProjectFileError, match=r"b\.dsproj: project\.json is nested too deeply"):
        load_project(bad)
    doc = '{"format": "demixstudio-project", "schema": 2, "x": ' + "[" * 200_000 + "]" * 200_000 + "}"
    bad = _rewrite(p, tmp_path / "c.dsproj", replace={"project.json": doc.encode()})
    with pytest.raises(ProjectFileError, match=r"c\.dsproj: project\.json is nested too deeply"):
        load_project(bad)


@pytest.mark.parametrize("key", ["mute", "solo"])
@pytest.mark.parametrize("value", ["false", "true", "", None, 2, 0.5, [1]])
def test_switches_must_be_booleans(tmp_path, session, key, value):
    """bool("false") is True: a hand-edited "false" loaded as muted."""
    p = save_project(session, tmp_path / "a.dsproj")
    bad = _rewrite(p, tmp_path / "b.dsproj",
                   edit_doc=lambda d: _entry(d, "loud").__setitem__(key, value))
    with pytest.raises(ProjectFileError, match=rf"b\.dsproj: layer \d \(loud\): {key} .* must "
                                               r"be true or false"):
        load_project(bad)


def test_switches_load_as_saved(tmp_path, session):
    p = save_project(session, tmp_path / "a.dsproj")
    ok = _rewrite(p, tmp_path / "b.dsproj",
                  edit_doc=lambda d: (_entry(d, "loud").__setitem__("mute", 1),
                                      _entry(d, "voice").__setitem__("mute", 0)))
    t = load_project(ok)
    assert t.layer("loud").mute is True and t.layer("voice").mute is False
    assert t.residual.solo is True and t.layer("loud").solo is False


def test_layer_names_must_be_unique_text(tmp_path, session):
    p = save_project(session, tmp_path / "a.dsproj")
    cases = [(lambda d: _entry(d, "loud").__setitem__("name", None), r"layer name None is not text"),
             (lambda d: _entry(d, "loud").__setitem__("name", 5), r"layer name 5 is not text"),
             (lambda d: _entry(d, "loud").__setitem__("name", "voice"),
              r"the layer name 'voice' is used by an earlier layer too"),
             (lambda d: _entry(d, "loud").__setitem__("name", " voice "),
              r"the layer name 'voice' is used by an earlier layer too"),
             (lambda d: _entry(d, "voice").__setitem__("name", "residual"),
              r"the layer name 'residual' is used by an earlier layer too")]
    for i, (edit, reason) in enumerate(cases):
        bad = _rewrite(p, tmp_path / f"b{i}.dsproj", edit_doc=edit)
        with pytest.raises(ProjectFileError, match=rf"b{i}\.dsproj: layer \d .*{reason}"):
            load_project(bad)


def test_every_load_error_names_the_file(tmp_path, session):
    """Checks on the mixture, a member or a paint target used to leave the path out."""
    session.paint_stroke("t", slice(0, 4), slice(0, 4), np.ones((4, 4), np.float32))
    p = save_project(session, tmp_path / "a.dsproj")
    cases = [lambda d: d["mixture"].__setitem__("kind", "ogg"),
             lambda d: d["mixture"].__setitem__("file", "audio/none.flac"),
             lambda d: d["paint"][0].__setitem__("tile", [1, 1])]
    for i, edit in enumerate(cases):
        bad = _rewrite(p, tmp_path / f"b{i}.dsproj", edit_doc=edit)
        with pytest.raises(ProjectFileError) as info:
            load_project(bad)
        assert str(info.value).startswith(f"{bad}: "), str(info.value)


def test_saving_through_a_symbolic_link_updates_its_target(tmp_path, session):
    real = save_project(session, tmp_path / "real.dsproj")
    link = tmp_path / "song.dsproj"
    link.symlink_to(real)
    session.set("voice", gain_db=-9)
    save_project(session, link)
    assert link.is_symlink()  # used to be replaced by a plain file
    assert load_project(real).layer("voice").gain_db == -9
