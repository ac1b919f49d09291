"""Training a stem model on a MUSDB18-style folder, with validation, checkpoints and resume.

Each epoch: ``steps_per_epoch`` Adam steps on random re-mixed chunks
(``data.ChunkSampler``), then a validation pass that separates every
held-out track in full with the chunked inference and scores each target
by its SDR, ``10 log10(Σ s² / Σ (s − ŝ)²)`` over the whole track (the
"global" SDR of the Music Demixing challenge), next to the same score of the
mixture used as the estimate (the baseline a useful model must beat).

Written to ``out``:

- ``checkpoint.pt``: weights, optimizer, epoch and history, to resume
  (read back with ``torch.load(weights_only=True)``);
- ``manifest.json`` + ``model.safetensors``: the best epoch so far (highest
  mean validation SDR; lowest training loss without validation), ready for
  ``demixstudio models import``;
- ``open-unmix/`` for ``umx``: the same model in Open-Unmix's layout;
- ``history.json``: one record per epoch.

The random stream of epoch ``e`` is seeded with ``(seed, e)``, so a resumed
run draws the same examples as an uninterrupted one.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from demixstudio.audio.atomic import atomic_path
from demixstudio.errors import ParameterError
from demixstudio.jobs.context import JobContext, NullContext
from demixstudio.separation.dnn import data as dnn_data
from demixstudio.separation.dnn.inference import pick_device, separate_array
from demixstudio.separation.dnn.models import ARCHITECTURES, StemModel, build_model
from demixstudio.separation.dnn.models.umx import OpenUnmix
from demixstudio.separation.dnn.store import export_open_unmix, save_model

CHECKPOINT = "checkpoint.pt"
#: Hyper-parameters the data (and --targets) determine; ``--set`` may not override them.
DATA_HPARAMS = {"targets": "--targets", "sample_rate": "the sample rate of the stems",
                "nb_channels": "the channels of the stems"}


@dataclass
class TrainConfig:
    """What ``demixstudio train`` takes (see the CLI help for each field)."""

    data: Path
    arch: str
    targets: Sequence[str]
    out: Path
    epochs: int = 10
    steps_per_epoch: int = 100
    batch_size: int = 8
    chunk_s: float = 3.0
    lr: float = 1e-3
    weight_decay: float = 1e-5
    valid_tracks: Sequence[str] = ()
    seed: int = 42
    device: str = "auto"
    hparams: Dict[str, Any] = field(default_factory=dict)
    resume: bool = False
    augment: bool = True
    valid_chunk_s: float = 20.0

    def check(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ParameterError(f"--arch {self.arch!r}: use one of {', '.join(ARCHITECTURES)}")
        for name, v, lo in (("epochs", self.epochs, 1), ("steps", self.steps_per_epoch, 1),
                            ("batch-size", self.batch_size, 1)):
            if int(v) < lo:
                raise ParameterError(f"--{name} {v} must be at least {lo}")
        if not self.chunk_s > 0 or not self.lr > 0:
            raise ParameterError(f"--chunk-s {self.chunk_s} and --lr {self.lr} must be positive")
        fixed = [k for k in DATA_HPARAMS if k in self.hparams]
        if fixed:
            raise ParameterError("--set " + ", ".join(fixed) + ": set by the training data, not "
                                 "by --set (" + "; ".join(f"{k} comes from {DATA_HPARAMS[k]}"
                                                          for k in fixed) + ")")


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Global SDR in dB: ``10 log10(Σ s² / Σ (s − ŝ)²)`` (a small floor keeps it finite)."""
    ref = np.asarray(reference, dtype=np.float64)
    err = ref - np.asarray(estimate, dtype=np.float64)
    return float(10 * np.log10((np.sum(ref ** 2) + 1e-10) / (np.sum(err ** 2) + 1e-10)))


@dataclass
class TrainResult:
    history: List[Dict[str, Any]]
    best_epoch: int
    out: Path

    @property
    def model_written(self) -> bool:
        """Whether ``out`` holds a model (``manifest.json`` + weights) to import."""
        return self.best_epoch > 0 and (self.out / "manifest.json").is_file()


def _check_validation(valid_tracks, targets: Sequence[str]) -> List[str]:
    """Refuse held-out tracks that cannot score any target; the targets they cannot score.

    A target is scored on a held-out track only where that track has the stem
    and it is not silent; with no target scored the validation SDR would be
    undefined and no epoch could be chosen as the best.
    """
    scored = set()
    for tr in valid_tracks:
        present = [t for t in targets if t in tr.stems]
        if present:
            _, stems = dnn_data.load_track(tr, present)
            scored.update(t for t, x in zip(present, stems) if np.any(x))
    if not scored:
        names = ", ".join(tr.name for tr in valid_tracks)
        raise ParameterError(
            f"the held-out validation track(s) {names} have no {' or '.join(targets)} stem "
            "(or only silent ones), so no epoch could be scored and no model written; "
            "hold out a track that has one with --valid TRACK")
    return [t for t in targets if t not in scored]


def _validate(model: StemModel, tracks, targets, device, chunk_s) -> Dict[str, Dict[str, float]]:
    """Mean over held-out tracks of each target's SDR, and of the mixture-as-estimate baseline."""
    scores: Dict[str, List[float]] = {t: [] for t in targets}
    base: Dict[str, List[float]] = {t: [] for t in targets}
    for tr in tracks:
        mix, stems = dnn_data.load_track(tr, targets)
        est = separate_array(model, mix, device=device, chunk_s=chunk_s).stems
        for j, t in enumerate(targets):
            if np.any(stems[j]):
                scores[t].append(sdr(stems[j], est[j]))
                base[t].append(sdr(stems[j], mix))
    return {"valid_sdr": {t: float(np.mean(v)) for t, v in scores.items() if v},
            "baseline_sdr": {t: float(np.mean(v)) for t, v in base.items() if v}}


def train(cfg: TrainConfig, ctx: Optional[JobContext] = None,
          log: Optional[Callable[[str], None]] = None) -> TrainResult:
    """Train (or resume training) as configured; returns the per-epoch history."""
    ctx = ctx or NullContext()
    log = log or (lambda _msg: None)
    cfg.check()
    targets = list(cfg.targets)
    tracks = dnn_data.scan_tracks(Path(cfg.data))
    train_tracks, valid_tracks = dnn_data.split_tracks(tracks, cfg.valid_tracks)
    sr, channels = tracks[0].sr, tracks[0].channels
    if valid_tracks:
        unscored = _check_validation(valid_tracks, targets)
        if unscored:
            log(f"note: the validation track(s) have no {', '.join(unscored)} stem; "
                "the best epoch is chosen by the other targets")
    dev = pick_device(cfg.device)
    # Stems with more channels are fed to the model one channel at a time (see ChunkSampler).
    hp = {**dict(cfg.hparams), "targets": targets, "sample_rate": sr,
          "nb_channels": min(channels, dnn_data.MODEL_CHANNELS)}
    model = build_model(cfg.arch, hp).to(dev)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    chunk = int(round(cfg.chunk_s * sr))

    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    use_amp = dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    history: List[Dict[str, Any]] = []
    best_score, best_epoch, first_epoch = -np.inf, 0, 1
    ckpt_path = out / CHECKPOINT
    if cfg.resume and ckpt_path.is_file():
        ck = torch.load(str(ckpt_path), map_location=dev, weights_only=True)
        if ck.get("arch") != cfg.arch or ck.get("hparams_json") != json.dumps(hp, sort_keys=True):
            raise ParameterError(f"{ckpt_path} was written for another model "
                                 f"({ck.get('arch')}); start a new --out folder")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        history = json.loads(ck["history_json"])
        best_score, best_epoch = float(ck["best_score"]), int(ck["best_epoch"])
        first_epoch = int(ck["epoch"]) + 1
        log(f"resuming after epoch {first_epoch - 1}")
    elif isinstance(model, OpenUnmix):
        # Input statistics from the training data, as Open-Unmix's trainer does.
        stats_rng = np.random.default_rng([cfg.seed, 0])
        sampler = dnn_data.ChunkSampler(train_tracks, targets, chunk, stats_rng, augment=False)
        with torch.no_grad():
            model.prepare(model.stft(torch.from_numpy(sampler.batch(cfg.batch_size)[0]).to(dev)
                                     ).abs() for _ in range(4))

    baseline = None
    total = cfg.epochs * cfg.steps_per_epoch
    for epoch in range(first_epoch, cfg.epochs + 1):
        t0 = time.monotonic()
        rng = np.random.default_rng([cfg.seed, epoch])
        sampler = dnn_data.ChunkSampler(train_tracks, targets, chunk, rng, augment=cfg.augment)
        model.train()
        losses = []
        for step in range(cfg.steps_per_epoch):
            x, y = sampler.batch(cfg.batch_size)
            x_t, y_t = torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=use_amp):
                loss = model.loss(x_t, y_t)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            scaler.step(opt)
            scaler.update()
            losses.append(float(loss.detach()))
            done = (epoch - 1) * cfg.steps_per_epoch + step + 1
            ctx.progress(done, total, f"epoch {epoch}/{cfg.epochs}, loss {np.mean(losses):.4g}")
        record: Dict[str, Any] = {"epoch": epoch, "train_loss": float(np.mean(losses))}
        if valid_tracks:
            model.eval()
            v = _validate(model, valid_tracks, targets, dev.type, cfg.valid_chunk_s)
            baseline = baseline or v["baseline_sdr"]
            record.update(valid_sdr=v["valid_sdr"], baseline_sdr=baseline)
            # No target scored (cannot happen after _check_validation): never "best".
            score = (float(np.mean(list(v["valid_sdr"].values()))) if v["valid_sdr"]
                     else -np.inf)
        else:
            score = -record["train_loss"]
        record["seconds"] = round(time.monotonic() - t0, 2)
        history.append(record)
        if score > best_score:
            best_score, best_epoch = score, epoch
            model.eval()
            save_model(model, out, extra={"epoch": epoch, "history": history})
            if isinstance(model, OpenUnmix):
                export_open_unmix(model, out / "open-unmix", history={
                    "epochs_trained": epoch, "best_epoch": best_epoch,
                    "train_loss_history": [h["train_loss"] for h in history]})
        with atomic_path(ckpt_path) as tmp:
            torch.save({"arch": cfg.arch, "hparams_json": json.dumps(hp, sort_keys=True),
                        "model": model.state_dict(), "optimizer": opt.state_dict(),
                        "epoch": epoch, "history_json": json.dumps(history),
                        "best_score": float(best_score), "best_epoch": best_epoch}, str(tmp))
        with atomic_path(out / "history.json") as tmp:
            tmp.write_text(json.dumps(history, indent=2), encoding="utf-8")
        log(_describe(record))
    return TrainResult(history, best_epoch, out)


def _describe(r: Dict[str, Any]) -> str:
    text = f"epoch {r['epoch']}: loss {r['train_loss']:.4g}"
    if "valid_sdr" in r:
        text += "; valid SDR " + ", ".join(
            f"{t} {v:.2f} (mix {r['baseline_sdr'].get(t, float('nan')):.2f})"
            for t, v in r["valid_sdr"].items())
    return text + f" [{r['seconds']:.0f} s]"
