"""Benchmark: DemixStudio's blind methods against scikit-learn's FastICA.

Real recordings from ``../shared/audio`` beside the repository (see its
SOURCES.md) are scaled to unit RMS and mixed instantaneously into two
channels with seeded random mixing matrices of unit-norm columns. On each
mixture, in one run:

- ``ica`` with FastICA (its default exp nonlinearity, and tanh, the same
  contrast as scikit-learn's default logcosh), ``ica`` with JADE, and
  ``decorrelation``;
- ``sklearn.decomposition.FastICA`` (its defaults: logcosh, unit-variance
  whitening), its sources projected back through its ``mixing_`` so that it
  too is scored on source images.

Each is scored with BSS Eval v4 SDR (``demixstudio.metrics.bss_eval``, 1 s
frames, median over frames, then median over sources) of the estimated
images against the true images ``A[:, k] s_k``, and with the plain image
SNR ``10 log10(‖img‖² / ‖img − est‖²)``. Times are the best of ``--repeat``
runs of the whole call (ours: ``separate``, images included; scikit-learn:
``fit_transform`` plus the projection back); the speed ratio is scikit-learn's
time over ours.

Usage::

    python benchmarks/bench_blind.py [--repeat 3] [--no-bsseval]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import warnings
from math import gcd
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _timing import best_time  # noqa: E402
from demixstudio.jobs.context import NullContext  # noqa: E402
from demixstudio.separation import Hints, get_method, make_params  # noqa: E402

AUDIO = (REPO / ".." / "shared" / "audio").resolve()

# (label, file 1, file 2, common rate): pairs across rates are resampled to the lower one.
CASES = [
    ("speech+speech SiSEC", "speech_sisec_dev1/dev1_female4_src_1.wav",
     "speech_sisec_dev1/dev1_male4_src_2.wav", 16000),
    ("speech+speech Libri", "speech_librispeech/198-209-0000.wav",
     "speech_librispeech/3436-172162-0000.wav", 16000),
    ("speech+music", "speech_librispeech/5703-47212-0000.wav",
     "solo_instruments/cello-phrase.wav", 16000),
    ("music+music sax/piano", "solo_instruments/sax-phrase.wav",
     "solo_instruments/piano.wav", 44100),
    ("music+music sax/cello", "solo_instruments/sax-phrase.wav",
     "solo_instruments/cello-phrase.wav", 44100),
    ("voice+music", "solo_voice/singing-female.wav", "solo_instruments/trumpet.wav", 44100),
]

OURS = [("ica-fastica(exp)", "ica", {"algorithm": "fastica"}),
        ("ica-fastica(tanh)", "ica", {"algorithm": "fastica", "nonlinearity": "tanh"}),
        ("ica-jade", "ica", {"algorithm": "jade"}),
        ("decorrelation", "decorrelation", {})]


def load(rel: str, sr: int) -> np.ndarray:
    """A mono float64 recording at ``sr`` Hz."""
    import soundfile as sf
    from scipy.signal import resample_poly

    x, rate = sf.read(str(AUDIO / rel), dtype="float64", always_2d=True)
    x = x.mean(axis=1)
    if rate != sr:
        g = gcd(rate, sr)
        x = resample_poly(x, sr // g, rate // g)
    return x


def make_case(f1: str, f2: str, sr: int, seed: int):
    """Mixture float32 (2, samples) and true images (2 sources, 2 channels, samples)."""
    s = [load(f1, sr), load(f2, sr)]
    n = min(len(v) for v in s)
    s = np.stack([v[:n] for v in s])
    s /= np.sqrt(np.mean(s ** 2, axis=1, keepdims=True))
    a = np.random.default_rng(seed).standard_normal((2, 2))
    a /= np.linalg.norm(a, axis=0)
    images = a.T[:, :, None] * s[:, None, :]
    return images.sum(axis=0).astype(np.float32), images


def image_snr(images: np.ndarray, est: np.ndarray) -> np.ndarray:
    """Per-source image SNR (dB) under the best order."""
    k = images.shape[0]
    snr = np.array([[10 * np.log10(np.sum(images[i] ** 2) / np.sum((images[i] - est[j]) ** 2))
                     for j in range(k)] for i in range(k)])
    best = max(itertools.permutations(range(k)), key=lambda p: snr[np.arange(k), list(p)].sum())
    return snr[np.arange(k), list(best)]


def run_ours(method: str, values: dict, mix: np.ndarray, sr: int) -> np.ndarray:
    m = get_method(method)
    params = make_params(m.Params, values)
    props = m.separate(mix, sr, params, Hints(), NullContext())
    return np.stack([p.waveform for p in props]).astype(np.float64)


def run_sklearn(mix: np.ndarray) -> np.ndarray:
    from sklearn.decomposition import FastICA

    ica = FastICA(n_components=mix.shape[0], whiten="unit-variance", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its convergence warning would hide the table
        s = ica.fit_transform(mix.T.astype(np.float64))
    # Project back: image k = mixing_[:, k] s_k, as for ours.
    return np.stack([np.outer(ica.mixing_[:, k], s[:, k]) for k in range(s.shape[1])])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="timing runs per method (best kept)")
    ap.add_argument("--no-bsseval", action="store_true", help="image SNR only (faster)")
    args = ap.parse_args(argv)

    bss_eval = None
    if not args.no_bsseval:
        try:
            from demixstudio.metrics import bss_eval
        except ImportError:
            print("demixstudio.metrics.bss_eval not available: image SNR only")

    names = [n for n, _, _ in OURS] + ["sklearn"]
    sdr = {n: [] for n in names}
    ratios = {n: [] for n, _, _ in OURS}
    head = "SDR (dB) median over sources" if bss_eval else "image SNR (dB), median over sources"
    print(f"{head}; [image SNR]; time (s); speed ratio = sklearn time / ours")
    print(f"{'case':24s} {'samples':>9s} " + " ".join(f"{n:>26s}" for n in names))
    for i, (label, f1, f2, sr) in enumerate(CASES):
        mix, images = make_case(f1, f2, sr, seed=1000 + i)
        results = {}
        for name, method, values in OURS:
            results[name] = best_time(lambda: run_ours(method, values, mix, sr), args.repeat)
        results["sklearn"] = best_time(lambda: run_sklearn(mix), args.repeat)
        cells = []
        for name in names:
            t, est = results[name]
            snr = float(np.median(image_snr(images, est)))
            score = snr
            if bss_eval is not None:
                score = float(np.median(bss_eval(images, est, sr, device="cpu").sdr))
            sdr[name].append(score)
            cell = f"{score:5.1f} [{snr:5.1f}] {t:6.3f}s"
            if name in ratios:
                ratios[name].append(results["sklearn"][0] / t)
                cell += f" x{ratios[name][-1]:4.1f}"
            cells.append(f"{cell:>26s}")
        print(f"{label:24s} {mix.shape[1]:9d} " + " ".join(cells), flush=True)
    cells = []
    for name in names:
        cell = f"{np.median(sdr[name]):5.1f}"
        if name in ratios:
            cell += f" {'':16s} x{np.median(ratios[name]):4.1f}"
        cells.append(f"{cell:26s}" if name in ratios else f"{cell:>5s}".ljust(26))
    print(f"{'median':24s} {'':9s} " + " ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
