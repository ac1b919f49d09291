"""Wave-U-Net (Stoller, Ewert & Dixon, ISMIR 2018): separation in the waveform domain.

A one-dimensional U-Net on the raw mixture:

- ``layers`` down-sampling blocks: 1-D convolution (kernel 15, ``growth · i``
  filters at level ``i``), LeakyReLU, keep the features for the skip, then
  decimate by 2 (drop every other time step);
- a bottom convolution (kernel 15, ``growth · (layers + 1)`` filters);
- ``layers`` up-sampling blocks: linear interpolation ×2, concatenate the
  skip of the same level, 1-D convolution (kernel 5), LeakyReLU;
- concatenate the mixture itself and map with a 1×1 convolution to one
  waveform per target and channel, through tanh.

The paper's defaults are 12 levels and 24 extra filters per level, with
15/5 kernels. Its best variant uses unpadded ("valid") convolutions and a
larger input than output so that no output sample sees the zero padding; here
the convolutions are zero-padded to keep the length, and the chunked
inference supplies the missing context instead (``context_samples`` extra
samples on each side of every chunk, cut off afterwards).
"""

from __future__ import annotations

from typing import Any, Dict, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from demixstudio.separation.dnn.models.base import StemModel, pad_to_multiple, whole_number

DOWN_KERNEL = 15
UP_KERNEL = 5
MAX_LAYERS = 16
#: Filters added per level at most (the paper uses 24): 16 levels of 64 are
#: already some 160 million weights.
MAX_GROWTH = 64


class WaveUNet(StemModel):
    """Wave-U-Net.

    Parameters
    ----------
    targets, sample_rate, nb_channels : see ``StemModel``
    layers : int, down-sampling levels (12 in the paper; at most ``MAX_LAYERS``)
    growth : int, filters added per level (24 in the paper; at most ``MAX_GROWTH``)
    """

    arch = "waveunet"

    def __init__(self, targets: Sequence[str] = ("vocals", "drums", "bass", "other"),
                 sample_rate: int = 22050, nb_channels: int = 2, layers: int = 12,
                 growth: int = 24) -> None:
        super().__init__(targets, sample_rate, nb_channels)
        self.layers = whole_number("layers", layers, 1, MAX_LAYERS)
        self.growth = whole_number("growth", growth, 1, MAX_GROWTH)
        c = self.nb_channels
        self.down = nn.ModuleList()
        ch = c
        for i in range(1, self.layers + 1):
            self.down.append(nn.Conv1d(ch, growth * i, DOWN_KERNEL, padding=DOWN_KERNEL // 2))
            ch = growth * i
        self.bottom = nn.Conv1d(ch, growth * (self.layers + 1), DOWN_KERNEL,
                                padding=DOWN_KERNEL // 2)
        ch = growth * (self.layers + 1)
        self.up = nn.ModuleList()
        for i in range(self.layers, 0, -1):
            self.up.append(nn.Conv1d(ch + growth * i, growth * i, UP_KERNEL,
                                     padding=UP_KERNEL // 2))
            ch = growth * i
        self.out = nn.Conv1d(ch + c, len(self.targets) * c, 1)

    def hparams(self) -> Dict[str, Any]:
        return {"targets": list(self.targets), "sample_rate": self.sample_rate,
                "nb_channels": self.nb_channels, "layers": self.layers, "growth": self.growth}

    @property
    def context_samples(self) -> int:
        # Receptive field of the down path, in input samples: at level i the
        # kernel reach of 7 steps is 2**(i-1) input samples each.
        return (DOWN_KERNEL // 2) * (2 ** (self.layers + 1))

    def forward(self, mix: Tensor) -> Tensor:
        """(B, C, L) -> (B, J, C, L)."""
        b, c, n = mix.shape
        x0 = pad_to_multiple(mix, 2 ** self.layers)
        x = x0
        skips = []
        for conv in self.down:
            x = F.leaky_relu(conv(x), 0.2)
            skips.append(x)
            x = x[..., ::2]
        x = F.leaky_relu(self.bottom(x), 0.2)
        for conv, skip in zip(self.up, reversed(skips)):
            x = F.interpolate(x, size=skip.shape[-1], mode="linear", align_corners=True)
            x = F.leaky_relu(conv(torch.cat([x, skip], 1)), 0.2)
        y = torch.tanh(self.out(torch.cat([x, x0], 1)))[..., :n]
        return y.reshape(b, len(self.targets), c, n)

    def separate(self, mix: Tensor, *, wiener_iterations: int = 0) -> Tensor:
        return self(mix)

    def loss(self, mix: Tensor, stems: Tensor) -> Tensor:
        """Mean squared error on the waveforms, as in the paper."""
        return F.mse_loss(self(mix).float(), stems)
