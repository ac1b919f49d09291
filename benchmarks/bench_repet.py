"""Benchmark: DemixStudio's ``repet`` against librosa's REPET-SIM recipe.

librosa has no REPET; what its users run is the "vocal separation" recipe of
its gallery: ``librosa.decompose.nn_filter`` (median of the nearest
neighbours by cosine similarity, at least 2 s away) on the magnitude
spectrogram, clipped to the mixture, then soft masks with margins (2 for the
background, 10 for the foreground, power 2) — REPET-SIM in all but name.

Cases, mono at 22.05 kHz, from ``../shared/audio`` (see its SOURCES.md):
real drum/bass and piano/drum excerpts looped several times under a speech
recording at the same RMS, and a real song (Bearlin "Roads": accompaniment
vs vocals). On each, in one run and on the same STFT (the program's):

- ours, ``mode=period`` (REPET) and ``mode=sim`` (REPET-SIM), all defaults;
- librosa's recipe (its foreground mask, as the gallery uses it, and also
  one minus its background mask, which sums with it to the mixture).

Scores: the plain SNR ``10 log10(‖v‖² / ‖v − v̂‖²)`` of the foreground
against the true voice. Times: best of ``--repeat``; the STFT magnitude is
inside both timings. Ratios: librosa's time over ours.

Usage::

    python benchmarks/bench_repet.py [--repeat 2] [--rate 22050]
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

AUDIO = (REPO / ".." / "shared" / "audio").resolve()


def load(rel: str, sr: int) -> np.ndarray:
    import soundfile as sf
    from scipy.signal import resample_poly

    x, rate = sf.read(str(AUDIO / rel), dtype="float64", always_2d=True)
    x = x.mean(axis=1)
    g = gcd(rate, sr)
    return resample_poly(x, sr // g, rate // g) if rate != sr else x


def loop_case(sr, stems, t0, period, repeats, voice):
    loop = sum(load(s, sr)[int(t0 * sr):int((t0 + period) * sr)] for s in stems)
    bg = np.tile(loop, repeats)
    fg = load(voice, sr)[:bg.size]
    bg = bg[:fg.size]
    return bg, fg * np.sqrt(np.mean(bg ** 2) / np.mean(fg ** 2))


def cases(sr):
    yield "falcon69 drums+bass loop / speech", loop_case(
        sr, ("easton_ellises_falcon69/drums.wav", "easton_ellises_falcon69/bass.wav"), 0.5, 1.7,
        6, "speech_librispeech/198-209-0000.wav")
    yield "bearlin piano+drums loop / speech", loop_case(
        sr, ("bearlin_roads/piano.wav", "bearlin_roads/drums.wav"), 2.0, 2.3, 5,
        "speech_librispeech/3436-172162-0000.wav")
    yield "bearlin drums loop / speech (SiSEC)", loop_case(
        sr, ("bearlin_roads/drums.wav",), 6.0, 1.15, 8, "speech_sisec_dev1/dev1_female4_src_1.wav")
    bg = sum(load(f"bearlin_roads/{s}.wav", sr) for s in ("piano", "bass", "drums", "other"))
    yield "bearlin song: accompaniment / vocals", (bg, load("bearlin_roads/vocals.wav", sr))


def librosa_recipe(mix: np.ndarray, sr: int, cfg: StftConfig):
    """The librosa gallery's vocal separation on our STFT: (foreground mask, background mask)."""
    import librosa

    full = np.abs(stft(mix, cfg))[0]
    width = int(librosa.time_to_frames(2, sr=sr, hop_length=cfg.hop))
    filt = librosa.decompose.nn_filter(full, aggregate=np.median, metric="cosine", width=width)
    filt = np.minimum(full, filt)
    mask_bg = librosa.util.softmask(filt, 2 * (full - filt), power=2)
    mask_fg = librosa.util.softmask(full - filt, 10 * filt, power=2)
    return mask_fg[None].astype(np.float32), mask_bg[None].astype(np.float32)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--rate", type=int, default=22050)
    args = ap.parse_args()
    sr = args.rate
    cfg = StftConfig.for_rate(sr)
    method = get_method("repet")
    print(f"rate {sr} Hz, n_fft {cfg.n_fft}, hop {cfg.hop}; foreground SNR in dB (input: 0 dB "
          "for the loops)")
    print(f"{'case':<38} {'in':>6} {'period':>7} {'sim':>7} {'librosa':>8} {'lib 1-bg':>8} "
          f"{'t period':>8} {'t sim':>6} {'t lib':>6} {'lib/period':>10} {'lib/sim':>8}")
    d_period, d_sim, r_period, r_sim = [], [], [], []
    for label, (bg, fg) in cases(sr):
        mix = (bg + fg).astype(np.float32)[None]
        scores, times = {}, {}
        for mode in ("period", "sim"):
            params = make_params(method.Params, {"mode": mode})
            t, props = best_time(lambda: method.separate(mix, sr, params, Hints(), NullContext()),
                                 args.repeat)
            scores[mode] = snr(fg, apply_mask(mix, props[1].mask, cfg)[0])
            times[mode] = t
        t_lib, (m_fg, m_bg) = best_time(lambda: librosa_recipe(mix, sr, cfg), args.repeat)
        lib = snr(fg, apply_mask(mix, m_fg, cfg)[0])
        lib_rest = snr(fg, apply_mask(mix, 1.0 - m_bg, cfg)[0])
        best_lib = max(lib, lib_rest)
        d_period.append(scores["period"] - best_lib)
        d_sim.append(scores["sim"] - best_lib)
        r_period.append(t_lib / times["period"])
        r_sim.append(t_lib / times["sim"])
        print(f"{label:<38} {snr(fg, mix[0]):6.2f} {scores['period']:7.2f} {scores['sim']:7.2f} "
              f"{lib:8.2f} {lib_rest:8.2f} {times['period']:8.3f} {times['sim']:6.3f} "
              f"{t_lib:6.3f} {r_period[-1]:9.1f}x {r_sim[-1]:7.1f}x")
    print(f"median SNR difference vs librosa's better mask: period {np.median(d_period):+.2f} dB, "
          f"sim {np.median(d_sim):+.2f} dB")
    print(f"median speed ratio (librosa / ours): period {np.median(r_period):.1f}x, "
          f"sim {np.median(r_sim):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
