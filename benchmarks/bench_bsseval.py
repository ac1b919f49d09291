"""BSS Eval v4: demixstudio.metrics.bss_eval against museval, same input, same run.

Usage (from the repository root)::

    python benchmarks/bench_bsseval.py [--seconds 14] [--stems vocals,drums,bass,piano]
                                       [--repeat 3] [--device auto] [--no-permutation]

The input is real: stems of Bearlin "Roads" (stereo, 44.1 kHz) from the shared
evaluation corpus. Estimates are the stems with leakage of the others, a short
filter and white noise, handed over in a shuffled order so both tools have to
solve the permutation (in order with ``--no-permutation``). Prints per-source
figures from both, the largest absolute difference in dB (per frame and per
source), and the speed ratio (museval time / our time).

museval is loaded from its ``metrics.py`` alone: its package ``__init__``
imports musdb/stempeg, which need ffmpeg.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy.signal
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
try:
    from demixstudio.metrics import bss_eval
except ImportError:  # run from a checkout that is not installed
    sys.path.insert(0, str(ROOT))
    from demixstudio.metrics import bss_eval

# After demixstudio, which sets OpenMP's wait policy before torch starts OpenMP
# (demixstudio/omp.py), so the product's setting is what is timed.
import torch  # noqa: E402

AUDIO = (ROOT / ".." / "shared" / "audio" / "bearlin_roads").resolve()
METRICS = ("sdr", "sir", "sar", "isr")


def load_museval_metrics():
    spec = importlib.util.find_spec("museval")
    if spec is None or spec.origin is None:
        sys.exit("museval is not installed: pip install museval")
    mod_spec = importlib.util.spec_from_file_location(
        "_museval_metrics", Path(spec.origin).parent / "metrics.py"
    )
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


def make_input(stems: list[str], seconds: float, *, shuffle: bool, seed: int = 0):
    """References (S, 2, N), degraded estimates (shuffled if asked), their order, sr."""
    refs, sr = [], None
    for name in stems:
        audio, sr = sf.read(AUDIO / f"{name}.wav", dtype="float64", always_2d=True)
        refs.append(audio[: int(seconds * sr)].T)
    refs = np.stack(refs)
    rng = np.random.default_rng(seed)
    nb = len(stems)
    mixing = np.eye(nb) + 0.15 * rng.random((nb, nb)) * (1 - np.eye(nb))
    ests = np.einsum("ij,jcn->icn", mixing, refs)
    ests = scipy.signal.lfilter([1.0, 0.3, -0.1, 0.05], [1.0], ests, axis=-1)
    ests += 0.01 * rng.standard_normal(ests.shape)
    # estimate i degrades reference order[i]
    order = np.roll(np.arange(nb), 1) if shuffle else np.arange(nb)
    return refs, ests[order], order, sr


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=14.0)
    parser.add_argument("--stems", default="vocals,drums,bass,piano")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of ours (median reported)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-permutation", action="store_true")
    args = parser.parse_args(argv)

    stems = args.stems.split(",")
    permute = not args.no_permutation
    refs, ests, order, sr = make_input(stems, args.seconds, shuffle=permute)
    museval_metrics = load_museval_metrics()
    nb_sources, nb_channels, nb_samples = refs.shape
    print(
        f"input: {nb_sources} sources x {nb_channels} ch x {nb_samples} samples "
        f"({nb_samples / sr:.1f} s at {sr} Hz), window = hop = 1 s, 512 taps, "
        f"permutation={'solved' if permute else 'fixed'}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device={args.device}"
    )

    # ours: first call in the process (includes torch's one-time set-up), then repeats
    t0 = time.perf_counter()
    ours = bss_eval(refs, ests, sr, compute_permutation=permute, device=args.device)
    t_first = time.perf_counter() - t0
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        ours = bss_eval(refs, ests, sr, compute_permutation=permute, device=args.device)
        times.append(time.perf_counter() - t0)
    t_ours = statistics.median(times) if times else t_first

    t0 = time.perf_counter()
    sdr, isr, sir, sar, perm = museval_metrics.bss_eval(
        refs.transpose(0, 2, 1),
        ests.transpose(0, 2, 1),
        window=sr,
        hop=sr,
        compute_permutation=permute,
        filters_len=512,
        framewise_filters=False,
        bsseval_sources_version=False,
    )
    t_museval = time.perf_counter() - t0
    theirs = {"sdr": sdr, "isr": isr, "sir": sir, "sar": sar}

    print()
    header = f"{'source':<8} {'tool':<8}" + "".join(f"{m.upper():>9}" for m in METRICS) + "   estimate"
    print(header)
    print("-" * len(header))
    for j, name in enumerate(stems):
        row_m = [np.nanmedian(theirs[m][j]) for m in METRICS]
        row_o = [getattr(ours, m)[j] for m in METRICS]
        print(f"{name:<8} {'museval':<8}" + "".join(f"{v:9.3f}" for v in row_m) + f"   {perm[j, 0]}")
        print(f"{'':<8} {'ours':<8}" + "".join(f"{v:9.3f}" for v in row_o) + f"   {ours.permutation[j]}")

    frame_diff = max(
        float(np.nanmax(np.abs(getattr(ours, f"frames_{m}") - theirs[m]))) for m in METRICS
    )
    median_diff = max(
        float(np.nanmax(np.abs(getattr(ours, m) - np.nanmedian(theirs[m], axis=1)))) for m in METRICS
    )
    same_nan = all(
        np.array_equal(np.isnan(getattr(ours, f"frames_{m}")), np.isnan(theirs[m])) for m in METRICS
    )
    print()
    print(f"permutation: museval {perm[:, 0].tolist()}, ours {ours.permutation.tolist()}, "
          f"true {np.argsort(order).tolist()}")
    print(f"max |ours - museval|: per frame {frame_diff:.2e} dB, per source (median) {median_diff:.2e} dB"
          f"{'' if same_nan else '  (NaN frames differ!)'}")
    print(f"time: museval {t_museval:.2f} s; ours {t_ours:.2f} s (median of {len(times)}), "
          f"first call {t_first:.2f} s")
    print(f"speed ratio (museval / ours): {t_museval / t_ours:.1f}x "
          f"({t_museval / t_first:.1f}x against our first call)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
