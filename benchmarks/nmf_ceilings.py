"""How far a grouped or constrained magnitude NMF of the acceptance's mixtures can go.

The NMF issue asks ``nmf-paint`` for +5 dB and ``nmf-hum`` for +3 dB of median SDR
over ``nmf``. This script measures, on the same mixtures and seeds as
``bench_nmf.py``, the oracles that bound what any labelling of an NMF can give, so
that the gap is a figure anyone can reproduce rather than a claim:

- ``nmf``: the method's default (its mel-NMF grouping), scored under the best
  permutation, as ``bench_nmf.py`` scores it;
- ``oracle K``: ``nmf``'s own factorisation with K components (``per_component``),
  each component given to the true source whose power its mask holds most of.
  No rule that labels components (from paint, a hum, timbre) can beat this on the
  same factorisation;
- ``ideal``: the sources' power ratio as the mask (the ceiling of any soft mask);
- ``paint`` and ``hum``: the methods as the acceptance runs them (the simulated
  coarse painting; the target's other excerpt as the hum);
- ``hum, perfect``: ``nmf-hum`` with the target's own signal in the mixture as the
  hint (aligned, same notes and timbre): the hum with no mismatch at all;
- ``needed``: ``nmf``'s median plus the threshold.

It then lists each method's per-source values in order, so one can see which
mixture's values the median falls on.

    .venv/bin/python benchmarks/nmf_ceilings.py [--seeds 0,1,2] [--heldout N] [--sr 44100]
        [--ranks 20,64,200]
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

import nmf_cases as nc
from bench_nmf import run

from demixstudio.separation import AudioHint, Hints

#: What the issue asks over ``nmf`` (dB of median SDR).
THRESHOLDS = {"paint": 5.0, "hum": 3.0}


def oracle_groups(masks: list[np.ndarray], powers: np.ndarray) -> list[np.ndarray]:
    """Component masks [(1, bins, frames)] summed into one mask per true source, each
    component going to the source whose power it holds most of."""
    out = [np.zeros_like(masks[0], dtype=np.float32) for _ in range(len(powers))]
    for m in masks:
        held = [float(np.sum(m[0] * p)) for p in powers]
        out[int(np.argmax(held))] += m
    return out


def ideal_masks(powers: np.ndarray) -> list[np.ndarray]:
    """The sources' power over their sum, (1, bins, frames) each."""
    total = powers.sum(0) + 1e-20
    return [(p / total)[None].astype(np.float32) for p in powers]


def one_case(case: nc.Case, seed: int, ranks: list[int], rows: dict, ideal: bool) -> None:
    """Every figure for one mixture and seed, appended to ``rows[figure]`` as
    (mixture's label, seed, SDR) per source;
    ``ideal``: also the ideal masks (they do not depend on the seed)."""
    powers = nc.source_powers(case).astype(np.float64)
    first = case.names[0]

    def note(key: str, s: np.ndarray, dt: float) -> None:
        rows.setdefault(key, []).extend((case.label, seed, float(v)) for v in s)
        print(f"  {key:16s} {s[0]:6.2f} {s[1]:6.2f}  ({dt:.1f} s)", flush=True)

    props, dt = run("nmf", case, Hints(), seed=seed)
    note("nmf", nc.sdr_permuted(case, nc.apply_masks(case, props)), dt)
    for k in ranks:
        props, dt = run("nmf", case, Hints(), seed=seed, components=k, per_component=True)
        masks = oracle_groups([np.asarray(p.mask) for p in props], powers)
        note(f"oracle {k}", nc.sdr(case, nc.apply_masks(case, masks)), dt)
    if ideal:
        note("ideal", nc.sdr(case, nc.apply_masks(case, ideal_masks(powers))), 0.0)
    # The acceptance's painting: bench_nmf.py's tiles of three sizes.
    p0, _ = nc.dominance_paint(case, 0, scales=(1, 2, 4))
    p1, _ = nc.dominance_paint(case, 1, scales=(1, 2, 4))
    props, dt = run("nmf-paint", case, Hints(paint={first: p0, "rest": p1}), seed=seed)
    note("paint", nc.sdr(case, nc.apply_masks(case, props)), dt)
    props, dt = run("nmf-hum", case,
                    Hints(hums={first: [AudioHint(case.examples[first], case.sr)]}), seed=seed)
    note("hum", nc.sdr(case, nc.apply_masks(case, props)), dt)
    props, dt = run("nmf-hum", case,
                    Hints(hums={first: [AudioHint(case.sources[0], case.sr)]}), seed=seed)
    note("hum, perfect", nc.sdr(case, nc.apply_masks(case, props)), dt)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--heldout", type=int, default=0, choices=(0, 1, 2, 3, 4))
    ap.add_argument("--sr", type=int, default=nc.SR)
    ap.add_argument("--ranks", default="20,64,200",
                    help="component counts of the oracle grouping (nmf's default is 20)")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    ranks = [int(k) for k in args.ranks.split(",")]
    cases = nc.cases(sr=args.sr, heldout=args.heldout)
    rows: dict[str, list[tuple[str, int, float]]] = {}
    t0 = time.perf_counter()
    for seed in seeds:
        print(f"##### seed {seed}", flush=True)
        for case in cases:
            print(f"== {case.label}", flush=True)
            one_case(case, seed, ranks, rows, ideal=seed == seeds[0])
    # Two summaries: the median pooled over every source, mixture and seed, and
    # bench_nmf.py's (each seed's median, then their mean; the ideal masks are
    # measured once, so both are that one median).
    med = {k: float(np.median([v for _, _, v in r])) for k, r in rows.items()}
    per_seed = {k: float(np.mean([np.median([v for _, s, v in r if s == seed])
                                  for seed in sorted({s for _, s, _ in r})]))
                for k, r in rows.items()}
    print(f"== medians, pooled / mean over seeds ({time.perf_counter() - t0:.0f} s)")
    for k in med:
        print(f"  {k:16s} {med[k]:6.2f} / {per_seed[k]:6.2f} dB   "
              f"({med[k] - med['nmf']:+.2f} / {per_seed[k] - per_seed['nmf']:+.2f} over nmf)")
    for k, d in THRESHOLDS.items():
        print(f"  needed by {k:6s} {med['nmf'] + d:6.2f} / {per_seed['nmf'] + d:6.2f} dB   "
              f"(nmf + {d:.0f})")
    print("== each method's values in order (the median lies between the middle two)")
    for k in ("nmf", f"oracle {ranks[-1]}", "paint", "hum", "hum, perfect"):
        r = sorted(rows[k], key=lambda x: x[2])
        mid = len(r) // 2
        around = r[max(0, mid - 3):mid + 3]
        print(f"  {k}: " + ", ".join(f"{v:.1f} ({label})" for label, _, v in around))


if __name__ == "__main__":
    main()
