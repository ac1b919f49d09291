"""What every stem model offers: separation of a waveform batch and a training loss.

A model predicts ``J`` targets (``self.targets``) from a mixture of
``nb_channels`` channels at ``sample_rate`` Hz. Inference code calls
:meth:`StemModel.separate`; training code calls :meth:`StemModel.loss`.
:meth:`StemModel.hparams` returns the JSON-ready keyword arguments that rebuild
the model (``models.build_model(arch, hparams)``).

Spectrogram models (:class:`SpectralModel`) share one STFT front end in torch:
periodic Hann window, hop ``n_fft / 4``, centred frames (``torch.stft`` with
``center=True``), computed in float32 even under autocast.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence as SequenceABC
from typing import Any, ClassVar, Dict, List, Sequence

import torch
from torch import Tensor, nn

from demixstudio.errors import ParameterError
from demixstudio.values import whole

EPS = 1e-8


#: Sample rates a model may work at, in Hz (whole numbers only): below 8 kHz
#: nothing musical is left to separate, above 192 kHz no audio interface records.
MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 192000
#: The largest STFT a spectrogram model may use (Open-Unmix uses 4096). Sizes
#: are bounded because they come from JSON files a user may have edited, and
#: an absurd one would try to allocate the weights before anything else fails.
MAX_N_FFT = 16384
MAX_TARGETS = 32


def _show(value: Any) -> str:
    """``repr(value)``, shortened so that one bad value keeps the message on one line."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def whole_number(name: str, value: Any, lo: int, hi: int, unit: str = "") -> int:
    """``value`` as an int if it is a whole number in ``lo..hi``, else a ParameterError.

    Hyper-parameters come from manifests and checkpoint json files: a string,
    a bool, a fraction (22050.7 is not silently truncated) or an out-of-range
    size is refused here, with its name, before a tensor is sized from it.
    """
    n = whole(value)
    if n is None or not lo <= n <= hi:
        raise ParameterError(f"{name}={_show(value)} must be a whole number from {lo} to {hi}"
                             + (f" {unit}" if unit else ""))
    return n


def check_sample_rate(sample_rate: Any) -> int:
    """``sample_rate`` as an int: a whole number of Hz, ``MIN_SAMPLE_RATE..MAX_SAMPLE_RATE``."""
    return whole_number("sample_rate", sample_rate, MIN_SAMPLE_RATE, MAX_SAMPLE_RATE, "Hz")


def check_targets(targets: Any) -> List[str]:
    # A lone string is a sequence too; "vocals" must not become six one-letter targets.
    if isinstance(targets, (str, bytes)) or not isinstance(targets, SequenceABC) \
            or not all(isinstance(t, str) for t in targets):
        raise ParameterError(f"targets={_show(targets)} must be a list of names")
    names = [t.strip() for t in targets]
    if not names or any(not n for n in names) or len(set(names)) != len(names):
        raise ParameterError(f"targets={list(targets)!r} must be distinct, non-empty names")
    if len(names) > MAX_TARGETS:
        raise ParameterError(f"{len(names)} targets: a model predicts at most {MAX_TARGETS}")
    return names


class StemModel(nn.Module, abc.ABC):
    """Base of the separation networks.

    Attributes
    ----------
    arch : str, the registry name (``mmdensenet``, ``umx``, ``waveunet``)
    targets : list of str, the stems predicted, in output order
    sample_rate : int, Hz (a whole number, ``MIN_SAMPLE_RATE..MAX_SAMPLE_RATE``)
    nb_channels : int, input channels the network takes (1 or 2)
    """

    arch: ClassVar[str] = ""

    def __init__(self, targets: Sequence[str], sample_rate: int, nb_channels: int) -> None:
        super().__init__()
        self.targets = check_targets(targets)
        self.sample_rate = check_sample_rate(sample_rate)
        self.nb_channels = whole_number("nb_channels", nb_channels, 1, 2)

    @abc.abstractmethod
    def hparams(self) -> Dict[str, Any]:
        """Keyword arguments that rebuild this model (JSON-ready)."""

    @abc.abstractmethod
    def separate(self, mix: Tensor, *, wiener_iterations: int = 0) -> Tensor:
        """Separate a batch.

        Parameters
        ----------
        mix : Tensor [shape=(batch, nb_channels, nb_samples)], float32

        Returns
        -------
        stems : Tensor [shape=(batch, nb_targets, nb_channels, nb_samples)]
        """

    @abc.abstractmethod
    def loss(self, mix: Tensor, stems: Tensor) -> Tensor:
        """Training loss (a scalar) for ``mix`` (B, C, L) and true ``stems`` (B, J, C, L)."""

    def prepare(self, loader_batches) -> None:
        """Set data-dependent parts (input statistics) before training; default: nothing."""

    @property
    def context_samples(self) -> int:
        """Samples of context each side that a chunk needs to be unaffected by its edges."""
        return 0


class SpectralModel(StemModel):
    """A model that estimates target magnitudes from the mixture magnitude.

    Subclasses implement :meth:`estimate`; separation applies the estimates
    to the mixture STFT as ratio masks (mixture phase) or, with
    ``wiener_iterations > 0``, through the multichannel Wiener post-filter of
    ``demixstudio.separation.mwf``.
    """

    def __init__(self, targets: Sequence[str], sample_rate: int, nb_channels: int,
                 n_fft: int, hop: int) -> None:
        super().__init__(targets, sample_rate, nb_channels)
        n_fft = whole_number("n_fft", n_fft, 64, MAX_N_FFT)
        hop = whole_number("hop", hop, 1, n_fft)
        if n_fft % 2 or n_fft % hop:
            raise ParameterError(f"n_fft={n_fft}, hop={hop}: need an even n_fft ≥ 64 "
                                 "and a hop that divides it")
        self.n_fft = n_fft
        self.hop = hop
        # Not persistent: the window is not a weight and stays out of checkpoints.
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)

    @property
    def nb_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def context_samples(self) -> int:
        return self.n_fft

    def stft(self, x: Tensor) -> Tensor:
        """(B, C, L) float -> (B, C, bins, frames) complex64."""
        b, c, n = x.shape
        with torch.autocast(device_type=x.device.type, enabled=False):
            spec = torch.stft(x.reshape(b * c, n).float(), self.n_fft, self.hop,
                              window=self.window.to(x.device), center=True,
                              pad_mode="reflect" if n > self.n_fft // 2 else "constant",
                              return_complex=True)
        return spec.reshape(b, c, spec.shape[-2], spec.shape[-1])

    def istft(self, spec: Tensor, length: int) -> Tensor:
        """(..., bins, frames) complex -> (..., length) float32."""
        lead = spec.shape[:-2]
        flat = spec.reshape(-1, spec.shape[-2], spec.shape[-1])
        with torch.autocast(device_type=spec.device.type, enabled=False):
            y = torch.istft(flat, self.n_fft, self.hop, window=self.window.to(spec.device),
                            center=True, length=length)
        return y.reshape(*lead, length)

    @abc.abstractmethod
    def estimate(self, mag: Tensor) -> Tensor:
        """Target magnitudes (B, J, C', bins, frames) from mixture magnitudes (B, C, bins, frames).

        ``C'`` is ``C`` or 1 (a mono model on a stereo input estimates one
        magnitude shared by both channels).
        """

    def separate(self, mix: Tensor, *, wiener_iterations: int = 0) -> Tensor:
        spec = self.stft(mix)
        mag = spec.abs()
        est = self.estimate(mag).float()
        if wiener_iterations > 0:
            return self._wiener(spec, est, mix.shape[-1], wiener_iterations)
        # Ratio masks with the mixture phase: |Ŝ_j| / |X| applied to X.
        if est.shape[2] != mag.shape[1]:
            mag = mag.mean(1, keepdim=True)
        masks = est / (mag.unsqueeze(1) + EPS)
        return self.istft(masks * spec.unsqueeze(1), mix.shape[-1])

    def _wiener(self, spec: Tensor, est: Tensor, length: int, iterations: int) -> Tensor:
        """Multichannel Wiener post-filter (numpy, ``separation.mwf``) per batch item."""
        import numpy as np

        from demixstudio.separation.mwf import wiener_postfilter

        out = []
        c = spec.shape[1]
        for b in range(spec.shape[0]):
            x = spec[b].detach().cpu().numpy().astype(np.complex64)
            mag = np.abs(x)
            e = est[b].detach().cpu().numpy()
            if e.shape[1] != c:  # a mono estimate shared by the channels
                e = np.repeat(e, c, axis=1) * (mag / (mag.mean(0, keepdims=True) + EPS))[None]
            images = (e / (mag[None] + EPS)).astype(np.float32) * x[None]
            images = wiener_postfilter(x, images.astype(np.complex64), iterations=iterations)
            out.append(torch.from_numpy(np.ascontiguousarray(images)).to(spec.device))
        return self.istft(torch.stack(out), length)

    def loss(self, mix: Tensor, stems: Tensor) -> Tensor:
        """Mean squared error between estimated and true target magnitudes (as in Open-Unmix)."""
        mag = self.stft(mix).abs()
        b, j, c, n = stems.shape
        true = self.stft(stems.reshape(b, j * c, n)).abs().reshape(b, j, c, *mag.shape[-2:])
        est = self.estimate(mag)
        if est.shape[2] != c:
            true = true.mean(2, keepdim=True)
        return torch.nn.functional.mse_loss(est.float(), true)


def pad_to_multiple(x: Tensor, multiple: int, dim: int = -1) -> Tensor:
    """Zero-pad ``x`` at the end of ``dim`` to a multiple of ``multiple``."""
    n = x.shape[dim]
    extra = (-n) % multiple
    if not extra:
        return x
    shape = list(x.shape)
    shape[dim] = extra
    return torch.cat([x, x.new_zeros(shape)], dim=dim)

