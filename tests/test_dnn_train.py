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
