"""NMF engine speed against scikit-learn and torchnmf on one real spectrogram.

A real magnitude spectrogram (≥ 2000 bins × ≥ 2500 frames: 2049 × 5670, a
4096-point STFT of about 66 s of recordings from ../shared/audio at 44.1 kHz), rank 40, KL
divergence, multiplicative updates, the same random initialisation for all
three, 100 iterations each, the same number of CPU threads (``--threads``).
Ours runs in float32 in the default alternating order (scikit-learn's path)
and in the joint EM order (three matrix products per iteration instead of
four), then, on the CPU, both orders again with bfloat16 products (float32
sums and updates), which the methods' ``precision="bfloat16"`` (or ``"auto"`` on a
CPU with native bfloat16: AVX-512 BF16 or AMX) asks for.
Prints seconds per iteration, the speed ratios and the KL objective each
reaches. With ``--long MINUTES`` it measures instead the time and peak memory of
``nmf``, ``nmf-paint``, ``nmf-supervised`` and ``nmf-hum`` (defaults, or with
``--long-set KEY=VALUE``) on MINUTES of stereo at 44.1 kHz, each alone in a fresh
process (block processing).

    .venv/bin/python benchmarks/bench_nmf_engine.py [--iters 100] [--device cpu] [--long MINUTES]
        [--long-set long_window=false]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import warnings
from pathlib import Path

# Before torch: OpenMP reads its wait policy once, as torch starts it, and the
# product's (demixstudio/omp.py) is what is timed.
from demixstudio.omp import prefer_passive_waits

prefer_passive_waits()

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import os

from demixstudio.audio.io import load_audio
from demixstudio.audio.stft import StftConfig, stft
from demixstudio.jobs.context import NullContext
from demixstudio.separation.nmf.engine import (
    BFLOAT16_MARGIN,
    beta_divergence,
    fit,
    native_bfloat16,
    pick_device,
    product_dtype,
    split_frames,
)

AUDIO = Path(os.environ.get("DEMIX_SHARED_AUDIO", REPO / ".." / "shared" / "audio")).resolve()
FILES = ["bearlin_roads/vocals.wav", "bearlin_roads/bass.wav", "bearlin_roads/piano.wav",
         "easton_ellises_falcon69/vocals.wav", "solo_instruments/cello-phrase.wav",
         "solo_instruments/sax-phrase.wav"]


def spectrogram() -> np.ndarray:
    """Magnitude (2049, 5670) float32 of the concatenated recordings."""
    parts = []
    for rel in FILES:
        x, _ = load_audio(AUDIO / rel, sr=44100)
        parts.append(x.mean(0))
    x = np.concatenate(parts)[None]
    V = np.abs(stft(x, StftConfig(n_fft=4096, hop=512)))[0]
    return np.maximum(V, 1e-9).astype(np.float32)


def kl(V, W, H) -> float:
    Vt = torch.as_tensor(V, dtype=torch.float64)
    return beta_divergence(Vt, torch.as_tensor(W @ H, dtype=torch.float64).clamp_min(1e-12), 1.0)


def run_ours(V, W0, H0, iters, device, order="alternate", precision="float32"):
    dev = pick_device(device)
    Vb = split_frames(V, V.shape[1], dev)
    W = torch.as_tensor(W0.copy(), device=dev)
    H = [torch.as_tensor(H0.copy(), device=dev)]
    fit(Vb, W, H, NullContext(), beta=1.0, max_iter=3, tol=0.0, order=order,
        precision=precision)  # warm-up
    W = torch.as_tensor(W0.copy(), device=dev)
    H = [torch.as_tensor(H0.copy(), device=dev)]
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    fit(Vb, W, H, NullContext(), beta=1.0, max_iter=iters, tol=0.0, check_every=iters + 1,
        order=order, precision=precision)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / iters
    return dt, W.cpu().numpy(), H[0].cpu().numpy()


def run_sklearn(V, W0, H0, iters):
    from sklearn.decomposition import NMF
    from sklearn.exceptions import ConvergenceWarning

    model = NMF(n_components=W0.shape[1], init="custom", solver="mu",
                beta_loss="kullback-leibler", max_iter=iters, tol=0.0)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        W = model.fit_transform(V, W=W0.astype(np.float32).copy(), H=H0.astype(np.float32).copy())
    dt = (time.perf_counter() - t) / iters
    return dt, W, model.components_


def run_torchnmf(V, W0, H0, iters, device):
    from torchnmf.nmf import NMF as TNMF

    dev = pick_device(device)
    Vt = torch.as_tensor(V, device=dev)
    # torchnmf's model is V ≈ H Wᵀ: its H (rows of V, rank) is our W, its W our Hᵀ.
    model = TNMF(Vt.shape, rank=W0.shape[1]).to(dev)
    with torch.no_grad():
        model.H.copy_(torch.as_tensor(W0))
        model.W.copy_(torch.as_tensor(H0.T))
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    model.fit(Vt, beta=1, max_iter=iters, tol=0.0, verbose=False)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / iters
    return dt, model.H.detach().cpu().numpy(), model.W.detach().cpu().numpy().T


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--rank", type=int, default=40)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-sklearn", action="store_true")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(),
                    help="CPU threads for all three (torch and numpy's BLAS alike)")
    ap.add_argument("--long", type=float, default=0.0, metavar="MINUTES",
                    help="instead: time and peak memory of the NMF methods on MINUTES of "
                         "stereo, each alone in a fresh process (so each peak is its own)")
    ap.add_argument("--long-child", choices=LONG_METHODS, help=argparse.SUPPRESS)
    ap.add_argument("--long-set", action="append", default=[], metavar="KEY=VALUE",
                    help="with --long: a setting for the methods that have it (e.g. "
                         "long_window=false), as the CLI's --set")
    args = ap.parse_args()
    if args.long_child:
        long_child(args.long_child, args.long, args.device, args.long_set)
        return
    if args.long:
        long_inputs(args.long, args.device, args.long_set)
        return
    torch.set_num_threads(args.threads)
    V = spectrogram()
    F, T = V.shape
    rng = np.random.default_rng(0)
    scale = np.sqrt(V.mean() / args.rank)
    W0 = (rng.uniform(0.5, 1.5, (F, args.rank)) * scale).astype(np.float32)
    H0 = (rng.uniform(0.5, 1.5, (args.rank, T)) * scale).astype(np.float32)
    print(f"spectrogram {F} bins x {T} frames, rank {args.rank}, {args.iters} iterations, "
          f"torch threads {torch.get_num_threads()}, device {args.device}")
    init_obj = kl(V, W0, H0)
    dt_o, W, H = run_ours(V, W0, H0, args.iters, args.device)
    obj_o = kl(V, W, H)
    print(f"ours      {dt_o * 1e3:8.2f} ms/it   KL {obj_o:.6e}   (start {init_obj:.4e})")
    dt_j, W, H = run_ours(V, W0, H0, args.iters, args.device, order="joint")
    obj_j = kl(V, W, H)
    print(f"ours, EM  {dt_j * 1e3:8.2f} ms/it   KL {obj_j:.6e}   (order='joint')")
    # bfloat16 products (float32 sums and updates): what precision="auto" picks on a CPU
    # with native bfloat16 (elsewhere bfloat16 is emulated, and auto keeps float32).
    low = {}
    if pick_device(args.device).type == "cpu":
        native = "native" if native_bfloat16(pick_device(args.device)) else "emulated: slow here"
        auto = str(product_dtype("auto", pick_device(args.device))).replace("torch.", "")
        print(f"precision='auto' takes {auto} products here (bfloat16 where native and "
              f"timed at least {BFLOAT16_MARGIN:g}x faster)")
        for order in ("alternate", "joint"):
            dt, W, H = run_ours(V, W0, H0, args.iters, args.device, order=order,
                                precision="bfloat16")
            low[order] = (dt, kl(V, W, H))
            print(f"ours, bf16{' EM' if order == 'joint' else '   '} {dt * 1e3:5.2f} ms/it   "
                  f"KL {low[order][1]:.6e}   (order={order!r}, bfloat16 products, {native})")
    dt_t, W, H = run_torchnmf(V, W0, H0, args.iters, args.device)
    obj_t = kl(V, W, H)
    print(f"torchnmf  {dt_t * 1e3:8.2f} ms/it   KL {obj_t:.6e}")
    if not args.skip_sklearn:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(args.threads):
            dt_s, W, H = run_sklearn(V, W0, H0, args.iters)
        obj_s = kl(V, W, H)
        print(f"sklearn   {dt_s * 1e3:8.2f} ms/it   KL {obj_s:.6e}")
        print(f"speed-up vs scikit-learn: {dt_s / dt_o:.1f}x   KL ours/sklearn - 1 = "
              f"{(obj_o / obj_s - 1) * 100:+.3f} %")
        print(f"  joint EM order:         {dt_s / dt_j:.1f}x   KL ours/sklearn - 1 = "
              f"{(obj_j / obj_s - 1) * 100:+.3f} %")
        for order, (dt, obj) in low.items():
            print(f"  bfloat16 products, {order:9s} {dt_s / dt:.1f}x   KL ours/sklearn - 1 = "
                  f"{(obj / obj_s - 1) * 100:+.3f} %")
    print(f"speed-up vs torchnmf:     {dt_t / dt_o:.2f}x   KL ours/torchnmf - 1 = "
          f"{(obj_o / obj_t - 1) * 100:+.3f} %")
    print(f"  joint EM order:         {dt_t / dt_j:.2f}x")
    for order, (dt, _) in low.items():
        print(f"  bfloat16 products, {order:9s} {dt_t / dt:.2f}x")


LONG_METHODS = ("nmf", "nmf-paint", "nmf-supervised", "nmf-hum")


def long_child(method: str, minutes: float, device: str, settings: list[str] = ()) -> None:
    """``method`` (defaults, but for those of ``settings``, KEY=VALUE, that it has) on
    ``minutes`` of stereo at 44.1 kHz: vocals + bass of one song, tiled to the length;
    prints time and memory.

    The hints are what a user would give on a long file: 5 s examples (or a hum) of
    each source, or a few painted regions.
    """
    from _timing import memory_mb

    from demixstudio.separation import (
        AudioHint,
        Hints,
        PaintHint,
        get_method,
        make_params,
    )

    sr = 44100
    voc, _ = load_audio(AUDIO / "bearlin_roads/vocals.wav", sr=sr)
    bass, _ = load_audio(AUDIO / "bearlin_roads/bass.wav", sr=sr)
    n = int(minutes * 60 * sr)
    mix = np.empty((voc.shape[0], n), dtype=np.float32)
    song = (voc + bass).astype(np.float32)
    for a in range(0, n, song.shape[1]):  # tiled in place: no full-size temporary
        mix[:, a:a + song.shape[1]] = song[:, :n - a]
    ex = {"vocals": [AudioHint(voc[:, : 5 * sr], sr)], "bass": [AudioHint(bass[:, : 5 * sr], sr)]}
    hints = {
        "nmf": Hints(),
        "nmf-supervised": Hints(examples=ex),
        "nmf-hum": Hints(hums={"vocals": ex["vocals"]}),
        # A few strokes: over the voice's harmonics in two places, under the bass in one.
        "nmf-paint": Hints(paint={
            "vocals": PaintHint(rects=((8.0, 14.0, 500.0, 3000.0, 1.0),
                                       (60.0, 66.0, 500.0, 3000.0, 1.0))),
            "rest": PaintHint(rects=((8.0, 14.0, 30.0, 150.0, 1.0),))}),
    }[method]
    m = get_method(method)
    now = memory_mb()[0]
    t = time.perf_counter()
    own = {f.name for f in dataclasses.fields(m.Params)}
    chosen = {k: v for k, v in (kv.split("=", 1) for kv in settings) if k in own}
    params = make_params(m.Params, {"device": device}, chosen)
    props = m.separate(mix, sr, params, hints, NullContext())
    dt = time.perf_counter() - t
    peak = memory_mb()[1]
    mask_mb = sum(p.mask.nbytes for p in props) / 2**20
    gpu = (f", GPU peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MB"
           if torch.cuda.is_available() else "")
    print(f"{method:15s} {minutes:g} min stereo: {dt:6.1f} s, peak RSS {peak:6.0f} MB, "
          f"{peak - now:5.0f} MB above the RSS at the call ({now:.0f} MB; input "
          f"{mix.nbytes / 2**20:.0f} MB, returned masks {mask_mb:.0f} MB){gpu}", flush=True)


def long_inputs(minutes: float, device: str, settings: list[str] = ()) -> None:
    """Each method alone in a fresh process, so each peak resident size is its own."""
    import subprocess

    for method in LONG_METHODS:
        r = subprocess.run([sys.executable, __file__, "--long", str(minutes), "--device",
                            device, "--long-child", method]
                           + [a for kv in settings for a in ("--long-set", kv)],
                           capture_output=True, text=True,
                           check=False)
        print(r.stdout.strip() if r.returncode == 0
              else f"{method}: failed (exit {r.returncode}): {r.stderr[-400:]}", flush=True)


if __name__ == "__main__":
    main()
