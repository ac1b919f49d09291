"""Benchmark: DemixStudio's ``hpss`` against ``librosa.decompose.hpss``.

Real song stems from ``../shared/audio`` (see its SOURCES.md): the tonal
stems (piano + bass, bass + guitars) are the harmonic truth, the drum stem
the percussive truth; their sum is the mixture, at 44.1 kHz, mono and stereo.
On each mixture, in one run, with the same STFT (the program's), the same
median lengths (0.2 s along time, 500 Hz along frequency, as odd frame/bin
counts) and the same soft masks (power 2, margin 1 and 2):

- ours: ``Hpss.separate`` — block-wise magnitude, pruned median networks,
  masks;
- librosa: ``stft`` (ours) then ``librosa.decompose.hpss(|X|, mask=True)``
  (``scipy.ndimage.median_filter``).

Both sets of masks are applied to the mixture with ``audio.stft.apply_mask``
and scored with the plain SNR ``10 log10(‖s‖² / ‖s − ŝ‖²)`` against the
truth. Times are the best of ``--repeat`` runs; the speed ratio is librosa's
time (STFT included) over ours.

Usage::

    python benchmarks/bench_hpss.py [--repeat 3] [--rate 44100]
"""

from __future__ import annotations

import argparse
import sys
from math import gcd
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _timing import best_time, snr  # noqa: E402
from demixstudio.audio.stft import StftConfig, apply_mask, stft  # noqa: E402
from demixstudio.jobs.context import NullContext  # noqa: E402
from demixstudio.separation import Hints, get_method, make_params  # noqa: E402
from demixstudio.separation.hpss import odd_length  # noqa: E402

AUDIO = (REPO / ".." / "shared" / "audio").resolve()

CASES = [
    ("bearlin piano+bass / drums", ("bearlin_roads/piano.wav", "bearlin_roads/bass.wav"),
     ("bearlin_roads/drums.wav",)),
    ("falcon69 bass+other / drums", ("easton_ellises_falcon69/bass.wav",
                                     "easton_ellises_falcon69/other.wav"),
     ("easton_ellises_falcon69/drums.wav",)),
]


def load(rel: str, sr: int, mono: bool) -> np.ndarray:
    import soundfile as sf
    from scipy.signal import resample_poly

    x, rate = sf.read(str(AUDIO / rel), dtype="float64", always_2d=True)
    x = x.T
    if mono:
        x = x.mean(axis=0, keepdims=True)
    if rate != sr:
        g = gcd(rate, sr)
        x = resample_poly(x, sr // g, rate // g, axis=1)
    return x


def main() -> int:
    import librosa

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rate", type=int, default=44100)
    args = ap.parse_args()
    sr = args.rate
    cfg = StftConfig.for_rate(sr)
    kt, kf = odd_length(0.2, cfg.hop / sr), odd_length(500.0, sr / cfg.n_fft)
    method = get_method("hpss")
    print(f"rate {sr} Hz, n_fft {cfg.n_fft}, hop {cfg.hop}; median lengths {kt} frames x {kf} bins")
    print(f"{'case':<36} {'margin':>6} {'ours H/P dB':>13} {'librosa H/P dB':>15} "
          f"{'dSDR':>6} {'ours s':>7} {'librosa s':>9} {'speed':>6}")
    ratios, dsdr = [], []
    for label, tonal, perc in CASES:
        for mono in (True, False):
            h = sum(load(f, sr, mono) for f in tonal)
            p = sum(load(f, sr, mono) for f in perc)
            mix = (h + p).astype(np.float32)
            for margin in (1.0, 2.0):
                params = make_params(method.Params, {"margin": margin})
                t_ours, props = best_time(
                    lambda: method.separate(mix, sr, params, Hints(), NullContext()), args.repeat)

                def peer():
                    mag = np.abs(stft(mix, cfg))
                    return librosa.decompose.hpss(mag, kernel_size=(kt, kf), mask=True,
                                                  margin=margin, power=2.0)

                t_lib, (mh, mp) = best_time(peer, args.repeat)
                ours = [snr(h, apply_mask(mix, x.mask, cfg)) for x in props[:2]]
                lib = [snr(h, apply_mask(mix, mh, cfg)), snr(p, apply_mask(mix, mp, cfg))]
                ours[1] = snr(p, apply_mask(mix, props[1].mask, cfg))
                d = np.mean(ours) - np.mean(lib)
                ratios.append(t_lib / t_ours)
                dsdr.append(d)
                name = f"{label} ({'mono' if mono else 'stereo'})"
                print(f"{name:<36} {margin:6.1f} {ours[0]:6.2f}/{ours[1]:6.2f} "
                      f"{lib[0]:7.2f}/{lib[1]:7.2f} {d:6.2f} {t_ours:7.3f} {t_lib:9.3f} "
                      f"{t_lib / t_ours:5.1f}x")
    print(f"median speed ratio (librosa / ours): {np.median(ratios):.1f}x; "
          f"median SDR difference (ours - librosa): {np.median(dsdr):+.3f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
