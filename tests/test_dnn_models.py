"""The three DNN architectures: shapes, and a few training steps on real stems lower the loss.

The stems are the true multitrack stems of ../shared/audio (bearlin_roads,
easton_ellises_falcon69; see SOURCES.md), resampled to 16 kHz and cut short
so that every architecture trains in seconds on a CPU.
"""

from __future__ import annotations

import functools
from math import gcd
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import shared
from scipy.signal import resample_poly

from demixstudio.errors import ParameterError
from demixstudio.separation.dnn.data import ChunkSampler, scan_tracks
from demixstudio.separation.dnn.models import build_model

SR = 16000
TARGETS = ("vocals", "drums", "bass")
SONGS = {"bearlin_roads": ("vocals", "drums", "bass", "piano", "other"),
         "easton_ellises_falcon69": ("vocals", "drums", "bass", "other")}

#: Small but complete versions of each architecture (the paper sizes are the defaults).
SMALL = {
    "mmdensenet": {"n_fft": 256},
    "umx": {"n_fft": 512, "hop": 128, "hidden_size": 32, "nb_layers": 1, "bandwidth": 8000},
    "waveunet": {"layers": 5, "growth": 8},
}


@functools.lru_cache(maxsize=None)
def stem(song: str, name: str, sr: int = SR) -> np.ndarray:
    """A shared stem, float32 (2, samples) at ``sr``."""
    x, rate = sf.read(str(shared(f"{song}/{name}.wav")), dtype="float32", always_2d=True)
    g = gcd(rate, sr)
    return resample_poly(x, sr // g, rate // g, axis=0).T.astype(np.float32)


def make_stem_folder(root: Path, seconds: float = 4.0, sr: int = SR) -> Path:
    """A MUSDB-style folder of the two shared songs (``seconds`` each) under ``root``."""
    for song, names in SONGS.items():
        d = root / song
        d.mkdir(parents=True, exist_ok=True)
        for name in names:
            x = stem(song, name, sr)
            start = min(x.shape[1] // 4, max(0, x.shape[1] - int(seconds * sr)))
            sf.write(str(d / f"{name}.wav"), x[:, start:start + int(seconds * sr)].T, sr,
                     subtype="FLOAT")
    return root


@pytest.mark.parametrize("arch", sorted(SMALL))
def test_shapes_any_length(arch):
    model = build_model(arch, {"targets": TARGETS, "sample_rate": SR, **SMALL[arch]}).eval()
    for n in (1000, 12345):
        with torch.no_grad():
            y = model.separate(torch.zeros(2, 2, n))
        assert y.shape == (2, len(TARGETS), 2, n)


@pytest.mark.parametrize("arch", sorted(SMALL))
def test_a_few_steps_lower_the_loss(arch, tmp_path):
    torch.manual_seed(0)
    tracks = scan_tracks(make_stem_folder(tmp_path, seconds=3.0))
    model = build_model(arch, {"targets": TARGETS, "sample_rate": SR, **SMALL[arch]})
    # MMDenseNet's dense blocks run at full time-frequency resolution, so its batch is the
    # smallest that still shows learning (it dominated the suite's CPU time otherwise).
    chunk, batch = (SR // 4, 2) if arch == "mmdensenet" else (SR // 2, 4)
    sampler = ChunkSampler(tracks, TARGETS, chunk, np.random.default_rng(1))
    x, y = (torch.from_numpy(a) for a in sampler.batch(batch))
    if arch == "umx":
        with torch.no_grad():
            model.prepare([model.stft(x).abs()])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(12):
        opt.zero_grad()
        loss = model.loss(x, y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.isfinite(losses).all()
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses


def test_mmdensenet_follows_table_1():
    from demixstudio.separation.dnn.models.mmdensenet import BAND_CONFIG, FINAL_BLOCK

    m = build_model("mmdensenet", {"targets": ("vocals",), "n_fft": 2048})
    assert BAND_CONFIG == {"low": (14, 4), "high": (4, 4), "full": (7, 4)}
    assert FINAL_BLOCK == (12, 3)
    # 3x3 convolutions in every dense layer, 2x2 pooling and transposed convolutions.
    convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert all(c.kernel_size in ((3, 3), (1, 1), (1, 2)) for c in convs)
    assert any(c.kernel_size == (1, 2) for c in convs)
    ups = [mod for mod in m.modules() if isinstance(mod, torch.nn.ConvTranspose2d)]
    assert len(ups) == 9 and all(u.kernel_size == (2, 2) and u.stride == (2, 2) for u in ups)


def test_bad_hyperparameters_are_named():
    with pytest.raises(ParameterError, match="n_fft"):
        build_model("mmdensenet", {"n_fft": 1000})
    with pytest.raises(ParameterError, match="architecture"):
        build_model("resnet", {})
    with pytest.raises(ParameterError, match="targets"):
        build_model("umx", {"targets": ("a", "a")})
