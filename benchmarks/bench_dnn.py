"""Benchmark: DNN inference on a 10-minute stereo file — real-time factor and peak memory.

The mixture is the sum of the bearlin_roads stems (``../shared/audio``, 14 s,
44.1 kHz stereo) repeated to ``--minutes`` minutes. The model is an
Open-Unmix-sized ``umx`` (4 targets, hidden 512, 3 BLSTM layers, n_fft 4096;
untrained weights: speed and memory do not depend on the values) or any
``--arch``, or a stored model (``--model NAME``).

Reported, in one run:

- chunked inference (``inference.separate_array``) on the whole file:
  seconds, real-time factor (processing time / audio duration), and peak
  resident memory above what the process held before the call (Linux
  VmHWM, reset just before), next to the size of the input audio;
- the same with a small ``memory_budget_mb`` (the out-of-memory retry path):
  how many retries, the final chunk length, the output length;
- the peer a script writer would otherwise use — the network applied to the
  whole signal at once, as in Open-Unmix's ``predict.separate`` without
  chunking — on a ``--peer-seconds`` excerpt (it holds every activation of
  the whole signal at once, so it is not run on the full file): speed ratio,
  peak memory, and the SDR of our chunked output against its output (how
  far the chunking changes the result).

Usage::

    python benchmarks/bench_dnn.py [--minutes 10] [--arch umx] [--chunk-s 20]
        [--budget-mb 64] [--peer-seconds 60] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# Before torch: OpenMP reads its wait policy once, as torch starts it, and the
# product's (demixstudio/omp.py) is what is timed.
from demixstudio.omp import prefer_passive_waits

prefer_passive_waits()

import numpy as np
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from demixstudio.errors import DemixError  # noqa: E402
from demixstudio.jobs.context import JobContext  # noqa: E402
from demixstudio.separation.dnn import store  # noqa: E402
from demixstudio.separation.dnn.inference import pick_device, separate_array  # noqa: E402
from demixstudio.separation.dnn.models import build_model  # noqa: E402
from demixstudio.separation.dnn.train import sdr  # noqa: E402

AUDIO = (REPO / ".." / "shared" / "audio").resolve()
STEMS = ("vocals", "drums", "bass", "piano", "other")


def _status(key: str) -> float:
    """A /proc/self/status memory figure in MB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


def measured(fn):
    """(result, seconds, peak MB above the RSS at the start).

    On CUDA it also prints the peak of the GPU memory torch allocated during ``fn``.
    """
    _reset_peak()
    before = _status("VmRSS")
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        gpu_before = torch.cuda.memory_allocated()
    t0 = time.perf_counter()
    out = fn()
    if cuda:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    if cuda:
        print(f"  (GPU memory: peak {(torch.cuda.max_memory_allocated() - gpu_before) / 2**20:.0f} "
              f"MB above the start)")
    return out, dt, _status("VmHWM") - before


def mixture(minutes: float) -> tuple[np.ndarray, int]:
    song = None
    sr = 44100
    for s in STEMS:
        x, sr = sf.read(str(AUDIO / "bearlin_roads" / f"{s}.wav"), dtype="float32")
        song = x.T.copy() if song is None else song + x.T
    n = int(minutes * 60 * sr)
    out = np.empty((2, n), dtype=np.float32)
    for start in range(0, n, song.shape[1]):
        stop = min(n, start + song.shape[1])
        out[:, start:stop] = song[:, :stop - start]
    return out, sr


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--arch", default="umx", choices=("umx", "mmdensenet", "waveunet"))
    ap.add_argument("--model", help="a stored model instead of an untrained --arch")
    ap.add_argument("--chunk-s", type=float, default=20.0)
    ap.add_argument("--budget-mb", type=float, default=64.0)
    ap.add_argument("--budget-minutes", type=float, default=1.0,
                    help="length of the excerpt for the small-budget run")
    ap.add_argument("--peer-seconds", type=float, default=60.0)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    torch.manual_seed(0)
    mix, sr = mixture(args.minutes)
    if args.model:
        model = store.load_model(args.model)
    else:
        model = build_model(args.arch, {"sample_rate": sr}).eval()
    dev = pick_device(args.device)
    duration = mix.shape[1] / sr
    in_mb = mix.nbytes / 2 ** 20
    print(f"model {model.arch} {model.targets}, {sum(p.numel() for p in model.parameters())/1e6:.1f} M "
          f"parameters; device {dev.type}, {torch.get_num_threads()} threads")
    print(f"input: {duration / 60:.1f} min stereo at {sr} Hz = {in_mb:.0f} MB float32; "
          f"output {len(model.targets)} stems = {len(model.targets) * in_mb:.0f} MB")

    last = [0.0]

    def report(p):
        if p.fraction - last[0] >= 0.1 or p.fraction >= 1.0:
            last[0] = p.fraction
            eta = f", ETA {p.eta_s:.0f} s" if p.eta_s is not None else ""
            print(f"  {p.fraction * 100:3.0f}% after {p.elapsed_s:.0f} s{eta}", flush=True)

    res, secs, peak = measured(lambda: separate_array(
        model, mix, device=dev.type, chunk_s=args.chunk_s, ctx=JobContext(on_progress=report)))
    assert res.stems.shape[2] == mix.shape[1]
    print(f"chunked ({args.chunk_s:g} s chunks): {secs:.1f} s, real-time factor "
          f"{secs / duration:.3f}; peak memory {peak:.0f} MB above the start "
          f"(input {in_mb:.0f} MB, output {res.stems.nbytes / 2 ** 20:.0f} MB; "
          f"aim: < {in_mb + 2048:.0f} MB)")
    del res

    part = mix[:, :int(args.budget_minutes * 60 * sr)]
    try:
        tight, secs_b, peak_b = measured(lambda: separate_array(
            model, part, device=dev.type, chunk_s=args.chunk_s, memory_budget_mb=args.budget_mb))
    except DemixError as exc:  # the budget is below this model's shortest chunk
        print(f"budget {args.budget_mb:g} MB: refused, as it should be: {exc}")
    else:
        print(f"budget {args.budget_mb:g} MB on {part.shape[1] / sr:.0f} s: {tight.retries} "
              f"retries, chunks of {tight.chunk_s:.2f} s, output length {tight.stems.shape[2]} "
              f"= input {part.shape[1]}: {tight.stems.shape[2] == part.shape[1]}; "
              f"{secs_b:.1f} s, peak {peak_b:.0f} MB")
        del tight

    ex = np.ascontiguousarray(mix[:, :int(args.peer_seconds * sr)])
    ours, t_ours, m_ours = measured(lambda: separate_array(
        model, ex, device=dev.type, chunk_s=args.chunk_s).stems)

    def whole():
        with torch.no_grad():
            return model.to(dev).separate(torch.from_numpy(ex)[None].to(dev))[0].cpu().numpy()

    peer, t_peer, m_peer = measured(whole)
    agree = np.median([sdr(peer[j], ours[j]) for j in range(peer.shape[0])])
    print(f"peer (whole signal at once) on {args.peer_seconds:g} s: {t_peer:.1f} s, peak "
          f"{m_peer:.0f} MB; ours {t_ours:.1f} s, peak {m_ours:.0f} MB; speed ratio "
          f"(peer/ours) {t_peer / t_ours:.2f}; SDR of ours against the peer's output "
          f"{agree:.1f} dB (median over stems)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
