"""`demixstudio train`: real stems, validation SDR each epoch, checkpoint and resume, import."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_dnn_models import SR, make_stem_folder

from demixstudio.cli import main
from demixstudio.errors import ParameterError
from demixstudio.separation.dnn import store
from demixstudio.separation.dnn.data import ChunkSampler, scan_tracks, split_tracks
from demixstudio.separation.dnn.train import TrainConfig, sdr, train

SMALL_UMX = ["--set", "n_fft=512", "--set", "hop=128", "--set", "hidden_size=32",
             "--set", "nb_layers=1", "--set", "bandwidth=8000"]


def test_train_validate_checkpoint_resume_import(tmp_path, monkeypatch):
    monkeypatch.setenv(store.ENV_VAR, str(tmp_path / "store"))
    data = make_stem_folder(tmp_path / "data", seconds=3.0)
    out = tmp_path / "model"
    argv = ["train", "--data", str(data), "--arch", "umx", "--targets", "vocals,drums,bass",
            "--out", str(out), "--epochs", "2", "--steps", "3", "--batch-size", "2",
            "--chunk-s", "1", *SMALL_UMX]
    assert main(argv) == 0
    hist = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2]
    # The last track (by name) is held out; every target is scored next to the mixture.
    for h in hist:
        assert set(h["valid_sdr"]) == set(h["baseline_sdr"]) == {"vocals", "drums", "bass"}
        assert all(np.isfinite(v) for v in h["valid_sdr"].values())
    assert (out / "checkpoint.pt").is_file() and (out / "manifest.json").is_file()
    assert (out / "open-unmix" / "vocals.pth").is_file()

    assert main([*argv[:argv.index("--epochs")], "--epochs", "3",
                 *argv[argv.index("--epochs") + 2:], "--resume", "--import-as", "tiny"]) == 0
    hist3 = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in hist3] == [1, 2, 3]
    assert hist3[:2] == hist  # resumed, not restarted
    assert [m.name for m in store.list_models()] == ["tiny"]
    # The Open-Unmix export of the trained model imports too.
    info = store.import_model(out / "open-unmix", "tiny-umx")
    assert info.source == "open-unmix" and info.targets == ("vocals", "drums", "bass")


def test_sampler_remixes_and_augments(tmp_path):
    tracks = scan_tracks(make_stem_folder(tmp_path, seconds=2.0))
    train_tracks, valid = split_tracks(tracks)
    assert [t.name for t in valid] == ["easton_ellises_falcon69"]
    s = ChunkSampler(tracks, ("vocals", "bass"), SR // 4, np.random.default_rng(0))
    mix, stems = s.batch(6)
    assert mix.shape == (6, 2, SR // 4) and stems.shape == (6, 2, 2, SR // 4)
    # The mixture holds the targets plus the other stems (piano, drums, other...).
    rest = mix - stems.sum(1)
    assert np.all(np.sum(rest ** 2, axis=(1, 2)) > 0)
    with pytest.raises(ParameterError, match="guitar"):
        ChunkSampler(tracks, ("guitar",), 100, np.random.default_rng(0))
    with pytest.raises(ParameterError, match="not found"):
        split_tracks(tracks, ["nope"])


def test_sdr_and_config_checks(tmp_path):
    x = np.random.default_rng(0).standard_normal((2, 1000))
    assert sdr(x, x * 0.9) == pytest.approx(20.0, abs=1e-6)
    with pytest.raises(ParameterError, match="arch"):
        train(TrainConfig(data=tmp_path, arch="lstm", targets=("vocals",), out=tmp_path / "o"))
    assert torch.get_default_dtype() == torch.float32


def _train_argv(data, out, *extra, targets="vocals"):
    return ["train", "--data", str(data), "--arch", "umx", "--targets", targets,
            "--out", str(out), "--epochs", "1", "--steps", "1", "--batch-size", "1",
            "--chunk-s", "0.5", *SMALL_UMX, *extra]


def _synthetic_stems(root, tracks, *, channels=2, seconds=1.0, lengths=None):
    """``tracks`` maps track name -> stem names; noise stems (``lengths`` overrides seconds)."""
    import soundfile as sf
    rng = np.random.default_rng(1)
    for name, stems in tracks.items():
        (root / name).mkdir(parents=True)
        for s in stems:
            n = int((lengths or {}).get(s, seconds) * SR)
            sf.write(str(root / name / f"{s}.wav"),
                     0.1 * rng.standard_normal((n, channels)).astype(np.float32), SR,
                     subtype="FLOAT")
    return root


def test_validation_tracks_without_the_targets_are_refused_up_front(tmp_path, monkeypatch,
                                                                    capsys):
    """The default held-out track has no piano: refused before training, no folder written."""
    monkeypatch.setenv(store.ENV_VAR, str(tmp_path / "store"))
    data = _synthetic_stems(tmp_path / "data", {"a": ("vocals", "piano"), "b": ("vocals",)})
    out = tmp_path / "out"
    assert main(_train_argv(data, out, "--import-as", "piano", targets="piano")) == 1
    err = capsys.readouterr().err
    assert "piano" in err and " b " in err and "--valid" in err and "internal" not in err
    assert not out.exists() and store.list_models() == []
    # A held-out track that has the target works.
    data2 = _synthetic_stems(tmp_path / "data2", {"a": ("vocals", "piano"),
                                                  "b": ("vocals", "piano"), "c": ("vocals",)})
    assert main(_train_argv(data2, out, "--valid", "b", targets="piano")) == 0
    assert (out / "manifest.json").is_file()


def test_no_model_written_is_an_error_not_a_success(tmp_path, monkeypatch, capsys):
    from demixstudio.separation.dnn import train as train_mod
    monkeypatch.setattr(train_mod, "train", lambda cfg, *a, **k: train_mod.TrainResult(
        [], 0, cfg.out))
    assert main(_train_argv(tmp_path, tmp_path / "out")) == 1
    captured = capsys.readouterr()
    assert "model written" not in captured.out and "without writing a model" in captured.err


def test_import_as_name_is_checked_before_training(tmp_path, monkeypatch, capsys):
    root = tmp_path / "store"
    monkeypatch.setenv(store.ENV_VAR, str(root))
    data = _synthetic_stems(tmp_path / "data", {"a": ("vocals", "bass"), "b": ("vocals", "bass")})
    out = tmp_path / "out"
    assert main(_train_argv(data, out, "--import-as", "bad name")) == 1
    assert "model name 'bad name'" in capsys.readouterr().err and not out.exists()
    # A taken name: refused before training (not replaced), unless --force.
    assert main(_train_argv(data, out, "--import-as", "mine")) == 0
    first = (root / "mine" / "manifest.json").read_bytes()
    out2 = tmp_path / "out2"
    assert main(_train_argv(data, out2, "--import-as", "mine", "--seed", "7")) == 1
    assert "already in the store" in capsys.readouterr().err and not out2.exists()
    assert (root / "mine" / "manifest.json").read_bytes() == first
    assert main(_train_argv(data, out2, "--import-as", "mine", "--seed", "7", "--force")) == 0
    assert (root / "mine" / "manifest.json").read_bytes() != first


@pytest.mark.parametrize("arch", ["mmdensenet", "umx", "waveunet"])
def test_stems_with_more_than_two_channels_train(arch, tmp_path):
    from test_dnn_models import SMALL
    data = _synthetic_stems(tmp_path / "data", {"a": ("vocals", "bass"), "b": ("vocals", "bass")},
                            channels=6)
    tracks = scan_tracks(data)
    mix, stems = ChunkSampler(tracks, ("vocals",), 100, np.random.default_rng(0)).batch(3)
    assert mix.shape == (3, 2, 100) and stems.shape == (3, 1, 2, 100)
    assert np.array_equal(stems[:, :, 0], stems[:, :, 1])  # one file channel on both
    res = train(TrainConfig(data=data, arch=arch, targets=("vocals",), out=tmp_path / "o",
                            epochs=1, steps_per_epoch=1, batch_size=1, chunk_s=0.5,
                            device="cpu", hparams=dict(SMALL[arch])))
    assert res.model_written
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["nb_channels"] == 2


@pytest.mark.parametrize("key,value", [("sample_rate", "44100"), ("targets", '["drums"]'),
                                       ("nb_channels", "1")])
def test_set_cannot_override_what_the_data_determines(key, value, tmp_path, capsys):
    data = _synthetic_stems(tmp_path / "data", {"a": ("vocals", "drums"), "b": ("vocals", "drums")})
    out = tmp_path / "out"
    assert main(_train_argv(data, out, "--set", f"{key}={value}")) == 1
    err = capsys.readouterr().err
    assert f"--set {key}" in err and "training data" in err and not out.exists()


def test_stems_of_one_track_must_have_one_length(tmp_path):
    from demixstudio.errors import AudioFormatError
    ok = _synthetic_stems(tmp_path / "ok", {"a": ("vocals", "bass")},
                          lengths={"vocals": 1.0, "bass": 1.0 + 50 / SR})
    assert scan_tracks(ok)[0].frames == SR  # a few samples: cut to the shortest
    bad = _synthetic_stems(tmp_path / "bad", {"a": ("vocals", "bass", "drums")},
                           lengths={"vocals": 1.0, "bass": 0.5, "drums": 1.0})
    with pytest.raises(AudioFormatError, match=r"a: .*differ by 0.50 s.*bass 0.50 s"):
        scan_tracks(bad)
