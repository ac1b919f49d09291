"""ADRess against nussl's spatial separators on constant-power panned music.

The PROJET paper's protocol (tests/spatial_mixtures.py): 3 and 4 real
recordings panned at 10°, 20° and 30° spacing. On the same mixtures, in the
same run:
- ours: ``adress`` with its defaults (sources found from the azimugram);
- nussl's ``spatial.SpatialClustering`` (k-means on inter-channel features,
  soft masks) and ``spatial.Duet``, in nussl's own interpreter (see
  benchmarks/_nussl_peer.py); said plainly when absent;
- the ideal ratio mask (per channel, from the true images) for scale.
Prints BSS Eval v4 median SDR per case, the SDR differences and speed ratios.

    .venv/bin/python benchmarks/bench_adress.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "benchmarks"), str(ROOT)]

from _nussl_peer import nussl_available, run_nussl  # noqa: E402
from spatial_mixtures import MUSIC_SET, load_sources, pan_mixture  # noqa: E402

from demixstudio.audio.stft import StftConfig, apply_mask, stft  # noqa: E402
from demixstudio.jobs.context import NullContext  # noqa: E402
from demixstudio.metrics import bss_eval  # noqa: E402
from demixstudio.separation import Hints, get_method, make_params  # noqa: E402

SR = 16000
SECONDS = 4.0
SPACINGS = (10.0, 20.0, 30.0)


def ours(mix, nb):
    m = get_method("adress")
    t0 = time.perf_counter()
    props = m.separate(mix, SR, make_params(m.Params, {"sources": 0}), Hints(), NullContext())
    cfg = StftConfig.for_rate(SR)
    est = np.stack([apply_mask(mix, p.mask, cfg) if p.waveform is None else p.waveform
                    for p in props])
    return est, time.perf_counter() - t0


def ideal_ratio(mix, images):
    cfg = StftConfig.for_rate(SR)
    power = np.stack([np.abs(stft(im, cfg)) ** 2 for im in images])  # (J, C, F, T)
    masks = power / np.maximum(power.sum(axis=0), 1e-20)
    return np.stack([apply_mask(mix, m.astype(np.float32), cfg) for m in masks])


def median_sdr(images, est):
    if est is None or est.shape[0] != images.shape[0]:
        return np.nan
    return float(np.median(bss_eval(images, est, SR, device="cpu").sdr))


def main() -> None:
    have, line = nussl_available()
    print(f"peer: {line}" if have else f"peer: NOT RUN - {line}; comparing with the ideal "
          "ratio mask only")
    cfg = StftConfig.for_rate(SR)
    src = load_sources(MUSIC_SET, SR, SECONDS)
    print(f"{'case':<10}{'found':>6}{'ours':>8}{'nussl SC':>10}{'nussl DUET':>11}{'IRM':>8}"
          f"{'t ours':>9}{'t SC':>8}{'t DUET':>8}")
    rows = []
    for nb in (3, 4):
        for spacing in SPACINGS:
            mix, images = pan_mixture(src[:nb], spacing)
            est, t_ours = ours(mix, nb)
            sc = (run_nussl("SpatialClustering", mix, SR, cfg.n_fft, cfg.hop, num_sources=nb)
                  if have else None)
            du = run_nussl("Duet", mix, SR, cfg.n_fft, cfg.hop, num_sources=nb) if have else None
            row = (nb, spacing, est.shape[0], median_sdr(images, est),
                   median_sdr(images, sc[0] if sc else None),
                   median_sdr(images, du[0] if du else None),
                   median_sdr(images, ideal_ratio(mix, images)), t_ours,
                   sc[1] if sc else np.nan, du[1] if du else np.nan)
            rows.append(row)
            print(f"{nb} @ {spacing:>3.0f}°{row[2]:>6}{row[3]:8.2f}{row[4]:10.2f}{row[5]:11.2f}"
                  f"{row[6]:8.2f}{row[7]:9.3f}{row[8]:8.3f}{row[9]:8.3f}", flush=True)
    print(f"\nmedian SDR per spacing over the 3- and 4-source mixtures ({SECONDS:g} s, {SR} Hz):")
    for spacing in SPACINGS:
        r = [x for x in rows if x[1] == spacing]
        print(f"  {spacing:>3.0f}°: ours {np.median([x[3] for x in r]):6.2f}   "
              f"nussl SC {np.median([x[4] for x in r]):6.2f}   "
              f"nussl DUET {np.median([x[5] for x in r]):6.2f}   "
              f"IRM {np.median([x[6] for x in r]):6.2f}")
    if have:
        t = [sum(x[k] for x in rows) for k in (7, 8, 9)]
        d_sc = np.nanmedian([x[3] - x[4] for x in rows])
        d_du = np.nanmedian([x[3] - x[5] for x in rows])
        print(f"SDR difference ours - peer (median over cases): {d_sc:+.2f} dB vs "
              f"SpatialClustering, {d_du:+.2f} dB vs DUET")
        print(f"time: ours {t[0]:.2f} s, SpatialClustering {t[1]:.2f} s ({t[1] / t[0]:.1f}x), "
              f"DUET {t[2]:.2f} s ({t[2] / t[0]:.1f}x)")


if __name__ == "__main__":
    main()
