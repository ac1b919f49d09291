"""The model store: Open-Unmix layout round trip through `models import`, weights-only loading."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from test_dnn_models import SR, stem

from demixstudio.cli import main
from demixstudio.errors import ParameterError
from demixstudio.separation.dnn import store
from demixstudio.separation.dnn.inference import separate_array
from demixstudio.separation.dnn.models import build_model
from demixstudio.separation.dnn.models.umx import OpenUnmix

UMX_KEYS = {"input_mean", "input_scale", "fc1.weight", "bn1.weight", "bn1.bias",
            "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked",
            "fc2.weight", "bn2.weight", "bn3.weight", "fc3.weight", "output_scale",
            "output_mean", "lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.bias_ih_l0",
            "lstm.bias_hh_l0", "lstm.weight_ih_l0_reverse", "lstm.weight_ih_l1"}


@pytest.fixture
def model_store(tmp_path, monkeypatch):
    root = tmp_path / "store"
    monkeypatch.setenv(store.ENV_VAR, str(root))
    return root


def _trained_like_umx() -> OpenUnmix:
    """An Open-Unmix model with non-trivial weights and statistics (not the init values)."""
    torch.manual_seed(3)
    m = OpenUnmix(targets=("vocals", "bass"), sample_rate=SR, n_fft=1024, hop=256,
                  hidden_size=48, nb_layers=2, bandwidth=6000)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm1d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
    return m.eval()


def test_open_unmix_layout_imports_and_reproduces_outputs(model_store, tmp_path, capsys):
    model = _trained_like_umx()
    folder = tmp_path / "umx-export"
    store.export_open_unmix(model, folder)
    # Open-Unmix's layout: one plain state dict per target, with its own names.
    assert sorted(p.name for p in folder.iterdir()) == [
        "bass.json", "bass.pth", "separator.json", "vocals.json", "vocals.pth"]
    sd = torch.load(str(folder / "vocals.pth"), weights_only=True)
    assert UMX_KEYS <= set(sd)
    assert sd["fc1.weight"].shape == (48, 2 * model.max_bin)
    args = json.loads((folder / "vocals.json").read_text())["args"]
    assert {"nfft", "nhop", "hidden_size", "nb_channels"} <= set(args)

    assert main(["models", "import", str(folder), "--name", "tiny-umx"]) == 0
    assert "imported tiny-umx" in capsys.readouterr().out
    assert main(["models", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in listed] == ["tiny-umx"]
    assert listed[0]["arch"] == "umx" and listed[0]["targets"] == ["vocals", "bass"]
    assert listed[0]["sample_rate"] == SR and len(listed[0]["sha256"]) == 64

    loaded = store.load_model("tiny-umx")
    mix = (stem("bearlin_roads", "vocals") + stem("bearlin_roads", "bass"))[:, :3 * SR]
    a = separate_array(model, mix, device="cpu", chunk_s=60).stems
    b = separate_array(loaded, mix, device="cpu", chunk_s=60).stems
    assert a.shape == b.shape == (2, 2, mix.shape[1])
    assert np.abs(a).max() > 1e-3
    np.testing.assert_allclose(b, a, atol=1e-6 * np.abs(a).max() + 1e-7)

    assert main(["models", "remove", "tiny-umx"]) == 0
    assert store.list_models() == []


def test_native_folder_round_trip_and_checksum(model_store, tmp_path):
    m = build_model("waveunet", {"targets": ("vocals",), "sample_rate": SR, "layers": 3,
                                 "growth": 4})
    store.save_model(m, tmp_path / "wun")
    info = store.import_model(tmp_path / "wun")
    assert info.name == "wun" and info.arch == "waveunet"
    x = torch.randn(1, 2, 4000)
    with torch.no_grad():
        assert torch.equal(store.load_model("wun").separate(x), m.eval().separate(x))
    with pytest.raises(ParameterError, match="already"):
        store.import_model(tmp_path / "wun")
    # A damaged weights file is refused.
    weights = info.path / store.WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ParameterError, match="checksum"):
        store.load_model("wun")


class _Payload:
    """Unpickling this would run code; a weights-only load must refuse it."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_import_refuses_pickles_and_wrong_shapes(model_store, tmp_path):
    bad = tmp_path / "evil"
    bad.mkdir()
    torch.save({"fc1.weight": _Payload()}, str(bad / "vocals.pth"))
    (bad / "vocals.json").write_text(json.dumps({"args": {"nfft": 1024, "nhop": 256}}))
    with pytest.raises(ParameterError, match="weights-only"):
        store.import_model(bad)
    assert store.list_models() == []

    model = _trained_like_umx()
    folder = tmp_path / "umx"
    store.export_open_unmix(model, folder)
    sd = torch.load(str(folder / "bass.pth"), weights_only=True)
    sd["fc2.weight"] = sd["fc2.weight"][:, :10]
    torch.save(sd, str(folder / "bass.pth"))
    with pytest.raises(ParameterError, match="fc2.weight"):
        store.import_model(folder)
    with pytest.raises(ParameterError, match="no such"):
        store.import_model(tmp_path / "nothing-here")
    assert main(["models", "import", str(tmp_path / "nothing-here")]) == 1


def test_store_location_from_environment(model_store):
    assert store.models_dir() == model_store
    with pytest.raises(ParameterError, match="model name"):
        store.check_name("../escape")
