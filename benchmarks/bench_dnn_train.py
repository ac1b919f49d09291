"""Benchmark: a short real training run on the multitrack stems, one song held out.

The two songs of ``../shared/audio`` with true stems (bearlin_roads, 14 s;
easton_ellises_falcon69, 6 s; see SOURCES.md) are laid out as a MUSDB-style
folder in a temporary directory. ``demixstudio.separation.dnn.train`` trains
on bearlin_roads (random chunks, random re-mixing, gain and channel-swap
augmentation) and validates on easton_ellises_falcon69 after every epoch:
the global SDR of each target next to the SDR of the mixture used as the
estimate. Prints the curve; the run succeeds if at least one target ends
above its baseline.

Usage::

    python benchmarks/bench_dnn_train.py [--arch umx] [--epochs 8] [--steps 20]
        [--set hidden_size=128 ...] [--device auto]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from demixstudio.separation.dnn.train import TrainConfig, train  # noqa: E402

AUDIO = (REPO / ".." / "shared" / "audio").resolve()
SONGS = {"bearlin_roads": ("vocals", "drums", "bass", "piano", "other"),
         "easton_ellises_falcon69": ("vocals", "drums", "bass", "other")}
DEFAULTS = {"umx": {"hidden_size": 128, "nb_layers": 2},
            "mmdensenet": {"n_fft": 1024},
            "waveunet": {"layers": 8, "growth": 16}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="umx", choices=sorted(DEFAULTS))
    ap.add_argument("--targets", default="vocals,drums,bass,other")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--chunk-s", type=float, default=3.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", help="keep the model here (default: a temporary folder)")
    args = ap.parse_args()
    hp = dict(DEFAULTS[args.arch])
    for item in args.set:
        k, _, v = item.partition("=")
        try:
            hp[k] = json.loads(v)
        except ValueError:
            hp[k] = v
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        for song, stems in SONGS.items():
            (data / song).mkdir(parents=True)
            for s in stems:
                x, sr = sf.read(str(AUDIO / song / f"{s}.wav"), dtype="float32")
                sf.write(str(data / song / f"{s}.wav"), x, sr, subtype="FLOAT")
        out = Path(args.out) if args.out else Path(tmp) / "model"
        cfg = TrainConfig(data=data, arch=args.arch, targets=tuple(args.targets.split(",")),
                          out=out, epochs=args.epochs, steps_per_epoch=args.steps,
                          batch_size=args.batch_size, chunk_s=args.chunk_s, lr=args.lr,
                          valid_tracks=("easton_ellises_falcon69",), device=args.device,
                          hparams=hp)
        print(f"{args.arch} {hp}: train on bearlin_roads, validate on easton_ellises_falcon69")
        t0 = time.monotonic()
        res = train(cfg, log=lambda m: print(m, flush=True))
        total = time.monotonic() - t0
    targets = list(res.history[-1]["valid_sdr"])
    print("\ncurve (validation SDR in dB; mixture-as-estimate baseline in the last row)")
    print("epoch  loss      " + "".join(f"{t:>9}" for t in targets))
    for h in res.history:
        print(f"{h['epoch']:5d}  {h['train_loss']:<9.4g} "
              + "".join(f"{h['valid_sdr'][t]:9.2f}" for t in targets))
    base = res.history[-1]["baseline_sdr"]
    print("mix              " + "".join(f"{base[t]:9.2f}" for t in targets))
    best = res.history[res.best_epoch - 1]
    above = [t for t in targets if best["valid_sdr"][t] > base[t]]
    gains = ", ".join(f"{t} {best['valid_sdr'][t] - base[t]:+.2f} dB" for t in targets)
    print(f"\nbest epoch {res.best_epoch}: above the baseline for {above or 'no target'} "
          f"({gains}); {total:.0f} s in all, device {cfg.device}")
    return 0 if above else 1


if __name__ == "__main__":
    sys.exit(main())
