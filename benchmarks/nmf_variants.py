"""Settings of one NMF method compared on the benchmark's mixtures, pooled over seeds.

``bench_nmf.py`` runs every method with its defaults and gives each seed's
figures, then their mean. This runs one method with several settings
(``--variant NAME:key=value,...``, as ``--set`` on the command line) on one or
more of the benchmark's sets (tests/nmf_cases.py: 0 the four 7 s mixtures, 1
to 4 the held-out ones) and pools every source of every mixture and seed
before taking medians, the figures the NMF methods' docstrings and ``NMF_NOTES.md`` quote as
"pooled over seeds 0–2". The hints are the benchmark's: the simulated coarse
painting of both sources (``nmf-paint``), the first source's other excerpt as
the hum (``nmf-hum``), every source's other excerpt as examples
(``nmf-supervised``), the first source's (``nmf-semisupervised``); ``nmf``
takes none and is scored under its best permutation.

For every set and setting it prints the pooled median SDR, the difference of
that median and unsupervised ``nmf``'s (same seeds), the median of per-source
differences against ``nmf``, and each mixture's SDR (mean over seeds and
sources).

    .venv/bin/python benchmarks/nmf_variants.py --method nmf-paint --sets 0,1,2 \\
        --seeds 0,1,2 --variant default --variant strong:strength=10 [--sr 44100]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import nmf_cases as nc  # noqa: E402

from demixstudio.jobs.context import NullContext  # noqa: E402
from demixstudio.separation import AudioHint, Hints, get_method, make_params  # noqa: E402


def hints_for(method: str, case: nc.Case) -> Hints:
    """The benchmark's hints of ``method`` for ``case``."""
    first = case.names[0]
    if method == "nmf-paint":
        p0, _ = nc.dominance_paint(case, 0, scales=(1, 2, 4))
        p1, _ = nc.dominance_paint(case, 1, scales=(1, 2, 4))
        return Hints(paint={first: p0, "rest": p1})
    if method == "nmf-hum":
        return Hints(hums={first: [AudioHint(case.examples[first], case.sr)]})
    if method == "nmf-supervised":
        return Hints(examples={n: [AudioHint(case.examples[n], case.sr)] for n in case.names})
    if method == "nmf-semisupervised":
        return Hints(examples={first: [AudioHint(case.examples[first], case.sr)]})
    if method == "nmf":
        return Hints()
    raise SystemExit(f"{method!r}: one of nmf, nmf-paint, nmf-hum, nmf-supervised, "
                     f"nmf-semisupervised")


def parse_variant(text: str, method: str) -> tuple[str, dict[str, str]]:
    """``NAME`` or ``NAME:key=value,key=value`` -> (NAME, the settings as strings),
    checked against the method's parameters now rather than after the first case."""
    name, _, rest = text.partition(":")
    settings = dict(kv.split("=", 1) for kv in rest.split(",") if kv)
    m = get_method(method)
    make_params(m.Params, strings=settings)
    return name, settings


def sdr(method: str, case: nc.Case, hints: Hints, seed: int, settings: dict[str, str]
        ) -> np.ndarray:
    """SDR (dB) per source of ``method`` with ``settings``; ``nmf``'s under its best
    permutation."""
    m = get_method(method)
    params = make_params(m.Params, {"seed": seed}, settings)
    est = nc.apply_masks(case, m.separate(case.mix, case.sr, params, hints, NullContext()))
    return nc.sdr_permuted(case, est) if method == "nmf" else nc.sdr(case, est)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", required=True)
    ap.add_argument("--variant", action="append", default=[],
                    help="NAME or NAME:key=value,key=value (repeatable; default: the "
                         "method's defaults only)")
    ap.add_argument("--sets", default="0", help="comma-separated sets: 0 to 4")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--sr", type=int, default=nc.SR)
    ap.add_argument("--seconds", type=float, default=None)
    args = ap.parse_args()
    variants = [parse_variant(v, args.method) for v in args.variant or ["default"]]
    seeds = [int(s) for s in args.seeds.split(",")]
    for st in (int(s) for s in args.sets.split(",")):
        cases = nc.cases(sr=args.sr, seconds=args.seconds, heldout=st)
        hints = [hints_for(args.method, case) for case in cases]  # the same for every seed
        base: list[np.ndarray] = []
        sdrs = {name: [] for name, _ in variants}
        for seed in seeds:
            for case, hint in zip(cases, hints):
                base.append(sdr("nmf", case, Hints(), seed, {}))
                for name, settings in variants:
                    sdrs[name].append(sdr(args.method, case, hint, seed, settings))
        b = np.concatenate(base)
        for name, _ in variants:
            x = np.concatenate(sdrs[name])
            per_mixture = np.array([s.mean() for s in sdrs[name]]).reshape(len(seeds), -1)
            print(f"set {st} {name:16s} median {np.median(x):6.2f} dB | vs nmf: difference "
                  f"of medians {np.median(x) - np.median(b):+5.2f}, median of differences "
                  f"{np.median(x - b):+5.2f} | per mixture "
                  + " ".join(f"{v:5.1f}" for v in per_mixture.mean(0)), flush=True)


if __name__ == "__main__":
    main()
