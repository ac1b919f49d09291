"""Stem and remix export."""

from __future__ import annotations

import errno

import numpy as np
import pytest
import soundfile as sf

from conftest import shared
from demixstudio.audio.io import load_audio
from demixstudio.errors import OutputError
from demixstudio.separation.base import LayerProposal
from demixstudio.session import Session
from demixstudio.session.export import export


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
