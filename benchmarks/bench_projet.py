"""Benchmark: DemixStudio's ``projet`` against nussl's PROJET, with an ideal mask for scale.

The PROJET paper's protocol, as in ``tests/test_projet.py``: four real
recordings (cello, saxophone, singing voice, speech from ``../shared/audio``)
panned with a constant-power law at 10°, 20° and 30° spacing around the
centre, and at 20° with a per-source inter-channel delay (2, −1, 1.5, −2.5
samples) — mixtures from ``tests/spatial_mixtures.py``.

In one run, on each mixture:

- ours: ``projet`` with its defaults, in ``pan`` mode (and ``pan+delay`` mode
  on the delayed mixture);
- nussl's ``spatial.Projet`` (the open-source PROJET a user would find), in its
  own interpreter (``benchmarks/_nussl_peer.py``, default /tmp/nussl-venv), with
  its defaults (50 iterations, pan and delay sets up to 20 samples) and in a
  pan-only configuration; said plainly when nussl is not installed;
- the ideal ratio mask (|S_j|² / Σ_k |S_k|² per channel, from the true images,
  at our STFT) for scale.

Scores: BSS Eval v4 SDR of the stereo images (``demixstudio.metrics.bss_eval``,
1 s frames), median over sources. Times: wall-clock of the separation call
(nussl: its own timing, imports excluded).

Usage::

    python benchmarks/bench_projet.py [--seconds 6] [--sr 16000]
    python benchmarks/bench_projet.py --long MINUTES [--fit-seconds S]
        # time and peak RSS of the method on MINUTES of 44.1 kHz stereo (4 sources)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

import spatial_mixtures as sm  # noqa: E402
from _nussl_peer import nussl_available, run_nussl  # noqa: E402

from demixstudio.audio.stft import StftConfig, istft, stft  # noqa: E402
from demixstudio.jobs.context import NullContext  # noqa: E402
from demixstudio.metrics import bss_eval  # noqa: E402
from demixstudio.separation import Hints, get_method, make_params  # noqa: E402
from demixstudio.separation.projet import default_n_fft  # noqa: E402

DELAYS = (2.0, -1.0, 1.5, -2.5)


def ideal_ratio_mask(mix: np.ndarray, imgs: np.ndarray, cfg: StftConfig) -> np.ndarray:
    """Images (J, C, N) from the oracle power ratio mask applied to each channel."""
    S = np.stack([stft(im, cfg) for im in imgs])  # (J, C, F, T)
    power = np.abs(S) ** 2
    mask = power / np.maximum(power.sum(0, keepdims=True), 1e-20)
    X = stft(mix, cfg)
    return np.stack([istft(mask[j] * X, mix.shape[1], cfg) for j in range(len(imgs))])


def median_sdr(imgs: np.ndarray, est: np.ndarray, sr: int) -> float:
    return float(np.median(bss_eval(imgs, est, sr).sdr))


def long_run(minutes: float, fit_seconds) -> None:
    """Time and peak RSS of the method on a long stereo file (alone in its process)."""
    import resource

    sr = 44100
    src = sm.load_sources(sm.MUSIC_SET, sr, 8.0)
    angles = np.radians([15.0, 35.0, 55.0, 75.0])
    mix = sum(np.stack([np.cos(a) * x, np.sin(a) * x]) for a, x in zip(angles, src))
    n = int(minutes * 60 * sr)
    mix = np.tile(mix, (1, -(-n // mix.shape[1])))[:, :n].astype(np.float32)
    m = get_method("projet")
    values = {"sources": 4}
    if fit_seconds is not None:
        values["fit_seconds"] = fit_seconds
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    m.separate(mix, sr, make_params(m.Params, values), Hints(), NullContext())
    dt = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"projet {values}, {minutes:g} min stereo at 44.1 kHz: {dt:.0f} s, peak RSS "
          f"{peak:.0f} MB (before: {base:.0f} MB; input {mix.nbytes / 2**20:.0f} MB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--sr", type=int, default=16000)
    ap.add_argument("--long", type=float, default=0.0, metavar="MINUTES",
                    help="instead: time and peak RSS of projet (defaults, 4 sources) on MINUTES "
                         "of the music sources panned at 15/35/55/75°, tiled, at 44.1 kHz")
    ap.add_argument("--fit-seconds", type=float, default=None,
                    help="with --long: projet's fit_seconds (default: the method's)")
    a = ap.parse_args()
    if a.long:
        long_run(a.long, a.fit_seconds)
        return
    sr = a.sr
    src = sm.load_sources(sm.MUSIC_SET, sr, a.seconds)
    n_fft = default_n_fft(sr)
    cfg = StftConfig(n_fft=n_fft, hop=n_fft // 4)
    have, line = nussl_available()
    print(line)
    print(f"{len(src)} sources ({', '.join(Path(p).stem for p in sm.MUSIC_SET)}), "
          f"{a.seconds:g} s at {sr} Hz, n_fft {n_fft}\n")

    m = get_method("projet")
    cases = [(f"pan {sp:g}°", sp, None) for sp in (10.0, 20.0, 30.0)]
    cases.append(("pan+delay 20°", 20.0, DELAYS))
    rows = []
    for label, sp, delays in cases:
        mix, imgs = sm.pan_mixture(src, sp, delays)
        res = {}
        modes = ["pan"] if delays is None else ["pan", "pan+delay"]
        for mode in modes:
            params = make_params(m.Params, {"sources": len(src), "mode": mode})
            t0 = time.perf_counter()
            props = m.separate(mix, sr, params, Hints(), NullContext())
            t = time.perf_counter() - t0
            res[f"ours {mode}"] = (median_sdr(imgs, np.stack([p.waveform for p in props]), sr), t)
        if have:
            for name, kw in (("nussl default", {}),
                             ("nussl pan-only", {"maximum_delay_in_samples": 0,
                                                 "location_set_delay": 1,
                                                 "projection_set_delay": 1})):
                out = run_nussl("Projet", mix, sr, cfg.n_fft, cfg.hop,
                                num_sources=len(src), **kw)
                if out is not None:
                    est, t = out
                    res[name] = (median_sdr(imgs, est, sr), t)
        res["ideal ratio mask"] = (median_sdr(imgs, ideal_ratio_mask(mix, imgs, cfg), sr), 0.0)
        rows.append((label, res))
        print(label)
        for name, (sdr, t) in res.items():
            tt = f"{t:8.2f} s" if t else ""
            print(f"  {name:18s} median SDR {sdr:6.2f} dB {tt}")

    print("\nSummary")
    for label, res in rows:
        ours_key = "ours pan+delay" if "ours pan+delay" in res else "ours pan"
        sdr, t = res[ours_key]
        parts = [f"{label:14s} {ours_key}: {sdr:5.2f} dB"]
        for peer in ("nussl default", "nussl pan-only"):
            if peer in res:
                ps, pt = res[peer]
                parts.append(f"vs {peer}: {sdr - ps:+6.2f} dB, speed ratio {pt / t:5.2f}×")
        parts.append(f"(IRM {res['ideal ratio mask'][0]:.2f} dB)")
        print("  " + "  ".join(parts))
    if not have:
        print("  nussl is not installed here: no peer comparison (see benchmarks/_nussl_peer.py)")


if __name__ == "__main__":
    main()
