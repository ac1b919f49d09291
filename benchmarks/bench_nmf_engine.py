"""NMF engine speed against scikit-learn and torchnmf on one real spectrogram.

A real magnitude spectrogram (≥ 2000 bins × ≥ 2500 frames: 2049 × 5670, a
4096-point STFT of about 66 s of recordings from ../shared/audio at 44.1 kHz), rank 40, KL
divergence, multiplicative updates, the same random initialisation for all
three, 100 iterations each, the same number of CPU threads (``--threads``).
Ours runs twice: the default alternating order (scikit-learn's path) and the
joint EM order (three matrix products per iteration instead of four).
Prints seconds per iteration, the speed ratios and the KL objective each
reaches. With ``--long`` it measures instead the peak memory
of ``nmf-supervised`` on 10 minutes of stereo (block processing).

    .venv/bin/python benchmarks/bench_nmf_engine.py [--iters 100] [--device cpu] [--long]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import os

from demixstudio.audio.io import load_audio
from demixstudio.audio.stft import StftConfig, stft
from demixstudio.jobs.context import NullContext
from demixstudio.separation.nmf.engine import (
    beta_divergence,
    fit,
    pick_device,
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


def run_ours(V, W0, H0, iters, device, order="alternate"):
    dev = pick_device(device)
    Vb = split_frames(V, V.shape[1], dev)
    W = torch.as_tensor(W0.copy(), device=dev)
    H = [torch.as_tensor(H0.copy(), device=dev)]
    fit(Vb, W, H, NullContext(), beta=1.0, max_iter=3, tol=0.0, order=order)  # warm-up
    W = torch.as_tensor(W0.copy(), device=dev)
    H = [torch.as_tensor(H0.copy(), device=dev)]
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    fit(Vb, W, H, NullContext(), beta=1.0, max_iter=iters, tol=0.0, check_every=iters + 1,
        order=order)
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
    ap.add_argument("--long", action="store_true",
                    help="measure peak memory on 10 min stereo instead (alone in its process, "
                         "so the peak is its own)")
    args = ap.parse_args()
    if args.long:
        long_memory(args.device)
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
    print(f"speed-up vs torchnmf:     {dt_t / dt_o:.2f}x   KL ours/torchnmf - 1 = "
          f"{(obj_o / obj_t - 1) * 100:+.3f} %")
    print(f"  joint EM order:         {dt_t / dt_j:.2f}x")


def long_memory(device: str) -> None:
    """Peak RSS of nmf-supervised on 10 minutes of stereo at 44.1 kHz."""
    import resource

    from demixstudio.separation import AudioHint, Hints, get_method, make_params

    rng = np.random.default_rng(1)
    voc, _ = load_audio(AUDIO / "bearlin_roads/vocals.wav", sr=44100)
    bass, _ = load_audio(AUDIO / "bearlin_roads/bass.wav", sr=44100)
    n = 600 * 44100
    reps = -(-n // voc.shape[1])
    mix = np.tile(voc + bass, (1, reps))[:, :n].astype(np.float32)
    mix += 1e-4 * rng.standard_normal(mix.shape).astype(np.float32)
    hints = Hints(examples={"vocals": [AudioHint(voc[:, : 5 * 44100], 44100)],
                            "bass": [AudioHint(bass[:, : 5 * 44100], 44100)]})
    m = get_method("nmf-supervised")
    p = make_params(m.Params, {"device": device})
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    props = m.separate(mix, 44100, p, hints, NullContext())
    dt = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    mix_mb = mix.nbytes / 2**20
    mask_mb = sum(p.mask.nbytes for p in props) / 2**20
    print(f"10 min stereo: {dt:.1f} s, peak RSS {peak:.0f} MB (before: {base:.0f} MB; "
          f"mixture {mix_mb:.0f} MB, returned masks {mask_mb:.0f} MB)")


if __name__ == "__main__":
    main()
