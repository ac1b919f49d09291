"""An Open-Unmix-compatible BLSTM spectrogram model (Stöter et al. 2019).

One network per target. Each :class:`UmxTargetNet` has exactly the parameter
names and shapes of Open-Unmix's published per-target model, so the
``<target>.pth`` state dicts that Open-Unmix's training writes (with their
``<target>.json`` and ``separator.json``) load here unchanged, and ours load
there:

``input_mean`` (max_bin), ``input_scale`` (max_bin) — stored as −mean and
1/std; ``fc1`` (hidden, max_bin·C, no bias); ``bn1``; ``lstm`` (3 layers,
bidirectional, hidden/2 units each way); ``fc2`` (hidden, 2·hidden); ``bn2``;
``fc3`` (nb_bins·C, hidden); ``bn3``; ``output_scale``, ``output_mean`` (nb_bins).

Forward (per frame, all channels together): crop to ``max_bin``, shift and
scale, fc1 → bn1 → tanh, BLSTM with a skip (concatenate input and output),
fc2 → bn2 → ReLU, fc3 → bn3, scale and shift per bin, ReLU, multiply with the
mixture magnitude: a non-negative estimate of the target magnitude.

The STFT is Open-Unmix's: ``n_fft`` 4096, hop 1024 at 44.1 kHz by default,
Hann window, centred frames with reflect padding.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from demixstudio.errors import ParameterError
from demixstudio.separation.dnn.models.base import SpectralModel, whole_number

#: Size limits (Open-Unmix uses 512 hidden units and 3 LSTM layers): a
#: checkpoint json asking for more is refused before the weights are allocated.
MAX_HIDDEN_SIZE = 2048
MAX_LAYERS = 8


def bandwidth_to_max_bin(sample_rate: float, n_fft: int, bandwidth: float) -> int:
    """Number of bins whose centre frequency is at most ``bandwidth`` Hz."""
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1, endpoint=True)
    return int(np.max(np.where(freqs <= bandwidth)[0]) + 1)


class UmxTargetNet(nn.Module):
    """One target's network, with Open-Unmix's parameter names.

    Parameters
    ----------
    nb_bins : int, output bins (n_fft // 2 + 1)
    nb_channels : int, 1 or 2
    hidden_size : int
    nb_layers : int, LSTM layers
    unidirectional : bool
    max_bin : int or None, input bins used (bandwidth limit)
    """

    def __init__(self, nb_bins: int, nb_channels: int, hidden_size: int = 512,
                 nb_layers: int = 3, unidirectional: bool = False,
                 max_bin: Optional[int] = None) -> None:
        super().__init__()
        self.nb_output_bins = int(nb_bins)
        self.nb_bins = int(max_bin) if max_bin else self.nb_output_bins
        self.hidden_size = int(hidden_size)
        self.nb_channels = int(nb_channels)
        self.fc1 = nn.Linear(self.nb_bins * nb_channels, hidden_size, bias=False)
        self.bn1 = nn.BatchNorm1d(hidden_size)
        lstm_hidden = hidden_size if unidirectional else hidden_size // 2
        self.lstm = nn.LSTM(input_size=hidden_size, hidden_size=lstm_hidden,
                            num_layers=nb_layers, bidirectional=not unidirectional,
                            batch_first=False, dropout=0.4 if nb_layers > 1 else 0.0)
        self.fc2 = nn.Linear(hidden_size * 2, hidden_size, bias=False)
        self.bn2 = nn.BatchNorm1d(hidden_size)
        self.fc3 = nn.Linear(hidden_size, self.nb_output_bins * nb_channels, bias=False)
        self.bn3 = nn.BatchNorm1d(self.nb_output_bins * nb_channels)
        # Stored as Open-Unmix stores them: the negated mean and the inverse scale.
        self.input_mean = nn.Parameter(torch.zeros(self.nb_bins))
        self.input_scale = nn.Parameter(torch.ones(self.nb_bins))
        self.output_scale = nn.Parameter(torch.ones(self.nb_output_bins))
        self.output_mean = nn.Parameter(torch.ones(self.nb_output_bins))

    def forward(self, mag: Tensor) -> Tensor:
        """(B, C, bins, frames) magnitudes -> (B, C, bins, frames) target magnitudes."""
        x = mag.permute(3, 0, 1, 2)  # (frames, B, C, bins): time first for the LSTM
        nb_frames, nb_batch, nb_channels, _ = x.shape
        mix = x
        x = (x[..., :self.nb_bins] + self.input_mean) * self.input_scale
        x = self.fc1(x.reshape(-1, nb_channels * self.nb_bins))
        x = torch.tanh(self.bn1(x).reshape(nb_frames, nb_batch, self.hidden_size))
        lstm_out, _ = self.lstm(x)
        x = torch.cat([x, lstm_out], -1)
        x = torch.relu(self.bn2(self.fc2(x.reshape(-1, x.shape[-1]))))
        x = self.bn3(self.fc3(x))
        x = x.reshape(nb_frames, nb_batch, nb_channels, self.nb_output_bins)
        x = x * self.output_scale + self.output_mean
        x = torch.relu(x) * mix
        return x.permute(1, 2, 3, 0)


class OpenUnmix(SpectralModel):
    """Open-Unmix: one :class:`UmxTargetNet` per target, in ``target_models``.

    Parameters
    ----------
    targets : names of the stems
    sample_rate : Hz (44100 for the published models)
    nb_channels : 1 or 2
    n_fft, hop : STFT (4096 / 1024 in Open-Unmix)
    hidden_size : 512 in Open-Unmix
    nb_layers : 3
    unidirectional : False
    bandwidth : Hz; input bins above it are dropped (16 kHz in Open-Unmix)
    max_bin : int or None; overrides ``bandwidth`` (set when importing)
    """

    arch = "umx"

    def __init__(self, targets: Sequence[str] = ("vocals", "drums", "bass", "other"),
                 sample_rate: int = 44100, nb_channels: int = 2, n_fft: int = 4096,
                 hop: int = 1024, hidden_size: int = 512, nb_layers: int = 3,
                 unidirectional: bool = False, bandwidth: float = 16000.0,
                 max_bin: Optional[int] = None) -> None:
        super().__init__(targets, sample_rate, nb_channels, n_fft, hop)
        if not isinstance(unidirectional, (bool, np.bool_)):
            raise ParameterError(f"unidirectional={unidirectional!r} must be true or false")
        self.unidirectional = bool(unidirectional)
        self.hidden_size = whole_number("hidden_size", hidden_size, 2, MAX_HIDDEN_SIZE)
        if self.hidden_size % 2 and not self.unidirectional:
            raise ParameterError(f"hidden_size={hidden_size} must be even for a bidirectional "
                                 "LSTM (half the units run each way)")
        self.nb_layers = whole_number("nb_layers", nb_layers, 1, MAX_LAYERS)
        if (isinstance(bandwidth, bool) or not isinstance(bandwidth, numbers.Real)
                or not math.isfinite(bandwidth) or bandwidth <= 0):
            raise ParameterError(f"bandwidth={bandwidth!r} must be a positive number of Hz")
        self.bandwidth = float(bandwidth)
        self.max_bin = (whole_number("max_bin", max_bin, 1, self.nb_bins) if max_bin
                        else bandwidth_to_max_bin(self.sample_rate, self.n_fft, self.bandwidth))
        self.target_models = nn.ModuleDict({
            t: UmxTargetNet(self.nb_bins, self.nb_channels, self.hidden_size, self.nb_layers,
                            self.unidirectional, self.max_bin) for t in self.targets})

    def hparams(self) -> Dict[str, Any]:
        return {"targets": list(self.targets), "sample_rate": self.sample_rate,
                "nb_channels": self.nb_channels, "n_fft": self.n_fft, "hop": self.hop,
                "hidden_size": self.hidden_size, "nb_layers": self.nb_layers,
                "unidirectional": self.unidirectional, "bandwidth": self.bandwidth,
                "max_bin": self.max_bin}

    def estimate(self, mag: Tensor) -> Tensor:
        if self.nb_channels == 1 and mag.shape[1] != 1:
            mag = mag.mean(1, keepdim=True)  # downmix in the magnitude domain, as Open-Unmix
        return torch.stack([self.target_models[t](mag) for t in self.targets], dim=1)

    def prepare(self, mags) -> None:
        """Set ``input_mean``/``input_scale`` from training magnitudes, as Open-Unmix's trainer.

        ``mags`` yields mixture magnitudes (B, C, bins, frames); channels are
        averaged; the scale is floored at 1e-4 of its largest value.
        """
        total = None
        count = 0
        for m in mags:
            v = m.mean(1).permute(0, 2, 1).reshape(-1, m.shape[2])[:, :self.max_bin]
            # A batch's sums on its device, accumulated over batches in float64 on the
            # CPU (Apple's MPS has no float64).
            s = torch.stack([v.sum(0), (v * v).sum(0)]).cpu().double()
            total = s if total is None else total + s
            count += v.shape[0]
        if not count:
            return
        mean = total[0] / count
        std = torch.sqrt(torch.clamp(total[1] / count - mean * mean, min=0.0))
        std = torch.maximum(std, 1e-4 * std.max())
        with torch.no_grad():
            for net in self.target_models.values():
                net.input_mean.copy_(-mean.float())
                net.input_scale.copy_(1.0 / std.float())
