"""The model store: Open-Unmix layout round trip through `models import`, weights-only loading."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from test_dnn_models import SR, stem

from demixstudio.cli import main
from demixstudio.errors import OutputError, ParameterError
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


# --------------------------------------------------------------------------
# bad checkpoints, a store that cannot be written, broken entries
# --------------------------------------------------------------------------


def _import_error(capsys, path, *extra) -> str:
    """Import ``path`` through the CLI; it must fail with one clear line (no internal error)."""
    capsys.readouterr()
    assert main(["models", "import", str(path), *extra]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("demixstudio: error: ") and "\n" not in err, err
    assert "internal error" not in err and "Traceback" not in err
    return err


def _small_waveunet(folder):
    m = build_model("waveunet", {"targets": ("vocals",), "sample_rate": SR, "layers": 3,
                                 "growth": 4})
    store.save_model(m, folder)
    return m


def _edit_json(path, edit):
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize("edit, expected", [
    (lambda m: m.pop("hparams"), "no hparams"),
    (lambda m: m.__setitem__("hparams", [1, 2]), "no hparams"),
    (lambda m: m["hparams"].__setitem__("layers", "x"), "layers='x'"),
    (lambda m: m["hparams"].__setitem__("sample_rate", "abc"), "sample_rate='abc'"),
    (lambda m: m["hparams"].__setitem__("sample_rate", 22050.7), "sample_rate=22050.7"),
    (lambda m: m["hparams"].__setitem__("sample_rate", 10 ** 12), "from 8000 to 192000 Hz"),
    (lambda m: m["hparams"].__setitem__("sample_rate", 1), "sample_rate=1 "),
    (lambda m: m["hparams"].__setitem__("targets", "vocals"), "list of names"),
    (lambda m: m["hparams"].__setitem__("growth", 10 ** 6), "growth="),
    (lambda m: m.__setitem__("weights", 5), "weights=5"),
    (lambda m: m.__setitem__("weights", "/etc/passwd"), "name of a file in the model folder"),
    (lambda m: m.__setitem__("sample_rate", 44100), "disagree with the hparams"),
])
def test_bad_native_manifests_are_refused_in_one_line(model_store, tmp_path, capsys, edit,
                                                      expected):
    folder = tmp_path / "edited"
    _small_waveunet(folder)
    _edit_json(folder / store.MANIFEST, edit)
    err = _import_error(capsys, folder)
    assert expected in err and "manifest.json" in err
    assert store.list_models() == [] and not model_store.exists()


def _umx_case(tmp_path, name, *, state=None, args=None, separator=None, raw=None):
    """An Open-Unmix folder with one target, ``vocals``, edited as asked."""
    src = tmp_path / "umx-src"
    if not src.exists():
        store.export_open_unmix(_trained_like_umx(), src)
    folder = tmp_path / name
    folder.mkdir()
    sd = torch.load(str(src / "vocals.pth"), weights_only=True)
    if raw is not None:
        (folder / "vocals.pth").write_bytes(raw)
    else:
        torch.save({**sd, **(state or {})}, str(folder / "vocals.pth"))
    doc = json.loads((src / "vocals.json").read_text())
    doc["args"].update(args or {})
    (folder / "vocals.json").write_text(json.dumps(doc))
    if separator is not None:
        (folder / "separator.json").write_text(json.dumps(separator))
    return folder


@pytest.mark.parametrize("case, expected", [
    (dict(raw=b""), "vocals.pth: the file is empty"),
    (dict(state={"input_mean": torch.tensor(1.0)}), "input_mean has shape ()"),
    (dict(state={"input_mean": torch.zeros(0)}), "input_mean has shape (0,)"),
    (dict(state={"fc1.weight": torch.zeros(5)}), "fc1.weight has shape (5,)"),
    (dict(args={"bandwidth": "wide"}), "vocals.json: args.bandwidth='wide'"),
    (dict(args={"nfft": 10 ** 9}), "vocals.json: args.nfft=1000000000"),
    (dict(args={"nhop": "256"}), "args.nhop='256'"),
    (dict(separator={"sample_rate": "abc"}), "separator.json: sample_rate='abc'"),
    (dict(separator={"sample_rate": 10 ** 12}), "separator.json: sample_rate="),
    (dict(separator=[1]), "separator.json: not an Open-Unmix separator.json"),
])
def test_bad_open_unmix_checkpoints_are_refused_in_one_line(model_store, tmp_path, capsys,
                                                            case, expected):
    folder = _umx_case(tmp_path, "bad-umx", **case)
    assert expected in _import_error(capsys, folder)
    assert store.list_models() == []


def test_open_unmix_args_must_be_an_object(model_store, tmp_path, capsys):
    folder = _umx_case(tmp_path, "bad-umx")
    (folder / "vocals.json").write_text(json.dumps({"args": [1]}))
    assert "needs args.nfft" in _import_error(capsys, folder)


def test_sample_rates_and_sizes_are_whole_and_bounded():
    def wun(**kw):
        return build_model("waveunet", {"targets": ("vocals",), "layers": 2, "growth": 2, **kw})

    for bad in (10 ** 12, 1, 0, -5, 22050.7, "abc", True, float("nan")):
        with pytest.raises(ParameterError, match="sample_rate=.* whole number from 8000"):
            wun(sample_rate=bad)
    assert wun(sample_rate=22050.0).sample_rate == 22050
    assert type(wun(sample_rate=22050.0).sample_rate) is int
    with pytest.raises(ParameterError, match="nb_channels="):
        wun(nb_channels="abc")
    with pytest.raises(ParameterError, match="must be a JSON object"):
        build_model("waveunet", [1, 2])
    # Sizes are refused before anything is allocated from them.
    with pytest.raises(ParameterError, match="n_fft=1000000000"):
        build_model("umx", {"targets": ("vocals",), "n_fft": 10 ** 9, "hop": 1024})
    with pytest.raises(ParameterError, match="hidden_size="):
        build_model("umx", {"targets": ("vocals",), "hidden_size": 10 ** 6})
    with pytest.raises(ParameterError, match="nb_layers="):
        build_model("umx", {"targets": ("vocals",), "nb_layers": 1000})
    with pytest.raises(ParameterError, match="bandwidth="):
        build_model("umx", {"targets": ("vocals",), "bandwidth": "wide"})
    with pytest.raises(ParameterError, match="n_fft="):
        build_model("mmdensenet", {"targets": ("vocals",), "n_fft": "abc"})


def test_a_store_that_cannot_be_written_is_left_as_it_was(model_store, tmp_path, capsys,
                                                          monkeypatch):
    original = _small_waveunet(tmp_path / "wun")
    store.import_model(tmp_path / "wun")
    before = {p.name: p.read_bytes() for p in (model_store / "wun").iterdir()}
    x = torch.randn(1, 2, 2000)
    with torch.no_grad():
        expected = original.eval().separate(x)

    def read_only(*_args, **_kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    # Writing the new entry fails (a read-only store): a clear line, nothing left behind.
    with monkeypatch.context() as mp:
        mp.setattr(store, "save_model", read_only)
        err = _import_error(capsys, tmp_path / "wun", "--name", "other")
        assert "cannot import" in err and "read-only file system" in err
        err = _import_error(capsys, tmp_path / "wun", "--force")
        assert "read-only file system" in err
    assert sorted(p.name for p in model_store.iterdir()) == ["wun"]

    # Moving the new entry into place fails: the model it replaces is put back.
    real_rename = Path.rename

    def rename(self, target):
        if self.name.endswith(".importing"):
            raise OSError(errno.EACCES, "Permission denied")
        return real_rename(self, target)

    with monkeypatch.context() as mp:
        mp.setattr(Path, "rename", rename)
        with pytest.raises(OutputError, match="permission denied"):
            store.import_model(tmp_path / "wun", overwrite=True)
    assert sorted(p.name for p in model_store.iterdir()) == ["wun"]
    assert {p.name: p.read_bytes() for p in (model_store / "wun").iterdir()} == before

    # Removing fails: the model is unchanged and still loads.
    with monkeypatch.context() as mp:
        mp.setattr(Path, "rename", read_only)
        capsys.readouterr()
        assert main(["models", "remove", "wun"]) == 1
        err = capsys.readouterr().err.strip()
        assert err == (f"demixstudio: error: cannot remove model 'wun' from {model_store}: "
                       "read-only file system; the model is unchanged")
    with torch.no_grad():
        assert torch.equal(store.load_model("wun").separate(x), expected)
    assert store.remove_model("wun") == model_store / "wun"
    assert list(model_store.iterdir()) == []


def test_a_store_path_that_is_a_file_is_refused(tmp_path, capsys, monkeypatch):
    not_a_folder = tmp_path / "store"
    not_a_folder.write_text("x")
    monkeypatch.setenv(store.ENV_VAR, str(not_a_folder))
    _small_waveunet(tmp_path / "wun")
    assert "is not a folder" in _import_error(capsys, tmp_path / "wun")
    assert main(["models", "remove", "wun"]) == 1
    assert "is not a folder" in capsys.readouterr().err
    assert store.list_models() == []
    assert not_a_folder.read_text() == "x"


def test_a_broken_entry_does_not_break_the_store(model_store, tmp_path, capsys, caplog):
    import shutil

    from demixstudio.separation.dnn.method import resolve_model_name

    _small_waveunet(tmp_path / "good")
    store.import_model(tmp_path / "good")
    for name, edit in {"no-targets": lambda m: m.pop("targets"),
                       "bad-rate": lambda m: m.__setitem__("sample_rate", "abc")}.items():
        shutil.copytree(model_store / "good", model_store / name)
        _edit_json(model_store / name / store.MANIFEST, edit)

    with caplog.at_level("WARNING", logger="demixstudio.models"):
        assert [m.name for m in store.list_models()] == ["good"]
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "'bad-rate' is broken" in warned and "'no-targets' is broken" in warned
    broken = dict(store.broken_models())
    assert sorted(broken) == ["bad-rate", "no-targets"]
    assert "no targets" in broken["no-targets"] and "sample_rate='abc'" in broken["bad-rate"]

    assert main(["models", "list"]) == 0
    assert capsys.readouterr().out.startswith("good: waveunet")
    assert resolve_model_name("") == "good"
    with pytest.raises(ParameterError, match="no model 'nope'.*available: good$"):
        store.load_model("nope")
    # The broken entry itself is refused by name, in one line, and removable.
    with pytest.raises(ParameterError, match="sample_rate='abc'"):
        store.load_model("bad-rate")
    store.remove_model("bad-rate")
    assert [name for name, _ in store.broken_models()] == ["no-targets"]


def test_import_dot_takes_the_folder_name(model_store, tmp_path, monkeypatch):
    """`models import .` from inside a checkpoint folder names the model after that folder."""
    m = build_model("waveunet", {"targets": ("vocals",), "sample_rate": SR, "layers": 3,
                                 "growth": 4})
    store.save_model(m, tmp_path / "wun-dot")
    monkeypatch.chdir(tmp_path / "wun-dot")
    assert main(["models", "import", "."]) == 0
    monkeypatch.chdir(tmp_path)
    assert store.import_model(Path("wun-dot") / ".." / "wun-dot", "other").name == "other"
    assert [i.name for i in store.list_models()] == ["other", "wun-dot"]


def test_messages_taken_from_torch_lose_terminal_escapes(model_store, tmp_path, capsys):
    """A pickled module saved as .pth: torch's refusal is shown as plain text."""
    exc = RuntimeError("\x1b[1mWeights only load failed.\x1b[0m \x1b]8;;http://x\x07link\x1b]8;;\x07")
    assert store._first_line(exc) == "RuntimeError: Weights only load failed. link"
    bad = tmp_path / "module"
    bad.mkdir()
    torch.save(torch.nn.Linear(2, 2), str(bad / "vocals.pth"))
    (bad / "vocals.json").write_text(json.dumps({"args": {"nfft": 1024, "nhop": 256}}))
    assert main(["models", "import", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "weights-only" in err and "\x1b" not in err and len(err.strip().splitlines()) == 1
