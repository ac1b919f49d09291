"""Benchmark: batch throughput with 2 local workers against 1, on the same folder.

A folder of ``--files`` real song excerpts (mixes of the Bearlin "Roads" and
Falcon 69 stems from ``../shared/audio``, ``--seconds`` long, 44.1 kHz
stereo, each a different excerpt) is separated with ``--method`` twice: by
``run_batch`` with one worker process, then with two (fresh output folders,
so nothing is skipped). Each run starts its own ``LocalCluster``.

Files per minute are measured over the processing window — from the first
task's start to the last task's end, as the workers' own manifest records
give them — so that the cluster's start-up (seconds, paid once per batch)
doesn't hide the scaling; the end-to-end figure is printed too. The ratio is
2-worker over 1-worker throughput (ideal: 2.0 on an idle machine with at
least 2 cores).

A shared machine may not have two idle cores, so the same run also measures
the *ceiling*: the same separations in 1 and then 2 plain processes
(``concurrent.futures``, no Dask, same thread pinning), and each file's CPU
seconds. Batch speed-up ÷ ceiling speed-up is the part Dask and our
coordination lose (1.0 = nothing); CPU seconds per file that stay level
between 1 and 2 workers mean the work itself does not grow with workers.

Usage::

    python benchmarks/bench_batch.py [--files 12] [--seconds 10] [--method hpss] [--set k=v]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from demixstudio.batch import run_batch  # noqa: E402
from demixstudio.session.operations import method_params  # noqa: E402

AUDIO = (REPO / ".." / "shared" / "audio").resolve()
SONGS = {"bearlin_roads": ("vocals", "drums", "bass", "piano", "other"),
         "easton_ellises_falcon69": ("vocals", "drums", "bass", "other")}


def write_folder(folder: Path, files: int, seconds: float) -> None:
    import soundfile as sf

    mixes = []
    for song, stems in SONGS.items():
        x = None
        for stem in stems:
            s, sr = sf.read(str(AUDIO / song / f"{stem}.wav"), dtype="float32", always_2d=True)
            x = s if x is None else x + s
        mixes.append((x, sr))
    for i in range(files):
        x, sr = mixes[i % len(mixes)]
        n = int(seconds * sr)
        # Different excerpts: a rotation of the song by a file-dependent offset.
        start = (i * 7919 * 13) % x.shape[0]
        reps = int(np.ceil((start + n) / x.shape[0])) + 1
        clip = np.tile(x, (reps, 1))[start:start + n]
        sf.write(folder / f"clip{i:02d}.wav", clip, sr, subtype="PCM_16")


def _plain_task(args) -> tuple:
    """One file in a plain process: (start, end, cpu seconds)."""
    path, out, method, params = args
    import time as _t

    from demixstudio.session.operations import separate_to_folder

    t0, c0 = _t.time(), _t.thread_time()
    separate_to_folder(path, method, out, params=params, ext="flac")
    return t0, _t.time(), _t.thread_time() - c0


def _warm(_) -> None:
    import time as _t

    from demixstudio.separation.registry import available

    available()  # import every method (torch included), as a Dask worker does first
    _t.sleep(1.0)  # hold this process so the next warm-up goes to another


def plain_ceiling(folder: Path, out: Path, method: str, params, workers: int) -> tuple:
    """Files/min and median CPU s/file with ``workers`` plain processes."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from demixstudio.batch.runner import WORKER_ENV

    files = sorted(folder.iterdir())
    saved = {k: os.environ.get(k) for k in WORKER_ENV}
    os.environ.update(WORKER_ENV)  # inherited by the spawned processes, as with Dask
    try:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            list(pool.map(_warm, range(workers)))
            jobs = [(f, out / f.stem, method, params) for f in files]
            res = list(pool.map(_plain_task, jobs))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    window = max(r[1] for r in res) - min(r[0] for r in res)
    return 60.0 * len(files) / window, float(np.median([r[2] for r in res]))


def throughput(summary) -> tuple:
    recs = [r for r in summary.records if r["status"] == "ok"]
    t0 = min(datetime.fromisoformat(r["started"]) for r in recs)
    t1 = max(datetime.fromisoformat(r["finished"]) for r in recs)
    window = (t1 - t0).total_seconds()
    return 60.0 * len(recs) / window, 60.0 * len(recs) / summary.elapsed_s, window, recs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--method", default="hpss")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    settings = dict(s.split("=", 1) for s in args.set)
    params = method_params(args.method, settings=settings)
    print(f"{args.files} files x {args.seconds:.0f} s (44.1 kHz stereo), method {args.method}, "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        write_folder(tmp / "in", args.files, args.seconds)
        rates, ceiling = {}, {}
        for workers in (1, 2):
            fpm, cpu = plain_ceiling(tmp / "in", tmp / f"plain{workers}", args.method, params,
                                     workers)
            ceiling[workers] = fpm
            print(f"ceiling, {workers} plain process(es): {fpm:6.1f} files/min; median "
                  f"{cpu:.2f} CPU s per file")
        for workers in (1, 2):
            s = run_batch([tmp / "in"], args.method, tmp / f"out{workers}", params=params,
                          workers=workers)
            if s.ok != args.files:
                print(f"{workers} worker(s): only {s.ok} of {args.files} files succeeded: "
                      f"{[r.get('error') for r in s.errors]}")
                return 1
            fpm, fpm_e2e, window, recs = throughput(s)
            peak = max(r["peak_rss_mb"] for r in recs)
            per_file = np.median([r["wall_s"] for r in recs])
            cpu = np.median([r["cpu_s"] for r in recs])
            rates[workers] = fpm
            print(f"batch, {workers} worker(s):      {fpm:6.1f} files/min over the {window:.1f} s "
                  f"processing window ({fpm_e2e:.1f} end to end, {s.elapsed_s:.1f} s with "
                  f"start-up); median {per_file:.2f} s, {cpu:.2f} CPU s per file; peak worker "
                  f"memory {peak:.0f} MB")
    speedup, ceil = rates[2] / rates[1], ceiling[2] / ceiling[1]
    print(f"speed-up 2 workers / 1 worker: {speedup:.2f}x (ceiling on this machine now: "
          f"{ceil:.2f}x, so batch keeps {speedup / ceil:.0%} of it); load average "
          f"{os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
