"""MMDenseNet: multi-scale multi-band DenseNets (Takahashi & Mitsufuji, WASPAA 2017).

The magnitude spectrogram (channels as image channels, frequency × time as
the image) goes through three band-dedicated MDenseNets — one on the low
half of the bins, one on the high half, one on the full band — each a
U-shaped stack of dense blocks over three scales:

    3×3 conv (32) → DB → pool → DB → pool → DB → pool → DB
                 → up → [skip] DB → up → [skip] DB → up → [skip] DB

Down-sampling is 2×2 average pooling, up-sampling a 2×2 transposed
convolution; a dense block of ``L`` layers with growth rate ``k`` is ``L``
times (BN → ReLU → 3×3 conv with ``k`` outputs), each layer seeing the
concatenation of the block input and all earlier outputs. The low and high
band outputs are concatenated along frequency, that result with the full
band output along channels, and a final dense block and a 1×2 convolution
give one mask per target and channel. The estimate of a target is its mask
(sigmoid, in [0, 1]) times the mixture magnitude.

Growth rates and layer counts per band (``BAND_CONFIG``) follow Table 1 of
the paper: low band k=14, high band k=4, full band k=7, L=4 in every block of
each band, final block k=12, L=3. Dense blocks of the down path pass their
input on (so skips carry every feature); those of the bottom and up path
output only their new features, as in the fully convolutional DenseNets of
Jégou et al. 2017, which keeps the channel count bounded.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import torch
from torch import Tensor, nn

from demixstudio.errors import ParameterError
from demixstudio.separation.dnn.models.base import (MAX_N_FFT, SpectralModel, pad_to_multiple,
                                                     whole_number)

#: (growth rate k, layers L) of the seven dense blocks of each band (Table 1).
BAND_CONFIG: Dict[str, Tuple[int, int]] = {"low": (14, 4), "high": (4, 4), "full": (7, 4)}
FINAL_BLOCK: Tuple[int, int] = (12, 3)
FIRST_CHANNELS = 32
SCALES = 3  # down-sampling steps per band network
BAND_OUT = 32  # channels of each band network's output (1×1 projection)


class DenseBlock(nn.Module):
    """``layers`` × (BN → ReLU → 3×3 conv, ``growth`` channels), densely connected.

    Output: the input and every layer's output concatenated when
    ``keep_input``, else only the layers' outputs (``growth * layers`` channels).
    """

    def __init__(self, in_channels: int, growth: int, layers: int, keep_input: bool) -> None:
        super().__init__()
        self.keep_input = keep_input
        self.layers = nn.ModuleList()
        ch = in_channels
        for _ in range(layers):
            self.layers.append(nn.Sequential(
                nn.BatchNorm2d(ch), nn.ReLU(inplace=True),
                nn.Conv2d(ch, growth, kernel_size=3, padding=1, bias=False)))
            ch += growth
        self.out_channels = ch if keep_input else growth * layers

    def forward(self, x: Tensor) -> Tensor:
        feats: List[Tensor] = [x]
        for layer in self.layers:
            feats.append(layer(torch.cat(feats, 1) if len(feats) > 1 else x))
        return torch.cat(feats if self.keep_input else feats[1:], 1)


class MDenseNet(nn.Module):
    """One band's multi-scale DenseNet (U-shape over ``SCALES`` down-samplings)."""

    def __init__(self, in_channels: int, growth: int, layers: int) -> None:
        super().__init__()
        self.first = nn.Conv2d(in_channels, FIRST_CHANNELS, 3, padding=1, bias=False)
        self.down = nn.ModuleList()
        ch = FIRST_CHANNELS
        skips = []
        for _ in range(SCALES):
            block = DenseBlock(ch, growth, layers, keep_input=True)
            self.down.append(block)
            ch = block.out_channels
            skips.append(ch)
        self.pool = nn.AvgPool2d(2)
        self.bottom = DenseBlock(ch, growth, layers, keep_input=False)
        ch = self.bottom.out_channels
        self.ups = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for skip_ch in reversed(skips):
            self.ups.append(nn.ConvTranspose2d(ch, ch, kernel_size=2, stride=2))
            block = DenseBlock(ch + skip_ch, growth, layers, keep_input=False)
            self.up_blocks.append(block)
            ch = block.out_channels
        self.project = nn.Sequential(nn.BatchNorm2d(ch), nn.ReLU(inplace=True),
                                     nn.Conv2d(ch, BAND_OUT, 1))

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, F, T) with F and T multiples of 2**SCALES -> (B, BAND_OUT, F, T)."""
        x = self.first(x)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        for up, block, skip in zip(self.ups, self.up_blocks, reversed(skips)):
            x = block(torch.cat([up(x), skip], 1))
        return self.project(x)


class MMDenseNet(SpectralModel):
    """Multi-band MMDenseNet predicting a magnitude mask per target and channel.

    Parameters
    ----------
    targets, sample_rate, nb_channels : see ``StemModel``
    n_fft : STFT size (2048 in the paper at 44.1 kHz); hop = n_fft / 4
    """

    arch = "mmdensenet"

    def __init__(self, targets: Sequence[str] = ("vocals", "drums", "bass", "other"),
                 sample_rate: int = 44100, nb_channels: int = 2, n_fft: int = 2048) -> None:
        n_fft = whole_number("n_fft", n_fft, 64, MAX_N_FFT)
        if n_fft % 64:
            raise ParameterError(f"n_fft={n_fft} must be a multiple of 64 (two bands, "
                                 f"{SCALES} poolings)")
        super().__init__(targets, sample_rate, nb_channels, n_fft, n_fft // 4)
        # The network sees n_fft / 2 bins (the Nyquist bin is dropped and its
        # mask copied from its neighbour), split into two equal halves.
        self.net_bins = self.n_fft // 2
        c = self.nb_channels
        self.low = MDenseNet(c, *BAND_CONFIG["low"])
        self.high = MDenseNet(c, *BAND_CONFIG["high"])
        self.full = MDenseNet(c, *BAND_CONFIG["full"])
        self.final = DenseBlock(2 * BAND_OUT, *FINAL_BLOCK, keep_input=False)
        nb_out = len(self.targets) * c
        # 1×2 convolution (frequency × time) giving one mask per target and channel.
        self.out = nn.Sequential(nn.BatchNorm2d(self.final.out_channels), nn.ReLU(inplace=True),
                                 nn.ZeroPad2d((0, 1, 0, 0)),
                                 nn.Conv2d(self.final.out_channels, nb_out, kernel_size=(1, 2)))

    def hparams(self) -> Dict[str, Any]:
        return {"targets": list(self.targets), "sample_rate": self.sample_rate,
                "nb_channels": self.nb_channels, "n_fft": self.n_fft}

    def masks(self, mag: Tensor) -> Tensor:
        """(B, C, bins, frames) -> masks (B, J, C, bins, frames) in [0, 1]."""
        b, c, _, t = mag.shape
        x = torch.log1p(mag[:, :, :self.net_bins])  # compress the dynamic range
        x = pad_to_multiple(x, 2 ** SCALES, dim=-1)
        half = self.net_bins // 2
        bands = torch.cat([self.low(x[:, :, :half]), self.high(x[:, :, half:])], dim=2)
        y = self.final(torch.cat([bands, self.full(x)], dim=1))
        m = torch.sigmoid(self.out(y))[..., :t]
        m = torch.cat([m, m[:, :, -1:]], dim=2)  # the Nyquist bin takes its neighbour's mask
        return m.reshape(b, len(self.targets), c, m.shape[2], t)

    def estimate(self, mag: Tensor) -> Tensor:
        return self.masks(mag) * mag.unsqueeze(1)
