"""Dropouts (runs of digital zeros inside sound) filled by ``repair``'s least-squares
AR interpolation, against the same runs painted and filled by ``repair``'s spectral
fill (the NMF model from an example, Griffin–Lim's phase, the run's samples spliced
back in), on real recordings.

    .venv/bin/python benchmarks/bench_dropouts.py [--sr 16000] [--heldout]
        [--lengths 10,30,100,200] [--positions 2] [--no-painted]

Each recording of ``bench_repair_set.py``'s ten (``--heldout``: the 24 others) is
split as there: the first half (at most 7 s) is the painted fill's example, the
second half the input. Runs of zeros of each length are put, one at a time, where
both sides have sound (10 ms within 40 dB of the excerpt's peak), at ``--positions``
places chosen with a fixed seed. Reported per length, medians over every run: the
SNR of the run's samples (dB), the reduction of the log-spectral distance over the
frames the run touches (and one frame either side) against the zeros, the energy
of the fill against the original's (dB), and the time of each fill.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parent),
                str(Path(__file__).resolve().parents[1] / "tests")]

import nmf_cases as nc  # noqa: E402
from bench_repair_set import MAX_S, RECORDINGS, heldout_recordings  # noqa: E402

from demixstudio.audio.stft import StftConfig, stft  # noqa: E402
from demixstudio.errors import DemixError  # noqa: E402
from demixstudio.jobs.context import NullContext  # noqa: E402
from demixstudio.separation import AudioHint, Hints, get_method, make_params  # noqa: E402
from demixstudio.separation.base import PaintHint  # noqa: E402
from demixstudio.separation.nmf.repair.dropouts import fill_dropouts  # noqa: E402
from demixstudio.separation.nmf.spectra import power_log_distance  # noqa: E402


def positions(x: np.ndarray, sr: int, count: int, longest: int,
              rng: np.random.Generator) -> list[int]:
    """Up to ``count`` run starts in ``x`` (samples,) with sound on both sides of a run
    up to ``longest`` samples long."""
    flank = int(0.01 * sr)
    need = np.abs(x).max() * 1e-2

    def rms(seg: np.ndarray) -> float:
        return float(np.sqrt(np.mean(seg.astype(np.float64) ** 2)))

    cands = [a for a in range(int(0.3 * sr), x.size - longest - int(0.3 * sr), int(0.05 * sr))
             if min(rms(x[a - flank:a]), rms(x[a + longest:a + longest + flank])) > need]
    if not cands:
        return []
    return sorted(rng.choice(cands, size=min(count, len(cands)), replace=False).tolist())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sr", type=int, default=nc.SR)
    ap.add_argument("--heldout", action="store_true")
    ap.add_argument("--lengths", default="10,30,100,200", help="ms, comma-separated")
    ap.add_argument("--positions", type=int, default=2)
    ap.add_argument("--no-painted", action="store_true",
                    help="only the AR fill (the painted spectral fill takes seconds a run)")
    args = ap.parse_args()
    sr = args.sr
    cfg = StftConfig.for_rate(sr)
    m = get_method("repair")
    lengths = [float(v) for v in args.lengths.split(",") if v]
    recordings = heldout_recordings() if args.heldout else RECORDINGS
    rng = np.random.default_rng(0)
    keys = ("snr_ar", "snr_nmf", "gain_ar", "gain_nmf", "e_ar", "e_nmf", "t_ar", "t_nmf")
    res = {L: {k: [] for k in keys} for L in lengths}
    refused = {L: 0 for L in lengths}
    half_win = cfg.n_fft // 2
    print(f"== dropouts at {sr} Hz on {len(recordings)} recordings, {args.positions} "
          f"places each")
    for rel in recordings:
        whole = nc.load(rel, sr).astype(np.float32)
        half = min(whole.size // 2, int(MAX_S * sr))
        x = whole[whole.size // 2:whole.size // 2 + half]
        example = whole[:half][None]
        starts = positions(x, sr, args.positions, int(max(lengths) * sr / 1000), rng)
        if not starts:
            print(f"  {rel}: no place with sound on both sides")
            continue
        truth = np.abs(stft(x[None], cfg))[0] ** 2
        peak = float(truth.max())
        for L in lengths:
            n = int(round(L * sr / 1000))
            for a in starts:
                b = a + n
                damaged = x.copy()
                damaged[a:b] = 0.0
                # The frames the run touches, and one either side.
                t0 = int(np.ceil((a - half_win + 1) / cfg.hop))
                t1 = int(np.floor((b - 1 + half_win) / cfg.hop))
                near = slice(max(0, t0 - 1), t1 + 2)

                def lsd(y: np.ndarray) -> float:
                    p = np.abs(stft(y[None], cfg))[0][:, near] ** 2
                    return power_log_distance(truth[:, near], p, peak)

                def record(tag: str, y: np.ndarray, dt: float) -> None:
                    seg, ref = y[a:b].astype(np.float64), x[a:b].astype(np.float64)
                    r = res[L]
                    r["snr_" + tag].append(10 * np.log10(np.sum(ref ** 2)
                                                         / max(np.sum((ref - seg) ** 2), 1e-30)))
                    r["gain_" + tag].append(1 - lsd(y) / lsd(damaged))
                    r["e_" + tag].append(10 * np.log10(max(np.sum(seg ** 2), 1e-30)
                                                       / np.sum(ref ** 2)))
                    r["t_" + tag].append(dt)

                t = time.perf_counter()
                filled, count, _ = fill_dropouts(damaged[None], sr, 1.0)
                record("ar", filled[0], time.perf_counter() - t)
                if count != 1:
                    print(f"  {rel} at {a / sr:.2f} s, {L:g} ms: {count} runs found, not 1")
                if args.no_painted:
                    continue
                span = (t0 * cfg.hop / sr - 0.5 * cfg.hop / sr,
                        t1 * cfg.hop / sr + 0.5 * cfg.hop / sr, 0.0, sr / 2.0, 1.0)
                hints = Hints(examples={"x": [AudioHint(example, sr)]},
                              paint={"dropout": PaintHint(rects=(span,))})
                p = make_params(m.Params, {"dropout_ms": 0.0})
                t = time.perf_counter()
                spliced = damaged.copy()
                try:
                    out = m.separate(damaged[None], sr, p, hints, NullContext())[0].waveform[0]
                except DemixError:
                    # Refused (an example that does not match): the input as it was,
                    # as a user would have it.
                    refused[L] += 1
                else:
                    spliced[a:b] = out[a:b]
                record("nmf", spliced, time.perf_counter() - t)
        print(f"  {rel}", flush=True)
    print("length: median SNR in the run (dB) / median reduction of the distance near it "
          "/ median energy of the fill (dB) / mean time a run; AR fill | painted spectral "
          "fill")
    for L in lengths:
        r = {k: np.asarray(v) for k, v in res[L].items()}
        line = (f"  {L:5g} ms (n={r['snr_ar'].size:3d}): AR {np.median(r['snr_ar']):5.1f} dB "
                f"{np.median(r['gain_ar']):+5.0%} {np.median(r['e_ar']):+5.1f} dB "
                f"{1000 * r['t_ar'].mean():6.1f} ms")
        if r["snr_nmf"].size:
            line += (f" | painted {np.median(r['snr_nmf']):5.1f} dB "
                     f"{np.median(r['gain_nmf']):+5.0%} {np.median(r['e_nmf']):+5.1f} dB "
                     f"{1000 * r['t_nmf'].mean():6.0f} ms; AR better near the run in "
                     f"{np.mean(r['gain_ar'] > r['gain_nmf']):.0%}, "
                     f"x{r['t_nmf'].mean() / r['t_ar'].mean():.0f} faster")
            if refused[L]:
                line += f" (painted refused {refused[L]}: counted as the zeros)"
        print(line, flush=True)


if __name__ == "__main__":
    main()
