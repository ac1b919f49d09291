"""Benchmark: opening, zooming and painting a long file in SpectrogramView.

Builds a long stereo file in memory (noise plus a real recording tiled
through it; nothing is written to disk), opens it offscreen and reports:

- how long ``set_session`` blocks, and how long until the overview is drawn;
- how long until full-resolution tiles are drawn after zooming to 15 s,
  scrolling, and zooming back out to 10 minutes;
- the longest gap between ticks of a 5 ms QTimer over all of that (the
  event-loop stall a user would feel);
- the cost of a rectangle and of a 100-point brush stroke;
- peak resident memory, and the view's own cache.

Peer: what a viewer without levels of detail must do before it can draw
anything — the full-resolution spectrogram of the whole file, computed with
``scipy.signal.ShortTimeFFT`` (the tool a user would pick) in 5-minute blocks
per channel so it fits in memory. The ratio is that time over our
time-to-overview.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_spectrogram_view.py --minutes 60
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import scipy.signal  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from demixstudio.audio.io import load_audio  # noqa: E402
from demixstudio.session import Session  # noqa: E402

EXCERPT = REPO / ".." / "shared" / "audio" / "bearlin_roads" / "vocals.wav"


def long_mixture(minutes: float):
    x, sr = load_audio(EXCERPT)
    n = int(minutes * 60 * sr)
    rng = np.random.default_rng(0)
    mix = np.empty((2, n), np.float32)
    for a in range(0, n, 1 << 22):
        b = min(n, a + (1 << 22))
        mix[:, a:b] = 0.01 * rng.standard_normal((2, b - a), dtype=np.float32)
    for start in range(0, n, x.shape[1]):
        m = min(x.shape[1], n - start)
        mix[:, start:start + m] += x[:, :m]
    return mix, sr


def peer_full_spectrogram(mix: np.ndarray, sr: int, n_fft: int, hop: int) -> float:
    """Seconds scipy needs for the full-resolution power spectrogram of the whole file."""
    win = scipy.signal.windows.hann(n_fft, sym=False)
    sft = scipy.signal.ShortTimeFFT(win, hop, sr, scale_to=None)
    block = 300 * sr
    t = time.perf_counter()
    for c in range(mix.shape[0]):
        for a in range(0, mix.shape[1], block):
            s = sft.spectrogram(mix[c, a:a + block])
            10 * np.log10(s + 1e-20)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--no-peer", action="store_true")
    args = ap.parse_args()

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from demixstudio.gui.spectrogram_view import SpectrogramView

    app = QApplication.instance() or QApplication([])
    mix, sr = long_mixture(args.minutes)
    session = Session(mix, sr)
    rss_audio = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    view = SpectrogramView()
    view.resize(1400, 700)
    view.show()
    for _ in range(20):
        app.processEvents()

    gaps = []
    last = [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(tick)
    timer.start()

    def wait_ready() -> float:
        t = time.perf_counter()
        while not view.image_ready():
            app.processEvents()
            time.sleep(0.001)
            if time.perf_counter() - t > 300:
                raise RuntimeError("the view did not become ready in 300 s")
        return time.perf_counter() - t

    rows = []
    t = time.perf_counter()
    view.set_session(session)
    blocked = time.perf_counter() - t
    overview = blocked + wait_ready()
    rows.append(("open: overview drawn", overview, view.level()))
    mid = session.duration_s / 2
    view.zoom_to(mid, mid + 15)
    rows.append(("zoom to 15 s: full resolution", wait_ready(), view.level()))
    view.zoom_to(mid + 15, mid + 30)
    rows.append(("scroll 15 s", wait_ready(), view.level()))
    view.zoom_to(mid - 300, mid + 300)
    rows.append(("zoom out to 10 min", wait_ready(), view.level()))
    view.set_freq_scale("log")
    rows.append(("switch to log axis", wait_ready(), view.level()))
    view.zoom_to(mid, mid + 15)
    wait_ready()
    view.set_paint_target("voice")
    t = time.perf_counter()
    view.paint_rect_seconds(mid + 2, mid + 8, 200, 4000)
    rect_ms = 1000 * (time.perf_counter() - t)
    view.set_tool("brush")
    t = time.perf_counter()
    view.paint_path_seconds([(mid + 1 + 0.1 * i, 300 + 30 * i) for i in range(100)])
    brush_ms = 1000 * (time.perf_counter() - t)
    wait_ready()
    timer.stop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"{args.minutes:g}-minute stereo file at {sr} Hz "
          f"({session.stft.frames(session.samples)} STFT frames)")
    print(f"  set_session blocks the GUI thread for {1000 * blocked:.0f} ms")
    for name, sec, level in rows:
        print(f"  {name:34s} {sec:6.2f} s   (level k={level})")
    print(f"  rectangle stroke {rect_ms:.0f} ms; 100-point brush stroke {brush_ms:.0f} ms")
    print(f"  longest event-loop stall {1000 * max(gaps):.0f} ms "
          f"(99th percentile {1000 * np.percentile(gaps, 99):.0f} ms)")
    print(f"  peak RSS {peak:.0f} MB (audio alone {rss_audio:.0f} MB); view cache "
          f"{view.loader().nbytes() / 2**20:.0f} MB; paint {session.paint.nbytes() / 2**20:.1f} MB")
    view.shutdown()
    if not args.no_peer:
        peer = peer_full_spectrogram(mix, sr, session.stft.n_fft, session.stft.hop)
        print(f"  peer: scipy ShortTimeFFT full-resolution spectrogram of the whole file "
              f"{peer:.1f} s -> our overview is {peer / overview:.0f}x sooner")


if __name__ == "__main__":
    main()
