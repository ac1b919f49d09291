"""DUET against nussl's DUET on anechoic stereo speech mixtures (the tests' mixtures).

Runs, on the same mixtures in the same run:
- ours: ``duet`` with its defaults (soft masks + 3 EM iterations of the
  multichannel Wiener filter) and the paper's configuration (binary masks,
  no post-filter);
- nussl's ``spatial.Duet`` (binary masks, its default histogram), in its own
  interpreter (see benchmarks/_nussl_peer.py); said plainly when absent;
- the ideal binary mask from the true images, for scale.
Prints BSS Eval v4 SDR per case, the medians, the SDR difference and the
speed ratio, the auto-count results, and the peak memory of a long input.

    .venv/bin/python benchmarks/bench_duet.py [--long MINUTES]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "benchmarks"), str(ROOT)]

from _nussl_peer import nussl_available, run_nussl  # noqa: E402
from test_duet import SECONDS, SR, THREE, TWO, _mixture  # noqa: E402

from demixstudio.audio.stft import StftConfig, apply_mask, stft  # noqa: E402
from demixstudio.jobs.context import NullContext  # noqa: E402
from demixstudio.metrics import bss_eval  # noqa: E402
from demixstudio.separation import Hints, get_method, make_params  # noqa: E402


def ours(mix, nb, **values):
    m = get_method("duet")
    params = make_params(m.Params, {"sources": nb, **values})
    t0 = time.perf_counter()
    props = m.separate(mix, SR, params, Hints(), NullContext())
    cfg = StftConfig.for_rate(SR)
    est = np.stack([p.waveform if p.waveform is not None else apply_mask(mix, p.mask, cfg)
                    for p in props])
    return est, time.perf_counter() - t0, len(props)


def ideal_binary(mix, images):
    cfg = StftConfig.for_rate(SR)
    power = np.stack([np.abs(stft(im, cfg)) ** 2 for im in images]).sum(axis=1)
    win = power.argmax(axis=0)
    return np.stack([apply_mask(mix, (win == j).astype(np.float32)[None], cfg)
                     for j in range(images.shape[0])])


def sdr(images, est):
    if est.shape[0] != images.shape[0]:
        return np.full(images.shape[0], np.nan)
    return bss_eval(images, est, SR, device="cpu").sdr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--long", type=float, default=0.0, metavar="MINUTES",
                    help="instead: peak memory and time of duet and adress (defaults) on "
                         "MINUTES of stereo at 44.1 kHz, each alone in a fresh process")
    ap.add_argument("--long-child", choices=("duet", "adress"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.long_child:
        long_child(args.long_child, args.long)
        return
    if args.long:
        long_inputs(args.long)
        return
    have, line = nussl_available()
    print(f"peer: {line}" if have else f"peer: NOT RUN - {line}; comparing with the ideal "
          "binary mask only")
    cfg = StftConfig.for_rate(SR)
    rows = []
    print(f"{'case':<8}{'ours':>8}{'binary':>8}{'nussl':>8}{'IBM':>8}"
          f"{'t ours':>9}{'t nussl':>9}{'auto':>6}")
    for group, cases in (("2 spk", TWO), ("3 spk", THREE)):
        for i, case in enumerate(cases):
            mix, images = _mixture(case)
            nb = len(case[0])
            est, t_ours, _ = ours(mix, nb)
            est_bin, t_bin, _ = ours(mix, nb, mask="binary", mwf=0)
            _, _, auto = ours(mix, 0)
            peer = run_nussl("Duet", mix, SR, cfg.n_fft, cfg.hop, num_sources=nb) if have else None
            s_ours, s_bin = sdr(images, est), sdr(images, est_bin)
            s_peer = sdr(images, peer[0]) if peer else np.full(nb, np.nan)
            s_ibm = sdr(images, ideal_binary(mix, images))
            t_peer = peer[1] if peer else np.nan
            rows.append((group, s_ours, s_bin, s_peer, s_ibm, t_ours, t_bin, t_peer, auto == nb))
            print(f"{group[0]}.{i + 1:<6}{np.median(s_ours):8.2f}{np.median(s_bin):8.2f}"
                  f"{np.median(s_peer):8.2f}{np.median(s_ibm):8.2f}{t_ours:9.3f}{t_peer:9.3f}"
                  f"{auto:>6}", flush=True)
    for group in ("2 spk", "3 spk"):
        r = [x for x in rows if x[0] == group]
        med = [np.median(np.concatenate([x[k] for x in r])) for k in (1, 2, 3, 4)]
        t = [sum(x[k] for x in r) for k in (5, 6, 7)]
        print(f"\n{group}: median SDR over all sources ({SECONDS:g} s at {SR} Hz)")
        print(f"  ours (soft + MWF x3) {med[0]:6.2f} dB   ours (binary, paper) {med[1]:6.2f} dB")
        print(f"  nussl Duet           {med[2]:6.2f} dB   ideal binary mask    {med[3]:6.2f} dB")
        if have:
            print(f"  SDR difference ours - nussl: {med[0] - med[2]:+.2f} dB (default), "
                  f"{med[1] - med[2]:+.2f} dB (binary)")
            print(f"  time: ours {t[0]:.2f} s, ours binary {t[1]:.2f} s, nussl {t[2]:.2f} s -> "
                  f"speed ratio nussl/ours {t[2] / t[0]:.1f}x (default), "
                  f"{t[2] / t[1]:.1f}x (binary)")
        print(f"  --sources auto right in {sum(x[8] for x in r)} of {len(r)}")


LONG_SR = 44100


def long_child(method: str, minutes: float) -> None:
    """Separate ``minutes`` of stereo with ``method``'s defaults; print time and memory.

    duet: two speakers in an anechoic mixture (level + delay); adress: three
    recordings panned 20° apart. A 20 s mixture is tiled to the length.
    """
    from _timing import memory_mb
    from spatial_mixtures import MUSIC_SET, SPEECH_SET, anechoic_mixture, load_sources, \
        pan_mixture

    if method == "duet":
        src = load_sources(SPEECH_SET[:2], LONG_SR, 20.0)
        mix, _ = anechoic_mixture(src, ((1.0, 0.6), (0.6, 1.0)), (1.0, -2.0))
    else:
        mix, _ = pan_mixture(load_sources(MUSIC_SET[:3], LONG_SR, 20.0), 20.0)
    n = int(minutes * 60 * LONG_SR)
    mix = np.tile(mix, (1, -(-n // mix.shape[1])))[:, :n].copy()
    m = get_method(method)
    now, base = memory_mb()
    t = time.perf_counter()
    props = m.separate(mix, LONG_SR, m.Params(), Hints(), NullContext())
    dt = time.perf_counter() - t
    peak = memory_mb()[1]
    outs = sum((p.waveform if p.waveform is not None else p.mask).nbytes for p in props)
    print(f"{method:7s} {minutes:g} min stereo at {LONG_SR} Hz: {dt:6.1f} s, "
          f"{len(props)} layers, peak RSS {peak:6.0f} MB, {peak - now:5.0f} MB above the RSS "
          f"at the call ({now:.0f} MB; peak before it {base:.0f} MB; input "
          f"{mix.nbytes / 2 ** 20:.0f} MB, layers {outs / 2 ** 20:.0f} MB)", flush=True)


def long_inputs(minutes: float) -> None:
    """Each method alone in a fresh process, so each peak resident size is its own."""
    import subprocess

    for method in ("duet", "adress"):
        r = subprocess.run([sys.executable, __file__, "--long", str(minutes),
                            "--long-child", method], capture_output=True, text=True)
        print(r.stdout.strip() if r.returncode == 0
              else f"{method}: failed (exit {r.returncode}): {r.stderr[-400:]}", flush=True)


if __name__ == "__main__":
    main()
