"""The command line, end to end: separate then eval on real mixtures, and bad input."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO, shared
from demixstudio.audio.io import load_audio, resample
from demixstudio.cli import main

SR = 16000
# speech+speech, speech+music, music+music: (file, file), all brought to 16 kHz.
PAIRS = [
    ("speech_sisec_dev1/dev1_female4_src_1.wav", "speech_sisec_dev1/dev1_male4_src_2.wav"),
    ("speech_librispeech/198-209-0000.wav", "speech_librispeech/3436-172162-0000.wav"),
    ("solo_voice/speech-male.wav", "solo_instruments/cello-phrase.wav"),
    ("speech_librispeech/5703-47212-0000.wav", "solo_instruments/sax-phrase.wav"),
    ("solo_instruments/sax-phrase.wav", "solo_instruments/cello-phrase.wav"),
]


def _mono(rel: str) -> np.ndarray:
    a, sr = load_audio(shared(rel))
    a = resample(a[:1], sr, SR)[0]
    return a / (np.sqrt(np.mean(a ** 2)) + 1e-12) * 0.05  # equal loudness


def _unit_norm_mixing(rng) -> np.ndarray:
    """A random 2×2 mixing matrix with unit-norm columns that is not near-singular."""
    while True:
        theta = rng.uniform(0, np.pi, size=2)
        a = np.stack([np.cos(theta), np.sin(theta)])
        if np.linalg.cond(a) < 8:
            return a


def make_case(tmp: Path, i: int, pair) -> tuple:
    rng = np.random.default_rng(100 + i)
    s = [_mono(p) for p in pair]
    n = min(len(s[0]), len(s[1]), 8 * SR)
    s = np.stack([x[:n] for x in s])
    a = _unit_norm_mixing(rng)
    images = a.T[:, :, None] * s[:, None, :]  # (sources, channels, samples)
    mix = images.sum(0)
    mix_path = tmp / f"mix{i}.wav"
    sf.write(mix_path, mix.T, SR, subtype="FLOAT")
    ref = tmp / f"ref{i}"
    ref.mkdir()
    for k in range(2):
        sf.write(ref / f"source{k}.wav", images[k].T, SR, subtype="FLOAT")
    return mix_path, ref


def _eval(ref: Path, out: Path, capsys) -> dict:
    assert main(["eval", "--reference", str(ref), "--estimates", str(out), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("method,extra,threshold", [
    ("ica", [], 35.0),
    # Fourth-order cumulants are noisier estimates than FastICA's tanh contrast on
    # heavy-tailed speech: JADE lands a few dB lower (about 34 dB here).
    ("ica", ["--set", "algorithm=jade"], 30.0),
    ("decorrelation", [], 25.0),
])
def test_separate_then_eval(tmp_path, capsys, method, extra, threshold):
    sdrs = []
    for i, pair in enumerate(PAIRS):
        mix, ref = make_case(tmp_path, i, pair)
        out = tmp_path / f"{method}{i}"
        rc = main(["separate", str(mix), "--method", method, "--sources", "2", *extra,
                   "--bits", "float", "--out", str(out)])
        assert rc == 0
        listing = json.loads((out / "layers.json").read_text())
        assert [x["name"] for x in listing["layers"]] == ["source 1", "source 2"]
        assert listing["elapsed_s"] > 0 and listing["method"] == method
        capsys.readouterr()
        report = _eval(ref, out, capsys)
        sdrs += [r["sdr"] for r in report["sources"]]
    print(f"{method} {extra}: SDR per source {np.round(sdrs, 1)}; median {np.median(sdrs):.1f} dB")
    assert np.median(sdrs) >= threshold


def test_methods_listing(capsys):
    assert main(["methods", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    names = {r["name"] for r in rows}
    assert {"ica", "decorrelation"} <= names
    for r in rows:
        for p in r["params"]:
            assert {"name", "type", "default", "label", "help", "min", "max", "choices",
                    "advanced"} <= set(p)
    hum = {p["name"]: p for r in rows if r["name"] == "nmf-hum" for p in r["params"]}
    assert hum["tol"]["advanced"] and not hum["transpose_search"]["advanced"]
    assert main(["methods"]) == 0
    text = capsys.readouterr().out
    assert "FastICA" in text and "    tol (float, advanced, default 0.0001" in text


def test_demo_and_remix(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--seconds", "3"]) == 0
    assert (out / "demo.wav").is_file() and (out / "demo.dsproj").is_file()
    assert main(["remix", str(out / "demo.dsproj"), "--out", str(tmp_path / "remix.wav")]) == 0
    remix, _ = load_audio(tmp_path / "remix.wav")
    mix, _ = load_audio(out / "demo.wav")
    assert np.abs(remix - mix).max() < 2e-4  # unity settings: the remix is the mix
    # The demo's reference stems are a ground truth that eval can use.
    capsys.readouterr()
    assert main(["eval", "--reference", str(out / "reference"), "--estimates",
                 str(out / "reference"), "--json"]) == 0
    assert min(r["sdr"] for r in json.loads(capsys.readouterr().out)["sources"]) > 60


# -- bad input: one clear line, non-zero exit, nothing under a final name ----------


def _run_fail(argv, capsys, code=1):
    rc = main(argv)
    # Progress lines (only for work that runs over 2 s) are not error lines.
    err = [x for x in capsys.readouterr().err.strip().splitlines() if "%" not in x]
    assert rc == code, err
    assert len(err) == 1, err
    return err[0]


def test_remix_never_writes_over_the_recording(tmp_path, capsys):
    """--out naming the project's source recording, however spelt, is refused and
    the recording is left as it was."""
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--seconds", "2"]) == 0
    song = out / "demo.wav"
    before = song.read_bytes()
    (tmp_path / "link.wav").symlink_to(song)
    for spelt in (song, out / "reference" / ".." / "demo.wav", tmp_path / "link.wav"):
        capsys.readouterr()
        line = _run_fail(["remix", str(out / "demo.dsproj"), "--out", str(spelt)], capsys)
        assert "write over the input recording" in line and str(song) in line
        assert song.read_bytes() == before
    assert sorted(x.name for x in out.iterdir()) == ["demo.dsproj", "demo.wav", "reference"]


@pytest.fixture
def stereo_mix(tmp_path):
    mix, _ = make_case(tmp_path, 0, PAIRS[0])
    return mix


def test_missing_file(tmp_path, capsys):
    line = _run_fail(["separate", str(tmp_path / "nope.wav"), "--method", "ica",
                      "--out", str(tmp_path / "o")], capsys)
    assert "no such file" in line and not (tmp_path / "o").exists()


def test_text_file_named_wav(tmp_path, capsys):
    p = tmp_path / "text.wav"
    p.write_text("hello, I am not audio\n")
    line = _run_fail(["separate", str(p), "--method", "ica", "--out", str(tmp_path / "o")], capsys)
    assert "not an audio file" in line


def test_zero_length(tmp_path, capsys):
    p = tmp_path / "empty.wav"
    sf.write(p, np.zeros((0, 2), np.float32), SR)
    line = _run_fail(["separate", str(p), "--method", "ica", "--out", str(tmp_path / "o")], capsys)
    assert "no audio samples" in line


def test_all_nan(tmp_path, capsys):
    p = tmp_path / "nan.wav"
    sf.write(p, np.full((1000, 2), np.nan, np.float32), SR, subtype="FLOAT")
    line = _run_fail(["separate", str(p), "--method", "decorrelation", "--out",
                      str(tmp_path / "o")], capsys)
    assert "NaN" in line


def test_one_sample(tmp_path, capsys):
    p = tmp_path / "one.wav"
    sf.write(p, np.array([[0.1, -0.2]], np.float32), SR, subtype="FLOAT")
    line = _run_fail(["separate", str(p), "--method", "ica", "--out", str(tmp_path / "o")], capsys)
    assert "ica" in line or "sample" in line
    assert not any((tmp_path / "o").glob("*.wav"))


def test_six_channels_into_decorrelation(tmp_path, capsys):
    """A principled reduction to 2 dimensions, then images in all 6 channels."""
    rng = np.random.default_rng(6)
    s = np.stack([_mono(PAIRS[2][0])[:4 * SR], _mono(PAIRS[2][1])[:4 * SR]])
    a = rng.standard_normal((6, 2))
    a /= np.linalg.norm(a, axis=0)
    p = tmp_path / "six.wav"
    sf.write(p, (a @ s).T, SR, subtype="FLOAT")
    out = tmp_path / "o"
    assert main(["separate", str(p), "--method", "decorrelation", "--sources", "2",
                 "--bits", "float", "--out", str(out)]) == 0
    est = [load_audio(out / f"source {k}.wav")[0] for k in (1, 2)]
    assert all(e.shape == (6, 4 * SR) for e in est)
    images = [np.outer(a[:, k], s[k]) for k in range(2)]
    snr = []
    for img in images:
        best = min(np.sum((img - e) ** 2) for e in est)
        snr.append(10 * np.log10(np.sum(img ** 2) / best))
    assert min(snr) > 20


def test_more_sources_than_channels(stereo_mix, tmp_path, capsys):
    line = _run_fail(["separate", str(stereo_mix), "--method", "ica", "--sources", "3",
                      "--out", str(tmp_path / "o")], capsys)
    assert "3" in line and "2" in line and "channels" in line
    assert not any((tmp_path / "o").glob("*.wav")) if (tmp_path / "o").exists() else True


def test_unwritable_output_folder(stereo_mix, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    line = _run_fail(["separate", str(stereo_mix), "--method", "ica",
                      "--out", str(blocker / "sub")], capsys)
    assert "cannot create the output folder" in line
    # /proc refuses new entries even to root.
    line = _run_fail(["separate", str(stereo_mix), "--method", "ica", "--out", "/proc/demix-out"],
                     capsys)
    assert "output folder" in line


def test_disk_full_during_export(stereo_mix, tmp_path, capsys, monkeypatch):
    calls = {"n": 0}
    real = sf.SoundFile.write

    def fill_up(self, data):
        calls["n"] += 1
        if calls["n"] >= 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(sf.SoundFile, "write", fill_up)
    out = tmp_path / "o"
    line = _run_fail(["separate", str(stereo_mix), "--method", "ica", "--out", str(out)], capsys)
    assert "no space left" in line
    # No stem, no layers.json, and not even the folder: the command made it, empty.
    assert not out.exists()
    out.mkdir()  # one that was there before stays, empty as it was
    calls["n"] = 0
    _run_fail(["separate", str(stereo_mix), "--method", "ica", "--out", str(out)], capsys)
    assert out.is_dir() and list(out.iterdir()) == []


def test_usage_errors(stereo_mix, tmp_path, capsys):
    _run_fail(["separate", str(stereo_mix), "--out", str(tmp_path)], capsys, code=2)
    # An unknown --method is a bad option value, a usage error like argparse's own (2).
    line = _run_fail(["separate", str(stereo_mix), "--method", "nmf-magic", "--out",
                      str(tmp_path / "o")], capsys, code=2)
    assert "unknown method" in line and "ica" in line
    line = _run_fail(["batch", str(stereo_mix), "--method", "nmf-magic", "--out",
                      str(tmp_path / "o")], capsys, code=2)
    assert "unknown method" in line and "ica" in line
    assert not (tmp_path / "o").exists()
    # So is a parameter's value out of range, an unknown parameter or hint kind,
    # and a --hint that is not KIND:TARGET=FILE, in separate and batch alike.
    for command in ("separate", "batch"):
        line = _run_fail([command, str(stereo_mix), "--method", "ica", "--set", "max_iter=-3",
                          "--out", str(tmp_path / "o")], capsys, code=2)
        assert line.startswith(f"demixstudio {command}: ") and "max_iter" in line, line
        line = _run_fail([command, str(stereo_mix), "--method", "ica", "--set", "speed=11",
                          "--out", str(tmp_path / "o")], capsys, code=2)
        assert "unknown parameter 'speed'" in line
        line = _run_fail([command, str(stereo_mix), "--method", "ica", "--hint", "vocals.wav",
                          "--out", str(tmp_path / "o")], capsys, code=2)
        assert "argument --hint" in line and "KIND:TARGET=FILE" in line, line
        line = _run_fail([command, str(stereo_mix), "--method", "nmf-hum", "--hint",
                          "humm:a=x.wav", "--out", str(tmp_path / "o")], capsys, code=2)
        assert "'humm'" in line
        assert not (tmp_path / "o").exists()
    # A hint file that is not there is a failure, like a missing mixture (1).
    line = _run_fail(["separate", str(stereo_mix), "--method", "nmf-hum", "--hint",
                      f"hum:a={tmp_path / 'no-such.wav'}", "--out", str(tmp_path / "o")], capsys)
    assert "no-such.wav" in line


def test_console_script_and_debug(tmp_path):
    """The installed entry point: exit codes and a traceback only with --debug."""
    exe = Path(sys.executable).with_name("demixstudio")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "demixstudio"]
    r = subprocess.run([*cmd, "separate", str(tmp_path / "x.wav"), "--method", "ica", "--out",
                        str(tmp_path)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run([*cmd, "--debug", "separate", str(tmp_path / "x.wav"), "--method", "ica",
                        "--out", str(tmp_path)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 1 and "Traceback" in r.stderr
    r = subprocess.run([*cmd, "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("demixstudio ")


@pytest.mark.parametrize("where", ["before", "after", "between"])
def test_debug_works_before_or_after_the_command(tmp_path, capsys, where):
    """The error line says "run with --debug": it works wherever the user puts it."""
    argv = ["separate", str(tmp_path / "x.wav"), "--method", "ica", "--out", str(tmp_path / "o")]
    at = {"before": 0, "between": 1, "after": len(argv)}[where]
    assert main([*argv[:at], "--debug", *argv[at:]]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].endswith("no such file"), err
    # Without it, one line; a command without --debug keeps one given before it.
    assert "Traceback" not in _run_fail(argv, capsys)
    assert main(["--debug", "methods", "--json"]) == 0
    capsys.readouterr()


@pytest.fixture
def short_mix(tmp_path):
    """Half a second of stereo noise: enough for the checks below, quick to separate."""
    p = tmp_path / "short.wav"
    rng = np.random.default_rng(3)
    sf.write(p, (0.1 * rng.standard_normal((SR // 2, 2))).astype(np.float32), SR,
             subtype="FLOAT")
    return p


@pytest.mark.parametrize("text,says", [
    ("1:2:3:4", "a:b or a:b:step"),
    ("0:1000000000", "more than"),  # was expanded in full: out of memory
    ("0:10:0", "step of 0"),
    ("x", "list of integers"),
])
def test_bad_int_ranges_are_one_line(short_mix, tmp_path, capsys, text, says):
    line = _run_fail(["separate", str(short_mix), "--method", "decorrelation", "--set",
                      f"lags={text}", "--out", str(tmp_path / "o")], capsys, code=2)
    assert line.startswith("demixstudio separate: lags=") and says in line, line
    assert "internal error" not in line
    assert not (tmp_path / "o").exists()


def test_bad_output_options_leave_no_folder(short_mix, tmp_path, capsys):
    out = tmp_path / "o" / "x"
    line = _run_fail(["separate", str(short_mix), "--method", "hpss", "--format", "flac",
                      "--bits", "float", "--out", str(out)], capsys)
    assert "FLAC" in line and not (tmp_path / "o").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_missing_gpu_is_refused_before_the_folder(short_mix, tmp_path, capsys):
    out = tmp_path / "o" / "x"
    line = _run_fail(["separate", str(short_mix), "--method", "nmf", "--device", "cuda",
                      "--out", str(out)], capsys)
    assert "cuda" in line.lower() and not (tmp_path / "o").exists()


def test_a_mixture_cut_short_is_separated_with_a_warning(short_mix, tmp_path, capsys):
    """A WAV that holds less than its header says is separated as it is, and the
    run says so: one warning line on stderr, and in layers.json and the batch
    manifest's record."""
    data = short_mix.read_bytes()
    cut = tmp_path / "in" / "cut.wav"
    cut.parent.mkdir()
    cut.write_bytes(data[:len(data) // 2])
    assert main(["separate", str(cut), "--method", "hpss", "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: cut.wav is cut short: ") and \
        "announces 0.50 s, 0.25 s can be read" in err[0], err
    doc = json.loads((tmp_path / "o" / "layers.json").read_text())
    assert doc["warnings"] == [err[0][len("warning: "):]]
    assert doc["samples"] < SR // 2
    assert main(["batch", str(cut.parent), "--method", "hpss", "--workers", "1",
                 "--out", str(tmp_path / "b")]) == 0
    assert [x for x in capsys.readouterr().err.splitlines() if x.startswith("warning:")] == err
    # The whole file says nothing.
    assert main(["separate", str(short_mix), "--method", "hpss", "--out", str(tmp_path / "w")]) == 0
    assert "warning" not in capsys.readouterr().err
    assert json.loads((tmp_path / "w" / "layers.json").read_text())["warnings"] == []


def test_a_failed_run_removes_only_the_empty_folders_it_made(short_mix, tmp_path, capsys,
                                                            monkeypatch):
    """A failure after the folder is made (here a method that refuses the input)
    takes back the folders the command created, and no other."""
    from demixstudio.errors import ParameterError
    from demixstudio.separation import get_method

    def refuse(self, *args, **kwargs):
        raise ParameterError("refused for the test")

    monkeypatch.setattr(type(get_method("hpss")), "separate", refuse)
    argv = ["separate", str(short_mix), "--method", "hpss", "--out"]
    new = tmp_path / "new" / "deeper"
    assert "refused for the test" in _run_fail([*argv, str(new)], capsys)
    assert not (tmp_path / "new").exists()
    # A folder that existed stays, empty or not; so do folders above a new one.
    empty = tmp_path / "empty"
    empty.mkdir()
    _run_fail([*argv, str(empty)], capsys)
    assert empty.is_dir()
    _run_fail([*argv, str(empty / "sub")], capsys)
    assert empty.is_dir() and not (empty / "sub").exists()
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    _run_fail([*argv, str(full)], capsys)
    assert (full / "notes.txt").read_text() == "mine"


def test_a_reader_that_stops_early_is_not_an_error():
    """`demixstudio methods | head -1`: the closed pipe ends the command quietly."""
    proc = subprocess.Popen([sys.executable, "-m", "demixstudio", "methods"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # the reader is gone before the first line is written
    with proc.stderr:
        err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0 and err == "", err


def _paint_files(tmp_path: Path) -> dict:
    """A paint file of each kind, and malformed ones: name -> path."""
    rects = tmp_path / "rects.json"
    rects.write_text(json.dumps([[0.0, 0.5, 1000.0, 3000.0, 1.0]]))
    files = {"rects": rects}
    for name, arrays in {
        "one_frame": dict(mask=np.ones((2, 1)), times=[0.25], freqs=[200.0, 400.0]),
        "empty": dict(mask=np.zeros((0, 0)), times=np.zeros(0), freqs=np.zeros(0)),
        "times_2d": dict(mask=np.zeros((3, 2)), times=[[0.0, 0.5]], freqs=[0.0, 1.0, 2.0]),
    }.items():
        files[name] = tmp_path / f"{name}.npz"
        np.savez(files[name], **arrays)
    files["text"] = tmp_path / "text.npz"
    files["text"].write_text("hello")
    files["folder"] = tmp_path
    files["recording"] = tmp_path / "voice.wav"  # a recording given as paint by mistake
    sf.write(files["recording"], np.zeros(800, np.float32), 8000)
    files["short_rect"] = tmp_path / "short.json"
    files["short_rect"].write_text(json.dumps([[0.0, 0.5, 1000.0, 3000.0, 1.0], [0, 1, 100]]))
    files["string"] = tmp_path / "string.json"
    files["string"].write_text(json.dumps("0 0.5 1000 3000 1"))
    return files


@pytest.mark.parametrize("name,says", [
    ("empty", "times is empty"),
    ("times_2d", "times must be a 1-D array"),
    ("text", "not a valid NPZ file"),
    ("folder", "is a folder"),
    ("recording", "not a paint file (a paint file is JSON"),
    ("short_rect", "rectangle 2 is [0, 1, 100], not five numbers"),
    ("string", "holds a JSON string; a paint file is JSON"),
])
def test_a_malformed_paint_file_is_a_one_line_error(short_mix, tmp_path, capsys, name, says):
    path = _paint_files(tmp_path)[name]
    line = _run_fail(["separate", str(short_mix), "--method", "nmf-paint", "--hint",
                      f"paint:a={path}", "--out", str(tmp_path / "o")], capsys)
    assert line.startswith(f"demixstudio: error: paint hint {path}: ") and says in line, line
    assert not (tmp_path / "o").exists()


def test_paint_rectangles_may_be_given_under_rects(tmp_path):
    """``{"rects": [...]}``, as PaintHint names them, reads as the bare list does."""
    from demixstudio.separation.hintfiles import load_paint

    bare = _paint_files(tmp_path)["rects"]
    named = tmp_path / "named.json"
    named.write_text(json.dumps({"rects": json.loads(bare.read_text())}))
    assert load_paint(named).rects == load_paint(bare).rects == ((0.0, 0.5, 1000.0, 3000.0, 1.0),)


def test_layers_json_names_the_paint_files(short_mix, tmp_path, capsys):
    """What a rerun needs: each paint file's path, as for example and hum files."""
    files = _paint_files(tmp_path)
    out = tmp_path / "o"
    assert main(["separate", str(short_mix), "--method", "nmf-paint",
                 "--hint", f"paint:a={files['rects']}", "--hint", f"paint:b={files['one_frame']}",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    listing = json.loads((out / "layers.json").read_text())
    assert listing["hints"] == {"paint": {"a": str(files["rects"]), "b": str(files["one_frame"])}}


def test_a_run_note_is_printed_and_kept(short_mix, tmp_path, capsys):
    """A method's note about its run (nmf-hum: how far it moved the hum) is printed
    after the layers and kept in layers.json."""
    hum = tmp_path / "hum.wav"
    rng = np.random.default_rng(4)
    sf.write(hum, (0.1 * rng.standard_normal(SR // 2)).astype(np.float32), SR, subtype="FLOAT")
    out = tmp_path / "o"
    assert main(["separate", str(short_mix), "--method", "nmf-hum", "--hint", f"hum:a={hum}",
                 "--set", "transpose=2", "--set", "transpose_search=0", "--set", "max_iter=2",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1] == "note: the hum of 'a' moved 2 semitones up", printed
    assert json.loads((out / "layers.json").read_text())["notes"] == [
        "the hum of 'a' moved 2 semitones up"]


def test_a_hint_recording_cut_short_is_used_with_a_warning(short_mix, tmp_path, capsys):
    """A hint file cut short (a FLAC, which stops decoding with an error) is used
    for what it holds and said like a mixture cut short: on stderr, in layers.json
    and in the batch record."""
    rng = np.random.default_rng(5)
    whole = tmp_path / "hum.flac"
    sf.write(whole, (0.1 * rng.standard_normal(SR)).astype(np.float32), SR)
    data = whole.read_bytes()
    hum = tmp_path / "cut.flac"
    hum.write_bytes(data[:len(data) // 2])
    argv = ["--method", "nmf-hum", "--hint", f"hum:a={hum}", "--set", "max_iter=2",
            "--set", "transpose_search=0"]
    out = tmp_path / "o"
    assert main(["separate", str(short_mix), *argv, "--out", str(out)]) == 0
    err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("warning:")]
    assert len(err) == 1 and err[0].startswith("warning: cut.flac is cut short: its header "
                                               "announces 1.00 s"), err
    assert json.loads((out / "layers.json").read_text())["warnings"] == [err[0][9:]]
    assert main(["batch", str(short_mix), *argv, "--workers", "1",
                 "--out", str(tmp_path / "b")]) == 0
    assert [x for x in capsys.readouterr().err.splitlines() if x.startswith("warning:")] == err
