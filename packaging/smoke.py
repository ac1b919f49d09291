"""Build the one-folder app and drive the FROZEN build headless: the smoke test.

Usage (from the repository root)::

    .venv/bin/python packaging/smoke.py            # build, then test
    .venv/bin/python packaging/smoke.py --reuse    # test the existing packaging/dist build

What it checks, each with the frozen executable ``packaging/dist/demixstudio/demixstudio``
started with an empty environment (no virtual environment, no PYTHONPATH,
PATH=/usr/bin:/bin) and ``QT_QPA_PLATFORM=offscreen``, with settings, log
and autosaves in a temporary folder:

1. ``demixstudio --version`` prints the version (the command line works);
2. the editor opens the built-in demo and runs ``hpss`` (``--smoke-test demo``);
3. the editor opens a real song excerpt (drums + vocals of "Roads" by Bearlin,
   ../shared/audio), runs the method, tries playback, exports every layer as a
   stem and quits (``--smoke-test FILE``);

and for 2 and 3 that the exit status is 0, a stem exists for every layer, and
the stems sum to the input (32-bit float WAV, so to within float rounding).
It prints the built folder's size and the time from starting the process to
the window being shown (the first run after a build is a cold start).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
DIST = REPO / "packaging" / "dist" / "demixstudio"
EXE = DIST / "demixstudio"
SHARED = Path(os.environ.get("DEMIXSTUDIO_SHARED", REPO.parent / "shared"))
SONG = SHARED / "audio" / "bearlin_roads"
#: Largest |sum of stems - input| accepted (float32 stems written as float WAV).
SUM_TOL = 1e-4


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def build() -> float:
    t = time.perf_counter()
    subprocess.run([str(REPO / "packaging" / "build.sh")], check=True, cwd=str(REPO))
    return time.perf_counter() - t


def clean_env(home: Path) -> dict:
    """What a desktop gives a program: no Python environment at all."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
            "QT_QPA_PLATFORM": "offscreen", "OMP_NUM_THREADS": "1",
            "DEMIXSTUDIO_SETTINGS": str(home / "settings.ini"),
            "DEMIXSTUDIO_LOG_DIR": str(home / "log"),
            "DEMIXSTUDIO_DATA_DIR": str(home / "data")}


def write_song(path: Path, seconds: float) -> np.ndarray:
    """Drums + vocals of a real song (its first ``seconds``, at most the whole
    14 s excerpt); float32 (channels, n)."""
    parts = []
    for stem in ("drums.wav", "vocals.wav"):
        with sf.SoundFile(str(SONG / stem)) as f:
            parts.append(f.read(int(seconds * f.samplerate), dtype="float32", always_2d=True))
            sr = f.samplerate
    n = min(len(p) for p in parts)
    parts = [p[:n] for p in parts]
    mix = (0.7 * (parts[0] + parts[1])).astype(np.float32)
    sf.write(str(path), mix, sr, subtype="FLOAT")
    return mix.T


def run_editor(args: list, env: dict, cwd: Path, timeout_s: float) -> dict:
    """Start the frozen editor; time the start-up from its 'window-shown' line."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(EXE), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, cwd=str(cwd))
    shown, lines = None, []
    try:
        for line in proc.stdout:
            lines.append(line.rstrip())
            if shown is None and line.startswith("SMOKE window-shown"):
                shown = time.perf_counter() - t0
        code = proc.wait(timeout_s)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    return {"code": code, "startup_s": shown, "wall_s": time.perf_counter() - t0, "lines": lines}


def check_stems(folder: Path, reference: np.ndarray, layers: list) -> str:
    files = sorted(folder.glob("*.wav"))
    if len(files) != len(layers):
        raise SystemExit(f"FAIL: {len(files)} stems for {len(layers)} layers: {files}")
    total = None
    for f in files:
        x, _ = sf.read(str(f), dtype="float32", always_2d=True)
        total = x.T.astype(np.float64) if total is None else total + x.T
    if total.shape != reference.shape:
        raise SystemExit(f"FAIL: stems have shape {total.shape}, the input {reference.shape}")
    err = float(np.max(np.abs(total - reference)))
    if not err <= SUM_TOL:
        raise SystemExit(f"FAIL: the stems sum to the input only within {err:.2e}")
    return f"{len(files)} stems ({', '.join(layers)}) sum to the input within {err:.1e}"


def smoke(method: str, seconds: float, work: Path) -> None:
    home = work / "home"
    home.mkdir()
    env = clean_env(home)

    r = subprocess.run([str(EXE), "--version"], capture_output=True, text=True, env=env,
                       cwd=str(work), timeout=300)
    from demixstudio import __version__
    if r.returncode != 0 or r.stdout.strip() != f"demixstudio {__version__}":
        raise SystemExit(f"FAIL: --version gave {r.returncode}: {r.stdout!r} {r.stderr!r}")
    print(f"[1] demixstudio --version: {r.stdout.strip()}")

    cases = [("demo", None), ("song", work / "roads excerpt.wav")]
    for n, (what, path) in enumerate(cases, start=2):
        out, report = work / f"stems-{what}", work / f"report-{what}.json"
        if path is None:
            from demixstudio.demo import DEMO_SR, demo_mixture

            reference, _ = demo_mixture(DEMO_SR, 12.0)
            target = "demo"
        else:
            reference = write_song(path, seconds)
            target = str(path)
        res = run_editor(["--smoke-test", target, "--method", method, "--export", str(out),
                          "--smoke-report", str(report), "--smoke-timeout", "600"],
                         env, work, 900)
        for line in res["lines"]:
            if line.startswith("SMOKE") or "Error" in line or "error" in line:
                print(f"    | {line}")
        if res["code"] != 0 or not report.is_file():
            print("\n".join(res["lines"][-40:]))
            log = home / "log" / "demixstudio.log"
            if log.is_file():
                print("--- the app's log (end) ---")
                print("\n".join(log.read_text(errors="replace").splitlines()[-40:]))
            raise SystemExit(f"FAIL: the {what} run exited with {res['code']}")
        info = json.loads(report.read_text())
        summary = check_stems(out, np.asarray(reference, dtype=np.float64), info["layers"])
        print(f"[{n}] {what}: {info['input']['seconds']:.1f} s, {info['input']['channels']} ch, "
              f"{info['input']['sr']} Hz; {method} → {summary}")
        print(f"    start-up to window shown: {res['startup_s']:.2f} s; whole run "
              f"{res['wall_s']:.1f} s (separated at {info['times']['separated']:.1f} s); "
              f"playback: {info['playback']}")
    log = home / "log" / "demixstudio.log"
    print(f"log file of the frozen app: {log} ({log.stat().st_size} bytes)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reuse", action="store_true", help="test the existing build, do not build")
    p.add_argument("--method", default="hpss")
    p.add_argument("--seconds", type=float, default=14.0, help="length of the song excerpt")
    args = p.parse_args()
    if args.reuse and EXE.is_file():
        print(f"reusing {DIST}")
    else:
        print(f"building {DIST} (packaging/build.sh) …", flush=True)
        print(f"built in {build():.0f} s")
    if not EXE.is_file():
        raise SystemExit(f"FAIL: no executable at {EXE}")
    size = folder_size(DIST)
    print(f"built folder: {DIST} = {size / 2**20:.0f} MiB "
          f"({sum(1 for _ in DIST.rglob('*'))} files)")
    with tempfile.TemporaryDirectory(prefix="demixstudio-smoke-") as tmp:
        smoke(args.method, args.seconds, Path(tmp))
    print("SMOKE TEST PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
