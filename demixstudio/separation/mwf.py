"""Multichannel Wiener post-filter: EM on a local Gaussian model of the sources.

Every source image ``y_j(f, t)`` (a vector over the ``C`` channels) is modelled
as a zero-mean complex Gaussian with covariance ``v_j(f, t) R_j(f)``: a power
spectral density ``v_j`` (time-varying, one value per bin) times a spatial
covariance matrix ``R_j`` (time-invariant, ``C × C`` per frequency). Given
those, the minimum-mean-square estimate of each image from the mixture
``x = Σ_j y_j`` is the multichannel Wiener filter

    ŷ_j = v_j R_j (Σ_k v_k R_k)⁻¹ x,

and the posterior covariance is ``Σ_j = (I − G_j) v_j R_j`` with
``G_j = v_j R_j (Σ_k v_k R_k)⁻¹``. The parameters are re-estimated from the
posterior second moments ``Ĉ_j = ŷ_j ŷ_jᴴ + Σ_j`` (EM, Duong, Vincent &
Gribonval 2010; Nugraha, Liutkus & Vincent 2016):

    v_j(f, t) = tr Ĉ_j(f, t) / C,      R_j(f) = Σ_t Ĉ_j(f, t) / Σ_t v_j(f, t).

(The PSD update is the trace form used by Nugraha et al.'s open implementation
rather than ``tr(R_j⁻¹ Ĉ_j) / C``: it stays finite when a source's ``R_j`` is
nearly rank one, as it is for a panned source.)

The first M-step is taken from the initial estimates the caller gives (masked
mixtures, or a DNN's outputs), so ``iterations=1`` is the classic "one
Wiener pass" post-filter and more iterations refine the spatial model.

Memory: the statistics are accumulated over blocks of frames, so only
``(J, F, C, C)`` sums and one ``(J, F, T)`` float32 PSD array exist besides the
input and the output; nothing of size ``(J, C, C, F, T)`` is ever built. The
mixture's STFT may be an :class:`~demixstudio.audio.stft.AudioStft`, recomputed
from the audio block by block, and :func:`mask_layers` turns each block of
filtered images straight into waveforms, so a long file never has its STFT or
its images' STFTs in memory. The per-block work runs in torch on the device
given (CPU, CUDA).
"""

from __future__ import annotations

from typing import Callable, List, Optional, Union

import numpy as np
import torch

from demixstudio.audio.stft import AudioStft, OverlapAdd, stft_block
from demixstudio.errors import ParameterError
from demixstudio.jobs import memory
from demixstudio.jobs.context import JobContext, NullContext
from demixstudio.devices import pick_device

#: Default frames per block: with 4 stereo sources at 2049 bins this keeps the
#: block's temporaries to a few tens of MB.
FRAMES_PER_BLOCK = 256

#: Smallest eigenvalue of a spatial covariance, relative to its trace. A panned
#: source has a rank-one covariance; where it dominates a bin the mixture
#: covariance would be singular. The floor keeps it invertible (in float64)
#: and leaves the model otherwise untouched, so the posterior means still sum
#: to the mixture.
EIG_FLOOR = 1e-6


def resolve_device(device: "str | torch.device | None") -> torch.device:
    """``None``/``"auto"``: CUDA when available, else the CPU; otherwise that device, checked."""
    return pick_device(device, mps=False)


def _inverse(a: torch.Tensor) -> torch.Tensor:
    """Inverse of a batch of small Hermitian matrices (..., C, C).

    C = 1 and 2 in closed form: batched LAPACK calls on millions of 2×2 matrices
    cost far more than the four products of the adjugate formula.
    """
    c = a.shape[-1]
    if c == 1:
        return 1.0 / a
    if c == 2:
        a00, a01, a10, a11 = a[..., 0, 0], a[..., 0, 1], a[..., 1, 0], a[..., 1, 1]
        rdet = 1.0 / (a00 * a11 - a01 * a10)
        inv = torch.empty_like(a)
        torch.mul(a11, rdet, out=inv[..., 0, 0])
        torch.mul(a00, rdet, out=inv[..., 1, 1])
        torch.mul(a01, -rdet, out=inv[..., 0, 1])
        torch.mul(a10, -rdet, out=inv[..., 1, 0])
        return inv
    return torch.linalg.inv(a)


def _positive_definite(scm: torch.Tensor, eps: float) -> torch.Tensor:
    """Hermitian, positive-definite version of spatial covariances (..., C, C), complex128.

    The EM update subtracts the posterior's explained part from the sums
    (``R Σv − R (Σ v² Cx⁻¹) R``); rounding can leave a slightly negative
    eigenvalue there, and a covariance that is not positive makes the mixture
    model singular. Eigenvalues are floored at a small fraction of the trace.
    """
    scm = 0.5 * (scm + scm.conj().transpose(-1, -2))
    w, u = torch.linalg.eigh(scm)
    floor = EIG_FLOOR * w.sum(-1, keepdim=True).clamp_min(0.0) + eps
    w = torch.maximum(w, floor)
    return (u * w[..., None, :].to(u.dtype)) @ u.conj().transpose(-1, -2)


MixStft = Union[np.ndarray, AudioStft]
#: ``initial(t0, t1)``: initial source images of frames [t0, t1), (J, C, F, t1 − t0).
Initial = Callable[[int, int], np.ndarray]
#: ``sink(t0, t1, images)``: receives the posterior means of frames [t0, t1),
#: complex64 (J, C, F, t1 − t0), once per block, in order.
Sink = Callable[[int, int, np.ndarray], None]


def _check(mix_stft: MixStft, nb_sources: int, shape) -> None:
    if not isinstance(mix_stft, AudioStft) and (
            not isinstance(mix_stft, np.ndarray) or mix_stft.ndim != 3
            or not np.iscomplexobj(mix_stft)):
        raise ParameterError("mix_stft must be a complex array of shape (channels, bins, frames); "
                             f"got {getattr(mix_stft, 'shape', type(mix_stft).__name__)}")
    if nb_sources < 1:
        raise ParameterError("the post-filter needs at least one source estimate")
    if tuple(shape) != tuple(mix_stft.shape):
        raise ParameterError(f"source estimates have shape {tuple(shape)} per source; the "
                             f"mixture STFT has {tuple(mix_stft.shape)}")


def _em(mix_stft: MixStft, initial: Initial, nb_sources: int, *, iterations: int, eps: float,
        frames_per_block: int, device, ctx: JobContext, sink: Sink) -> None:
    """The EM loop, reading the mixture and the initial images block by block.

    ``mix_stft`` is an array or an :class:`AudioStft` (recomputed per block);
    the last iteration's posterior means go to ``sink`` block by block, so no
    array of the images' size is needed here: the full-length state is the
    (J, F, T) float32 PSDs.
    """
    if iterations < 1:
        raise ParameterError(f"iterations={iterations} must be at least 1")
    if frames_per_block < 1:
        raise ParameterError(f"frames_per_block={frames_per_block} must be at least 1")
    dev = resolve_device(device)
    c, nb_bins, nb_frames = mix_stft.shape
    j = nb_sources
    blocks = [(t0, min(t0 + frames_per_block, nb_frames))
              for t0 in range(0, nb_frames, frames_per_block)]
    total = len(blocks) * (iterations + 1)
    done = 0
    # PSDs of the current model, (J, F, T): refreshed after every E-step.
    memory.check_fits(j * nb_bins * nb_frames * 4,
                      f"the Wiener post-filter's spectra of {j} layers ({nb_bins} bins × "
                      f"{nb_frames} frames)", memory.FEWER_LAYERS)
    psd = np.empty((j, nb_bins, nb_frames), dtype=np.float32)

    # First M-step: statistics of the initial estimates.
    scm_sum = torch.zeros((j, nb_bins, c, c), dtype=torch.complex128, device=dev)
    power = 0.0
    for t0, t1 in blocks:
        ctx.progress(done, total, "Wiener post-filter: spatial statistics")
        done += 1
        y = torch.from_numpy(np.ascontiguousarray(initial(t0, t1), dtype=np.complex64)).to(dev)
        y = y.permute(0, 2, 3, 1)  # (J, F, b, C)
        v = (y.real ** 2 + y.imag ** 2).mean(-1)
        power += float(v.sum(dtype=torch.float64))
        psd[:, :, t0:t1] = v.cpu().numpy()
        scm_sum += torch.einsum("jfbc,jfbd->jfcd", y, y.conj()).to(torch.complex128)
    # The PSDs' floor is relative to their mean, so that a quiet file is filtered
    # as the same file louder (an absolute floor weighed more the quieter it was).
    mean = power / max(psd.size, 1)
    floor = eps * mean if mean > 0 else eps
    np.maximum(psd, np.float32(floor), out=psd)
    psd_sum = torch.from_numpy(psd.sum(-1, dtype=np.float64)).to(dev)

    for it in range(iterations):
        last = it == iterations - 1
        # Spatial covariances R_j(f), (J, F, C, C), kept in double precision:
        # the filter below cancels large terms along weak directions.
        scm = _positive_definite(scm_sum / (psd_sum[..., None, None] + floor), eps)
        if not last:
            scm_sq = scm @ scm                    # R_j R_j, for tr(R Cx⁻¹ R)
            scm_tr = torch.diagonal(scm, dim1=-2, dim2=-1).real.sum(-1).float()  # (J, F)
            new_scm_sum = torch.zeros_like(scm_sum)
            new_psd_sum = torch.zeros_like(psd_sum)
            # Σ_t v_j² Cx⁻¹, for the posterior covariance summed over time.
            weighted_inv = torch.zeros((j, nb_bins, c, c), dtype=torch.complex128, device=dev)
            used_psd_sum = torch.zeros_like(psd_sum)
        for t0, t1 in blocks:
            ctx.progress(done, total, f"Wiener post-filter: EM iteration {it + 1}/{iterations}")
            done += 1
            x = torch.from_numpy(np.ascontiguousarray(stft_block(mix_stft, t0, t1))).to(dev)
            x = x.to(torch.complex64).permute(1, 2, 0)  # (F, b, C)
            v = torch.from_numpy(psd[:, :, t0:t1]).to(dev)  # (J, F, b)
            # The mixture covariance is often ill-conditioned (sources with
            # nearly rank-one spatial covariances): build and invert it in
            # double precision, where float32 would lose the determinant.
            cov = torch.einsum("jfb,jfcd->fbcd", v.to(torch.complex128), scm)
            inv = _inverse(cov)  # (F, b, C, C), complex128
            # Cx⁻¹ x can be large along a weak direction of the model that R_j
            # then nearly cancels: keep the product in double precision too.
            z = torch.einsum("fbcd,fbd->fbc", inv, x.to(torch.complex128))
            y = torch.einsum("jfcd,fbd->jfbc", scm, z).to(torch.complex64)
            y = v[..., None] * y  # (J, F, b, C)
            if last:
                sink(t0, t1, y.permute(0, 3, 1, 2).cpu().numpy())
                continue
            # Posterior second moments Ĉ_j = ŷŷᴴ + v R − v² R Cx⁻¹ R, never
            # built per bin: only their traces and time sums are needed.
            quad = torch.einsum("fbcd,jfdc->jfb", inv, scm_sq).real.float()  # tr(Cx⁻¹ R R)
            post_tr = (v * scm_tr[..., None] - v ** 2 * quad).clamp_min(0.0)
            v_new = ((y.real ** 2 + y.imag ** 2).sum(-1) + post_tr) / c
            v_new = v_new.clamp_min(floor)
            new_scm_sum += torch.einsum("jfbc,jfbd->jfcd", y, y.conj()).to(torch.complex128)
            weighted_inv += torch.einsum("jfb,fbcd->jfcd", (v ** 2).to(torch.complex128), inv)
            used_psd_sum += v.sum(-1, dtype=torch.float64)
            new_psd_sum += v_new.sum(-1, dtype=torch.float64)
            # Last: on the CPU ``v`` is a view of ``psd``.
            psd[:, :, t0:t1] = v_new.cpu().numpy()
        if not last:
            # Σ_t (v R − v² R Cx⁻¹ R) = R Σ_t v − R (Σ_t v² Cx⁻¹) R
            scm_sum = (new_scm_sum + scm * used_psd_sum[..., None, None]
                       - scm @ weighted_inv @ scm)
            psd_sum = new_psd_sum
    ctx.progress(total, total, "Wiener post-filter")


def _into(out: np.ndarray) -> Sink:
    """A sink that stores the images in ``out`` (J, C, F, T)."""
    def put(t0: int, t1: int, y: np.ndarray) -> None:
        out[:, :, :, t0:t1] = y
    return put


def wiener_postfilter(mix_stft: np.ndarray, images: np.ndarray, iterations: int = 1,
                      eps: float = 1e-10, frames_per_block: int = FRAMES_PER_BLOCK, *,
                      device: "str | torch.device | None" = "cpu",
                      ctx: Optional[JobContext] = None, inplace: bool = False) -> np.ndarray:
    """Refine source-image estimates with the multichannel Wiener filter (EM).

    Parameters
    ----------
    mix_stft : np.ndarray [shape=(C, F, T), dtype=complex64]
        The mixture's STFT (``audio.stft`` convention), or an ``AudioStft``.
    images : np.ndarray [shape=(J, C, F, T), dtype=complex64]
        Initial source-image estimates (masked mixtures, a DNN's outputs).
    iterations : int ≥ 1
        EM iterations; 1 = estimate the model from ``images`` and filter once.
    eps : float
        Floor of the PSDs, relative to their mean over the input (so the filter
        does not depend on the level), and loading of the spatial covariances.
    frames_per_block : int
        Frames processed at once; bounds the temporaries.
    device : "cpu", "cuda", "auto", ...
    ctx : JobContext, for progress and cancel
    inplace : bool
        Write the result into ``images`` (saves one array of its size).

    Returns
    -------
    np.ndarray [shape=(J, C, F, T), dtype=complex64]
        The posterior means of the source images; they sum to the mixture.
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ParameterError(f"images must have shape (sources, channels, bins, frames); "
                             f"got {images.shape}")
    _check(mix_stft, images.shape[0], images.shape[1:])
    out = (images if inplace and images.dtype == np.complex64
           else np.empty(images.shape, dtype=np.complex64))
    _em(mix_stft, lambda t0, t1: images[:, :, :, t0:t1], images.shape[0],
        iterations=iterations, eps=eps, frames_per_block=frames_per_block,
        device=device, ctx=ctx or NullContext(), sink=_into(out))
    return out


def wiener_from_masks(mix_stft: np.ndarray, masks: np.ndarray, iterations: int = 1,
                      eps: float = 1e-10, frames_per_block: int = FRAMES_PER_BLOCK, *,
                      device: "str | torch.device | None" = "cpu",
                      ctx: Optional[JobContext] = None) -> np.ndarray:
    """:func:`wiener_postfilter` started from masks on the mixture.

    Parameters
    ----------
    mix_stft : np.ndarray [shape=(C, F, T), dtype=complex64]
    masks : np.ndarray [shape=(J, C or 1, F, T)], real weights
        The initial images are ``masks[j] * mix_stft``, formed block by block.

    Returns
    -------
    np.ndarray [shape=(J, C, F, T), dtype=complex64]
    """
    masks = _check_masks(mix_stft, masks)
    memory.check_fits(masks.shape[0] * int(np.prod(mix_stft.shape)) * 8,
                      f"the filtered images of {masks.shape[0]} layers", memory.FEWER_LAYERS)
    out = np.empty((masks.shape[0],) + tuple(mix_stft.shape), dtype=np.complex64)
    _em(mix_stft, _masked(mix_stft, lambda t0, t1: masks[:, :, :, t0:t1]), masks.shape[0],
        iterations=iterations, eps=eps, frames_per_block=frames_per_block, device=device,
        ctx=ctx or NullContext(), sink=_into(out))
    return out


def _check_masks(mix_stft: MixStft, masks: np.ndarray) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.ndim != 4 or masks.shape[1] not in (1, mix_stft.shape[0]):
        raise ParameterError(f"masks must have shape (sources, {mix_stft.shape[0]} or 1, bins, "
                             f"frames); got {masks.shape}")
    _check(mix_stft, masks.shape[0], (mix_stft.shape[0],) + masks.shape[2:])
    return masks


def _masked(mix_stft: MixStft, mask_block: Callable[[int, int], np.ndarray]) -> Initial:
    """Initial images ``mask * mixture`` of a block, from a function giving the masks' block."""
    return lambda t0, t1: mask_block(t0, t1) * stft_block(mix_stft, t0, t1)[None]


def mask_layers(method: str, params: dict, spec: MixStft,
                masks: "np.ndarray | Callable[[int, int], np.ndarray]",
                extras: list, *, length: int, cfg, iterations: int, device,
                ctx: JobContext) -> list:
    """Layer proposals from per-source masks, refined by the post-filter when asked.

    The common last step of the mask-based spatial methods (``duet``,
    ``adress``): with ``iterations == 0`` each mask is a layer (cheap to store,
    re-editable); otherwise the masks start the multichannel Wiener filter and
    each layer is the filtered image as a waveform. The filtered images are
    never held as spectrograms: each block of them goes straight into one
    overlap-add per source, so besides the masks the full-length arrays are the
    filter's (J, F, T) float32 PSDs and the output waveforms.

    Parameters
    ----------
    method : the method's registry name; params : its parameters as a dict
    spec : the mixture's STFT, complex64 (C, F, T): an array, or an
        :class:`AudioStft` computed block by block from the audio
    masks : float32 (J, 1 or C, F, T); with ``iterations > 0`` it may instead
        be a function ``masks(t0, t1)`` giving frames [t0, t1) of them, so that
        they are never held whole
    extras : J dicts, each layer's ``extra``
    length : samples of the mixture; cfg : the StftConfig of ``spec``
    iterations : EM iterations of the post-filter (0: none)
    device : its torch device; ctx : progress and cancel (stages 0.6–1.0 of
        the caller's range when filtering, 0.4–1.0 when the masks are a
        function, as the caller has no mask stage then)

    Returns
    -------
    list of LayerProposal named "source 1" … "source J"
    """
    from demixstudio.separation.base import LayerProposal

    nb = len(extras)
    if iterations == 0:
        if callable(masks):
            raise ParameterError("mask layers need the masks as an array")
        return [LayerProposal(name=f"source {i + 1}", method=method, params=params,
                              mask=masks[i], extra=extras[i]) for i in range(nb)]
    if callable(masks):
        _check(spec, nb, spec.shape)
        mask_block = masks
    else:
        whole = _check_masks(spec, masks)

        def mask_block(t0: int, t1: int) -> np.ndarray:
            return whole[:, :, :, t0:t1]
    with ctx.stage(0.4 if callable(masks) else 0.6, 1.0, "Wiener post-filter"):
        waves = wiener_waveforms(spec, _masked(spec, mask_block), nb, length=length, cfg=cfg,
                                 iterations=iterations, device=device, ctx=ctx)
    return [LayerProposal(name=f"source {i + 1}", method=method, params=params,
                          waveform=waves[i], extra=extras[i]) for i in range(nb)]


def wiener_waveforms(spec: MixStft, initial: Initial, nb_sources: int, *, length: int, cfg,
                     iterations: int, device, ctx: JobContext, eps: float = 1e-10,
                     frames_per_block: int = FRAMES_PER_BLOCK) -> List[np.ndarray]:
    """The post-filter from initial images given block by block, straight to waveforms.

    ``initial(t0, t1)`` gives the initial images of frames [t0, t1), complex
    (J, C, F, t1 − t0); each block of filtered images goes into one overlap-add
    per source, so no image spectrogram is held. Returns J float32 (C, length).
    """
    channels, _, frames = spec.shape
    olas = [OverlapAdd(channels, length, cfg, frames=frames) for _ in range(nb_sources)]

    def overlap_add(t0: int, t1: int, images: np.ndarray) -> None:
        for ola, image in zip(olas, images):
            ola.add_spectrum(t0, image)

    _em(spec, initial, nb_sources, iterations=iterations, eps=eps,
        frames_per_block=frames_per_block, device=device, ctx=ctx, sink=overlap_add)
    return [ola.result() for ola in olas]
