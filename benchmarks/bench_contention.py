"""Methods' time when another busy process shares the cores, with OpenMP's
default wait policy (idle threads spin before they sleep) and with the passive
waits that DemixStudio asks for (``demixstudio/omp.py``).

Each run is a fresh process that separates 7 s of stereo at 44.1 kHz (vocals +
bass of one song; by default the NMF methods and the spatial ones that run torch on
the CPU) twice and reports the second call's time (the first pays the
one-time costs). Scenarios, for each method:

- alone;
- two such processes at once, both with the same policy;
- passive waits beside a process under OpenMP's default (someone else's torch
  or OpenMP program).

A process under "default" imports torch before demixstudio, so OpenMP has
started before demixstudio could set the policy; "passive" sets
``OMP_WAIT_POLICY=PASSIVE`` in its environment.

Usage::

    .venv/bin/python benchmarks/bench_contention.py [--methods nmf,nmf-hum,nmf-paint,projet,duet,ilrma]

Any method of the registry can be named; those with no hint here run without one.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
AUDIO = Path(os.environ.get("DEMIX_SHARED_AUDIO", REPO / ".." / "shared" / "audio")).resolve()
POLICIES = ("default", "passive")


def child(method: str, policy: str) -> None:
    """Separate the excerpt twice with ``method``; print the second call's seconds."""
    if policy == "default":
        # OpenMP starts with torch, before demixstudio could set the policy.
        importlib.import_module("torch")
    from demixstudio.audio.io import load_audio
    from demixstudio.jobs.context import NullContext
    from demixstudio.separation import AudioHint, Hints, PaintHint, get_method
    from demixstudio.session.operations import method_params

    sr = 44100
    voc, _ = load_audio(AUDIO / "bearlin_roads/vocals.wav", sr=sr)
    bass, _ = load_audio(AUDIO / "bearlin_roads/bass.wav", sr=sr)
    mix = (voc + bass)[:, 7 * sr:14 * sr].copy()
    hints = {
        "nmf": Hints(),
        "nmf-hum": Hints(hums={"vocals": [AudioHint(voc[:, sr:6 * sr], sr)]}),
        "nmf-paint": Hints(paint={
            "vocals": PaintHint(rects=((0.5, 2.0, 500.0, 3000.0, 1.0),)),
            "rest": PaintHint(rects=((4.0, 6.0, 30.0, 150.0, 1.0),))}),
    }.get(method, Hints())
    m = get_method(method)
    params = method_params(method, device="cpu")  # (the CLI's: device only where taken)
    for _ in range(2):
        t = time.perf_counter()
        m.separate(mix, sr, params, hints, NullContext())
        dt = time.perf_counter() - t
    print(f"{dt:.3f}", flush=True)


def start(method: str, policy: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return subprocess.Popen([sys.executable, __file__, "--child", method, "--policy", policy],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def seconds(p: subprocess.Popen) -> float:
    out, err = p.communicate()
    if p.returncode != 0:
        raise SystemExit(f"a run failed (exit {p.returncode}): {err[-600:]}")
    return float(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", default="nmf,nmf-hum,nmf-paint,projet,duet,ilrma")
    ap.add_argument("--child")
    ap.add_argument("--policy", choices=POLICIES)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.policy)
        return
    print(f"{os.cpu_count()} CPUs; seconds of the second call on 7 s of 44.1 kHz stereo")
    print(f"{'method':10s} {'policy':8s} {'alone':>7s} {'two at once':>16s} "
          f"{'beside default':>15s}")
    for method in a.methods.split(","):
        alone = {}
        for policy in POLICIES:
            alone[policy] = seconds(start(method, policy))
            pair = [start(method, policy), start(method, policy)]
            both = [seconds(p) for p in pair]
            beside = ""
            if policy == "passive":
                ours, theirs = start(method, "passive"), start(method, "default")
                beside = f"{seconds(ours):6.2f} ({seconds(theirs):.2f})"
            print(f"{method:10s} {policy:8s} {alone[policy]:7.2f} "
                  f"{both[0]:7.2f} / {both[1]:6.2f} {beside:>15s}", flush=True)
        print(f"{'':10s} passive alone / default alone: "
              f"{alone['passive'] / alone['default']:.2f}", flush=True)


if __name__ == "__main__":
    main()
