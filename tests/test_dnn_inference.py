"""Chunked inference: seamless overlap-add, out-of-memory retry, the `dnn` method in a session."""

from __future__ import annotations

from typing import Any, Dict

import numpy as np
import pytest
import torch
from test_dnn_models import SR, stem

from demixstudio.errors import DemixError, ParameterError
from demixstudio.jobs.context import JobContext, NullContext
from demixstudio.separation import get_method, make_params
from demixstudio.separation.dnn import store
from demixstudio.separation.dnn.inference import pick_device, separate, separate_array
from demixstudio.separation.dnn.models import build_model
from demixstudio.separation.dnn.models.base import StemModel
from demixstudio.session.session import Session


class FixedGains(StemModel):
    """Target j = gains[j] × the input: what any chunking must reproduce exactly.

    If ``fail_above`` is set, inputs longer than that many samples raise the
    error a CUDA allocator raises, to exercise the real out-of-memory path.
    """

    arch = "fixed-gains"

    def __init__(self, gains=(0.25, 0.75), fail_above: int = 0) -> None:
        super().__init__([f"t{j}" for j in range(len(gains))], SR, 2)
        self.gains = torch.nn.Parameter(torch.tensor(gains), requires_grad=False)
        self.fail_above = fail_above
        self.calls = []

    def hparams(self) -> Dict[str, Any]:
        return {}

    def separate(self, mix, *, wiener_iterations=0):
        self.calls.append(mix.shape[-1])
        if self.fail_above and mix.shape[-1] > self.fail_above:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.gains[None, :, None, None] * mix[:, None]

    def loss(self, mix, stems):
        raise NotImplementedError


def _mix(seconds: float) -> np.ndarray:
    x = stem("bearlin_roads", "vocals") + stem("bearlin_roads", "drums")
    return np.ascontiguousarray(x[:, :int(seconds * SR)])


@pytest.mark.parametrize("chunk_s,overlap_s", [(1.0, 0.25), (2.5, 1.0), (0.7, 0.0), (60, 1.0)])
def test_overlap_add_is_seamless(chunk_s, overlap_s):
    mix = _mix(6.3)
    res = separate_array(FixedGains(), mix, device="cpu", chunk_s=chunk_s, overlap_s=overlap_s)
    assert res.stems.shape == (2, 2, mix.shape[1])
    np.testing.assert_allclose(res.stems[0], 0.25 * mix, atol=1e-6)
    np.testing.assert_allclose(res.stems[1], 0.75 * mix, atol=1e-6)
    assert res.retries == 0


def test_stems_that_cannot_fit_in_memory_are_refused_before_the_network_runs(monkeypatch):
    """Full-length stems more than the free memory holds stop the run at once, with
    what to change, instead of the system killing the process later."""
    from demixstudio.errors import InsufficientMemoryError
    from demixstudio.jobs import memory

    mix = _mix(2.0)
    model = FixedGains()
    monkeypatch.setattr(memory, "available_bytes", lambda: mix.nbytes)  # < 2 stems
    with pytest.raises(InsufficientMemoryError, match="shorter stretch"):
        separate_array(model, mix, device="cpu")
    assert model.calls == []
    monkeypatch.setattr(memory, "available_bytes", lambda: 100 * mix.nbytes)
    assert separate_array(model, mix, device="cpu").stems.shape == (2, 2, mix.shape[1])


def test_memory_budget_forces_smaller_chunks_same_output():
    mix = _mix(7.0)
    model = build_model("waveunet", {"targets": ("vocals", "drums"), "sample_rate": SR,
                                     "layers": 4, "growth": 6}).eval()
    free = separate_array(model, mix, device="cpu", chunk_s=8.0, overlap_s=0.5)
    tight = separate_array(model, mix, device="cpu", chunk_s=8.0, overlap_s=0.5,
                           memory_budget_mb=4.0)
    assert free.retries == 0
    assert tight.retries >= 2 and tight.chunk_s <= 2.0, tight.log
    assert tight.stems.shape == free.stems.shape == (2, 2, mix.shape[1])
    # Chunking changes only what each network edge sees, which the context hides.
    err = np.sum((tight.stems - free.stems) ** 2) / np.sum(free.stems ** 2)
    assert err < 1e-3, err


class Scratch(FixedGains):
    """FixedGains that also holds ``per_sample`` float32 values per input sample
    and a fixed 1 MiB buffer alive at once (then frees them)."""

    def __init__(self, per_sample: int = 16) -> None:
        super().__init__()
        self.per_sample = per_sample

    def separate(self, mix, *, wiener_iterations=0):
        held = torch.ones(mix.shape[0], self.per_sample, mix.shape[-1])
        fixed = torch.ones(1 << 18)
        out = super().separate(mix) * (held.mean() * fixed.mean())
        del held, fixed
        return out


def test_working_memory_is_the_peak_of_what_a_pass_holds_at_once():
    """The fixed part and the part per sample of a pass's live tensors, measured on
    two probes: here 64 bytes per sample and 1 MiB (plus the small outputs)."""
    from demixstudio.separation.dnn.inference import working_memory

    fixed, per_sample = working_memory(Scratch(16), 1, torch.device("cpu"))
    # The scratch (64 B), the gained copy (16 B: 2 targets × 2 channels × 4 B).
    assert 64 <= per_sample <= 64 + 3 * 16, per_sample
    assert (1 << 20) <= fixed <= (1 << 20) + 4096, fixed


def test_on_the_cpu_long_chunks_are_kept_under_the_working_memory_cap(monkeypatch):
    """Without a budget, on the CPU, a chunk predicted to need more than
    CPU_WORKING_MB is shortened before it runs (the system would swap or kill the
    process rather than raise); the output is the same."""
    from demixstudio.separation.dnn import inference

    mix = _mix(7.0)
    plain = separate_array(FixedGains(), mix, device="cpu", chunk_s=6.0, overlap_s=0.5)
    assert plain.retries == 0
    # A 6 s chunk at 16 kHz holds 6 × 16000 × (64 + 16) B = 7.7 MB and 1 MiB at once.
    monkeypatch.setattr(inference, "CPU_WORKING_MB", 8.0)
    res = separate_array(Scratch(16), mix, device="cpu", chunk_s=6.0, overlap_s=0.5)
    assert res.retries >= 1 and res.chunk_s <= 3.0, res.log
    np.testing.assert_allclose(res.stems, plain.stems, atol=1e-6)
    # Short chunks are not measured at all (the probe would cost more than it saves).
    monkeypatch.setattr(inference, "CPU_PROBE_ABOVE_S", 10.0)
    model = Scratch(16)
    res = separate_array(model, mix, device="cpu", chunk_s=6.0, overlap_s=0.5)
    assert res.retries == 0 and len(model.calls) == 2
    # A model larger than the cap at the shortest chunk still runs.
    monkeypatch.setattr(inference, "CPU_PROBE_ABOVE_S", 1.0)
    monkeypatch.setattr(inference, "CPU_WORKING_MB", 0.5)
    res = separate_array(Scratch(16), mix, device="cpu", chunk_s=2.0, overlap_s=0.1)
    assert "running it anyway" in " ".join(res.log)
    np.testing.assert_allclose(res.stems, plain.stems, atol=1e-6)


def test_a_model_is_measured_once_per_batch_and_device():
    """A batch of files with one model probes it for the first file only: two
    probe passes, then only the chunks' passes."""
    mix = _mix(3.0)
    model = Scratch(16)
    first = separate_array(model, mix, device="cpu", chunk_s=2.0, overlap_s=0.1,
                           memory_budget_mb=100.0)
    passes = len(model.calls)
    chunks = passes - 2
    assert chunks >= 2, passes
    again = separate_array(model, mix, device="cpu", chunk_s=2.0, overlap_s=0.1,
                           memory_budget_mb=100.0)
    assert len(model.calls) == passes + chunks
    np.testing.assert_array_equal(again.stems, first.stems)


def test_real_out_of_memory_is_retried_with_smaller_chunks():
    mix = _mix(5.0)
    model = FixedGains(fail_above=int(1.5 * SR))
    res = separate_array(model, mix, device="cpu", chunk_s=4.0, overlap_s=0.2)
    assert res.retries == 2 and abs(res.chunk_s - 1.0) < 1e-3
    assert res.stems.shape == (2, 2, mix.shape[1])
    np.testing.assert_allclose(res.stems[1], 0.75 * mix, atol=1e-6)
    with pytest.raises(DemixError, match="out of memory"):
        separate_array(FixedGains(fail_above=10), mix, device="cpu", chunk_s=4.0)


def test_channel_layouts_and_resampling():
    mono = _mix(2.0)[:1]
    res = separate(FixedGains(), mono, 22050, device="cpu", chunk_s=1.0)
    assert res.stems.shape == (2, 1, mono.shape[1])
    six = np.repeat(_mix(1.0), 3, axis=0)
    res = separate_array(FixedGains(), six, device="cpu")
    np.testing.assert_allclose(res.stems[0], 0.25 * six, atol=1e-6)


def test_device_choice():
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type in ("cuda", "mps", "cpu")
    with pytest.raises(ParameterError):
        pick_device("tpu")


def test_dnn_method_layers_balance_in_a_session(tmp_path, monkeypatch):
    monkeypatch.setenv(store.ENV_VAR, str(tmp_path / "store"))
    method = get_method("dnn")
    with pytest.raises(ParameterError, match="empty"):
        method.separate(_mix(1.0), SR, make_params(method.Params), None, NullContext())
    model = build_model("mmdensenet", {"targets": ("vocals", "drums"), "sample_rate": SR,
                                       "n_fft": 256})
    store.save_model(model, tmp_path / "mmd")
    store.import_model(tmp_path / "mmd")
    mix = _mix(3.0)
    session = Session(mix, SR)
    reports = []
    ctx = JobContext(on_progress=reports.append)
    params = make_params(method.Params, strings={"chunk_s": "1.5", "device": "cpu"})
    layers = session.run_method("dnn", params, ctx=ctx)
    assert [x.name for x in layers] == ["vocals", "drums"]
    assert session.balance_error() < 1e-5
    assert reports and reports[-1].fraction == pytest.approx(1.0)
    assert layers[0].provenance.params["model"] == "mmd"


def test_wiener_postfilter_outputs_sum_to_the_mixture():
    torch.manual_seed(0)
    model = build_model("umx", {"targets": ("vocals", "drums"), "sample_rate": SR,
                                "n_fft": 512, "hop": 128, "hidden_size": 16,
                                "nb_layers": 1}).eval()
    mix = _mix(2.0)
    plain = separate_array(model, mix, device="cpu", chunk_s=60).stems
    mwf = separate_array(model, mix, device="cpu", chunk_s=60, wiener_iterations=1).stems
    assert mwf.shape == plain.shape
    assert np.abs(mwf - plain).max() > 1e-4  # the filter did something
    # Wiener filters of all sources partition the mixture (up to its STFT round trip).
    np.testing.assert_allclose(mwf.sum(0), mix, atol=1e-4)


def test_out_of_memory_advice_fits_the_cause():
    """A memory_mb budget too small is named as the cause; device=cpu is suggested only off the CPU."""
    mix = _mix(2.0)
    model = build_model("waveunet", {"targets": ("vocals",), "sample_rate": SR,
                                     "layers": 3, "growth": 4}).eval()
    with pytest.raises(DemixError, match="memory_mb=1 is too small") as info:
        separate_array(model, mix, device="cpu", chunk_s=1.0, memory_budget_mb=1)
    assert "device=cpu" not in str(info.value)
    with pytest.raises(DemixError, match="out of memory") as info:
        separate_array(FixedGains(fail_above=10), mix, device="cpu", chunk_s=1.0)
    assert "device=cpu" not in str(info.value) and "smaller model" in str(info.value)
