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

    .venv/bin/python benchmarks/bench_duet.py [--long SECONDS]
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
    ap.add_argument("--long", type=float, default=600.0,
                    help="seconds of a long mixture for the memory/speed check (0: skip)")
    args = ap.parse_args()
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
    if args.long > 0:
        # In a fresh process, so the peak resident size is this run's alone.
        code = (
            "import resource, sys, time, numpy as np\n"
            f"sys.path[:0] = {[str(ROOT / 'tests'), str(ROOT)]!r}\n"
            "from test_duet import TWO, SR, _mixture\n"
            "from demixstudio.jobs.context import NullContext\n"
            "from demixstudio.separation import Hints, get_method, make_params\n"
            "mix, _ = _mixture(TWO[0])\n"
            f"n = int({args.long} * SR)\n"
            "long = np.tile(mix, (1, -(-n // mix.shape[1])))[:, :n].copy()\n"
            "m = get_method('duet')\n"
            "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "t0 = time.perf_counter()\n"
            "props = m.separate(long, SR, make_params(m.Params, {'sources': 2}), Hints(),"
            " NullContext())\n"
            "t = time.perf_counter() - t0\n"
            "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "print(t, (peak - base) / 1024, long.nbytes / 2 ** 20)\n")
        import subprocess
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if r.returncode != 0:
            print(f"long input failed: {r.stderr[-300:]}")
            return
        t_long, grew, mb = (float(v) for v in r.stdout.split()[-3:])
        print(f"\nlong input: {args.long:g} s stereo at {SR} Hz ({mb:.0f} MB float32), defaults: "
              f"{t_long:.1f} s, peak memory above the loaded input {grew:.0f} MB "
              f"({grew / mb:.1f}x the input; the output waveforms alone are 2x)")

if __name__ == "__main__":
    main()
