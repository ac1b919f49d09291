"""Stem and remix export."""

from __future__ import annotations

import errno

import numpy as np
import pytest
import soundfile as sf

from conftest import shared
from demixstudio.audio.io import load_audio
from demixstudio.errors import OutputError, ParameterError
from demixstudio.separation.base import LayerProposal
from demixstudio.session import Session
from demixstudio.separation.registry import get_method
from demixstudio.session.export import clipping_warnings, export


@pytest.fixture
def session():
    stems = {n: load_audio(shared(f"easton_ellises_falcon69/{n}.wav"))[0]
             for n in ("vocals", "drums", "bass")}
    mix = sum(stems.values()).astype(np.float32)
    s = Session(mix, 44100, name="Falcon 69")
    s.apply_proposals([LayerProposal(n, "oracle", {}, waveform=a) for n, a in stems.items()])
    return s, stems


@pytest.mark.parametrize("ext,bits", [("wav", "16"), ("wav", "24"), ("wav", "float"), ("flac", "24")])
def test_stems_line_up(tmp_path, session, ext, bits):
    s, stems = session
    s.set("drums", gain_db=-6.0)
    files = export(s, tmp_path, remix=True, ext=ext, bits=bits)
    names = sorted(f.path.name for f in files)
    assert names == sorted([f"Falcon 69 - {n}.{ext}" for n in ("vocals", "drums", "bass", "residual")]
                           + [f"Falcon 69 - remix.{ext}"])
    tol = {"16": 2 ** -15, "24": 2 ** -23, "float": 1e-7}[bits] * 2
    for f in files:
        info = sf.info(f.path)
        assert info.frames == s.samples and info.samplerate == 44100 and info.channels == 2
    v, _ = load_audio(tmp_path / f"Falcon 69 - vocals.{ext}")
    assert np.abs(v - stems["vocals"]).max() <= tol
    d, _ = load_audio(tmp_path / f"Falcon 69 - drums.{ext}")
    assert np.abs(d - stems["drums"] * 10 ** (-6 / 20)).max() <= tol + 1e-6
    # Stems with their settings add up to the remix.
    total = sum(load_audio(f.path)[0] for f in files if f.layer is not None)
    remix, _ = load_audio(tmp_path / f"Falcon 69 - remix.{ext}")
    assert np.abs(total - remix).max() <= 6 * tol


def test_disk_full_leaves_no_file(tmp_path, session, monkeypatch):
    s, _ = session
    calls = {"n": 0}
    real = sf.SoundFile.write

    def fill_up(self, data):
        calls["n"] += 1
        if calls["n"] >= 3:  # the third file runs out of space
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(sf.SoundFile, "write", fill_up)
    with pytest.raises(OutputError, match="no space left"):
        export(s, tmp_path, remix=True)
    assert list(tmp_path.iterdir()) == []  # all or nothing: no stem under a final name


def test_unwritable_folder(tmp_path, session):
    s, _ = session
    with pytest.raises(OutputError, match="no such folder"):
        export(s, tmp_path / "missing")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        import os
        if os.access(ro, os.W_OK):  # running as root: permissions don't bind; use a file as folder
            target = tmp_path / "file"
            target.write_text("x")
            with pytest.raises(OutputError):
                export(s, target)
        else:
            with pytest.raises(OutputError, match="permission"):
                export(s, ro)
    finally:
        ro.chmod(0o700)


def test_export_never_writes_over_the_input_recording(tmp_path, session):
    s, _ = session
    src = tmp_path / "vocals.wav"
    sf.write(src, s.mixture.T, 44100, subtype="FLOAT")
    before = src.read_bytes()
    s.source_path = str(src)
    with pytest.raises(OutputError, match="write over the input recording"):
        export(s, tmp_path, naming="{layer}")
    assert src.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["vocals.wav"]
    with pytest.raises(ParameterError, match="template"):
        export(s, tmp_path, naming="{song} - {track}")


def test_integer_formats_report_the_stems_they_clip(tmp_path):
    """A stem above full scale is clipped in 24-bit and says so; float keeps it, and
    the stems add up to the mixture."""
    x, _ = load_audio(shared("speech_sisec_dev1/dev1_female4_src_1.wav"))
    y, _ = load_audio(shared("speech_sisec_dev1/dev1_female4_src_2.wav"))
    n = min(x.shape[1], y.shape[1], 3 * 16000)
    a, b = x[:, :n] * 4 / np.abs(x[:, :n]).max(), y[:, :n] * 0.5 / np.abs(y[:, :n]).max()
    s = Session((a + b).astype(np.float32), 16000, name="loud")
    s.apply_proposals([LayerProposal("a", "oracle", {}, waveform=a.astype(np.float32))])
    (tmp_path / "24").mkdir()
    files = export(s, tmp_path / "24", bits="24")
    clipped = {f.layer: f.clipped_db for f in files}
    assert clipped["a"] == pytest.approx(20 * np.log10(4), abs=0.05)
    assert [w.split(" peaks")[0] for w in clipping_warnings(files)] == [
        f.path.name for f in files if f.clipped_db is not None]
    (tmp_path / "float").mkdir()
    files = export(s, tmp_path / "float", bits="float")
    assert all(f.clipped_db is None for f in files)
    total = sum(load_audio(f.path)[0] for f in files)
    np.testing.assert_allclose(total, s.mixture, atol=1e-5)


def test_sidecars_are_published_with_the_stems_or_not_at_all(tmp_path, session):
    s, _ = session
    (tmp_path / "keep.txt").write_text("earlier")

    def broken(files):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match="no space left"):
        export(s, tmp_path, sidecars={"keep.txt": broken})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    assert (tmp_path / "keep.txt").read_text() == "earlier"
    files = export(s, tmp_path, sidecars={"keep.txt": lambda fs: str(len(fs))})
    assert (tmp_path / "keep.txt").read_text() == str(len(files)) == "4"


def test_separate_into_a_used_folder_replaces_the_earlier_result_whole(tmp_path):
    """A second run into the same folder leaves its own stems and layers.json only
    (the earlier run's extra stems go; files it did not write stay)."""
    import json

    from demixstudio.separation.base import make_params
    from demixstudio.session.operations import separate_to_folder

    x, _ = load_audio(shared("speech_sisec_dev1/dev1_female4_src_1.wav"))
    src = tmp_path / "in.wav"
    sf.write(src, x[:, :2 * 16000].T, 16000, subtype="FLOAT")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    hpss = get_method("hpss")
    separate_to_folder(src, "hpss", out, params=make_params(hpss.Params, values={"margin": 2.0}))
    first = json.loads((out / "layers.json").read_text())
    assert len(first["layers"]) == 3
    doc = separate_to_folder(src, "hpss", out)
    names = {x["file"] for x in doc["layers"]}
    assert sorted(p.name for p in out.iterdir()) == sorted(names | {"layers.json", "notes.txt"})
    assert json.loads((out / "layers.json").read_text()) == doc
    a_file = tmp_path / "notes"
    a_file.write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        separate_to_folder(src, "hpss", a_file)


def test_the_command_line_warns_of_clipped_stems(tmp_path):
    """`separate` into 24-bit WAV of a float file above full scale: the stems are
    written, and stderr names each one that clipped."""
    import subprocess
    import sys

    x, _ = load_audio(shared("speech_sisec_dev1/dev1_female4_src_1.wav"))
    loud = tmp_path / "loud.wav"
    sf.write(loud, (x[:, :16000] * 3 / np.abs(x[:, :16000]).max()).T, 16000, subtype="FLOAT")
    run = subprocess.run([sys.executable, "-m", "demixstudio", "separate", str(loud), "--method",
                          "hpss", "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    warned = [line for line in run.stderr.splitlines() if line.startswith("warning:")]
    assert warned and all("--bits float" in w for w in warned)


def _digests(folder):
    import hashlib
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_folder_at_one_name_leaves_every_earlier_file_as_it_was(tmp_path, session):
    """A folder where the remix goes: the stems used to be replaced before the
    remix's rename failed, and the error named the folder, not the file."""
    s, _ = session
    export(s, tmp_path, stems=True, ext="wav", bits="16")
    before = _digests(tmp_path)
    (tmp_path / "Falcon 69 - remix.wav").mkdir()
    s.set("vocals", gain_db=-6)
    with pytest.raises(OutputError, match=r"cannot write .*Falcon 69 - remix\.wav: a folder "
                                          r"has that name"):
        export(s, tmp_path, stems=True, remix=True, ext="wav", bits="16")
    assert _digests(tmp_path) == before  # old stems intact, no temporaries left
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*before, "Falcon 69 - remix.wav"])


def test_a_rename_that_still_fails_undoes_the_earlier_ones(tmp_path, session, monkeypatch):
    """The checks pass but a rename fails anyway (a race, a network share): the
    files already renamed get their old content back, new ones are removed."""
    import os
    s, _ = session
    export(s, tmp_path, stems=True, ext="wav", bits="16")
    before = _digests(tmp_path)
    s.set("vocals", gain_db=-6)
    real = os.replace
    calls = {"n": 0}

    def flaky(src, dst):
        if str(src).endswith(".part") and not str(dst).endswith(".part"):
            calls["n"] += 1
            if calls["n"] == 3:  # the third of four files
                raise OSError(errno.EIO, "Input/output error")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(OutputError, match=r"cannot write .*Falcon 69 - bass\.wav: Input/output"):
        export(s, tmp_path, stems=True, remix=True, ext="wav", bits="16")
    assert calls["n"] == 5  # three publishing renames, then two putting old stems back
    assert _digests(tmp_path) == before  # stems 1 and 2 restored, no remix, no temporaries


def test_export_writes_through_a_symbolic_link(tmp_path, session):
    s, _ = session
    real = tmp_path / "real"
    real.mkdir()
    export(s, real, stems=False, remix=True)
    link = tmp_path / "Falcon 69 - remix.wav"
    link.symlink_to(real / "Falcon 69 - remix.wav")
    s.set("vocals", mute=True)
    export(s, tmp_path, stems=False, remix=True, ext="wav", bits="float")
    assert link.is_symlink()
    data, _ = sf.read(real / "Falcon 69 - remix.wav", always_2d=True)
    assert np.allclose(data.T, s.mixdown(), atol=1e-6)
    assert sorted(p.name for p in real.iterdir()) == ["Falcon 69 - remix.wav"]
