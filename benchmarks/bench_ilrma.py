"""Benchmark: DemixStudio's ``ilrma`` against pyroomacoustics' ILRMA and AuxIVA.

Two-channel mixtures of two clean speech recordings (``../shared/audio``,
SiSEC 2008 dev1 speakers, see SOURCES.md) at 16 kHz, built by
``tests/spatial_mixtures.py``:

- instantaneous 2×2 mixtures (a fixed real mixing matrix),
- anechoic mixtures (per-channel attenuation plus fractional inter-channel
  delays of up to 3 samples).

Every contender gets the same STFT (the program's convention) and its
demixing matrices are turned into source images the same way (projection
back through W⁻¹, then the inverse STFT), so only the BSS core differs and
only the core is timed (best of ``--repeat``):

- ours: ``demixstudio.separation.ilrma.ilrma`` (torch, CPU),
- ``pyroomacoustics.bss.ilrma`` with the same iterations and NMF bases,
- ``pyroomacoustics.bss.ilrma`` with its defaults (20 iterations, 2 bases),
- ``pyroomacoustics.bss.auxiva`` (Laplace model) with the same iterations.

Scores: BSS Eval v4 SDR of the stereo images (``demixstudio.metrics.bss_eval``,
1 s frames). Printed per case: SDR per source, median, core time; then the
median SDR difference (ours − peer) and the speed ratio (peer time / ours).

Usage::

    python benchmarks/bench_ilrma.py [--seconds 6] [--iterations 100] [--repeat 2]
    python benchmarks/bench_ilrma.py --long MINUTES   # time and peak RSS of the method
                                                      # on MINUTES of 44.1 kHz stereo
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import spatial_mixtures as sm  # noqa: E402

from _timing import best_time  # noqa: E402
from demixstudio.audio.stft import StftConfig, istft, stft  # noqa: E402
from demixstudio.jobs.context import NullContext  # noqa: E402
from demixstudio.metrics import bss_eval  # noqa: E402
from demixstudio.separation.ilrma import ilrma, project_back  # noqa: E402

SR = 16000


def cases(seconds: float):
    """(label, mix (2, N), images (2, 2, N)) for each benchmark mixture."""
    s = sm.load_sources(sm.SPEECH_SET, SR, seconds)
    yield ("instantaneous f1+m2", *sm.instantaneous_mixture([s[0], s[1]], [[1.0, 0.6], [0.5, 1.0]]))
    yield ("instantaneous f3+m4", *sm.instantaneous_mixture([s[2], s[3]], [[0.9, 0.8], [0.3, 1.0]]))
    yield ("anechoic f1+m2", *sm.anechoic_mixture([s[0], s[1]], [[1.0, 0.7], [0.6, 1.0]], [1.5, -2.3]))
    yield ("anechoic f3+m4", *sm.anechoic_mixture([s[2], s[3]], [[1.0, 0.4], [0.8, 1.0]], [-3.0, 2.0]))


def images_from(Y: np.ndarray, W: np.ndarray, n: int, cfg: StftConfig) -> np.ndarray:
    """Stereo images (J, 2, n) from outputs Y (J, F, T) and demixing W (F, J, C)."""
    return np.stack([istft(project_back(Y, W, k), n, cfg) for k in range(Y.shape[0])])


def long_run(minutes: float) -> None:
    """Time and peak RSS of ``ilrma`` (the method, default parameters) on a long file."""
    import resource
    import time

    from demixstudio.separation import Hints, get_method

    sr = 44100
    s = sm.load_sources(("speech_librispeech/198-209-0000.wav",
                         "speech_librispeech/3436-172162-0000.wav"), sr, 12.0)
    mix, _ = sm.anechoic_mixture(s, [[1.0, 0.7], [0.6, 1.0]], [1.5, -2.3])
    n = int(minutes * 60 * sr)
    mix = np.tile(mix, (1, -(-n // mix.shape[1])))[:, :n].astype(np.float32)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    m = get_method("ilrma")
    t = time.perf_counter()
    props = m.separate(mix, sr, m.Params(), Hints(), NullContext())
    dt = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"ilrma, {minutes:g} min stereo at 44.1 kHz: {dt:.1f} s, peak RSS {peak:.0f} MB "
          f"(before: {base:.0f} MB; input {mix.nbytes / 2**20:.0f} MB, images "
          f"{sum(p.waveform.nbytes for p in props) / 2**20:.0f} MB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--components", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--long", type=float, default=0.0, metavar="MINUTES",
                    help="instead: the ilrma method (defaults: fitted on 120 s) on MINUTES of "
                         "an anechoic speech mixture at 44.1 kHz, tiled; time and peak RSS")
    a = ap.parse_args()
    if a.long:
        long_run(a.long)
        return

    import pyroomacoustics as pra

    cfg = StftConfig.for_rate(SR)
    it, k = a.iterations, a.components

    def ours(X):
        return ilrma(X, iterations=it, components=k, seed=0, ctx=NullContext())

    def pra_run(fn, **kw):
        def run(X):
            np.random.seed(0)
            Y, W = fn(X.transpose(2, 1, 0), proj_back=False, return_filters=True, **kw)
            return Y.transpose(2, 1, 0), W
        return run

    contenders = [
        ("ours ilrma", ours),
        (f"pra.ilrma same ({it} it, {k} bases)", pra_run(pra.bss.ilrma, n_iter=it, n_components=k)),
        ("pra.ilrma default (20 it, 2 bases)", pra_run(pra.bss.ilrma)),
        (f"pra.auxiva ({it} it)", pra_run(pra.bss.auxiva, n_iter=it)),
    ]
    results = {name: ([], []) for name, _ in contenders}
    for label, mix, imgs in cases(a.seconds):
        X = stft(mix, cfg)
        print(f"\n{label}  ({a.seconds:g} s, {SR} Hz, n_fft {cfg.n_fft})")
        for name, fn in contenders:
            t, (Y, W) = best_time(lambda: fn(X), a.repeat)
            est = images_from(np.asarray(Y), np.asarray(W), mix.shape[1], cfg)
            sdr = bss_eval(imgs, est, SR).sdr
            results[name][0].append(float(np.median(sdr)))
            results[name][1].append(t)
            print(f"  {name:38s} SDR {np.array2string(sdr, precision=1):16s} "
                  f"median {np.median(sdr):6.2f} dB  core {t:7.3f} s")

    ours_sdr, ours_t = map(np.array, results["ours ilrma"])
    print("\nSummary (per case, then median):")
    print(f"  ours: median SDR {np.median(ours_sdr):.2f} dB, min {ours_sdr.min():.2f} dB, "
          f"total core time {ours_t.sum():.2f} s")
    for name, (sdr, t) in results.items():
        if name == "ours ilrma":
            continue
        sdr, t = np.array(sdr), np.array(t)
        print(f"  vs {name:38s} SDR diff (ours − peer) median {np.median(ours_sdr - sdr):+6.2f} dB"
              f"  speed ratio (peer/ours) {t.sum() / ours_t.sum():5.2f}×")


if __name__ == "__main__":
    main()
