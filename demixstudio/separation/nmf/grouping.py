"""Grouping NMF components into sources by clustering.

Components of one source share a timbre (similar spectral envelopes) or a
rhythm (activations that rise and fall together). Templates are compared by
their MFCCs (the cepstrum of the mel-warped log template, without c0, so level
does not matter); activations by the correlation of their log envelopes.
Clusters come from k-means with k-means++ seeding from a fixed seed.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from demixstudio.errors import ParameterError


def mel_filterbank(sr: int, n_fft: int, n_mels: int = 40) -> np.ndarray:
    """Triangular mel filters, float64 (n_mels, bins)."""
    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10 ** (np.asarray(m) / 2595.0) - 1.0)

    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2), n_mels + 2))
    fb = np.zeros((n_mels, freqs.size))
    for i in range(n_mels):
        lo, mid, hi = edges[i], edges[i + 1], edges[i + 2]
        up = (freqs - lo) / max(mid - lo, 1e-9)
        down = (hi - freqs) / max(hi - mid, 1e-9)
        fb[i] = np.maximum(0.0, np.minimum(up, down))
    return fb


def template_features(W: np.ndarray, sr: int, n_fft: int, n_mfcc: int = 13) -> np.ndarray:
    """MFCCs 1..n_mfcc of each template: float64 (K, n_mfcc)."""
    fb = mel_filterbank(sr, n_fft)
    mel = fb @ (W / W.sum(0, keepdims=True))
    logmel = np.log(mel + 1e-10)
    cep = scipy.fft.dct(logmel, type=2, norm="ortho", axis=0)
    return cep[1:n_mfcc + 1].T


def activation_features(H: np.ndarray) -> np.ndarray:
    """Standardised log activations (K, frames), so Euclidean distance ~ 1 − correlation."""
    L = np.log(H + H.mean() * 1e-3)
    L -= L.mean(1, keepdims=True)
    L /= np.linalg.norm(L, axis=1, keepdims=True) + 1e-12
    return L


def kmeans(X: np.ndarray, k: int, seed: int, iters: int = 100) -> np.ndarray:
    """Labels (n,) of k-means on the rows of X, k-means++ start; every cluster non-empty."""
    n = X.shape[0]
    if k < 1 or k > n:
        raise ParameterError(f"cannot make {k} groups from {n} components")
    rng = np.random.default_rng(seed)
    centres = [X[rng.integers(n)]]
    for _ in range(1, k):
        d = np.min([((X - c) ** 2).sum(1) for c in centres], axis=0)
        p = d / d.sum() if d.sum() > 0 else np.full(n, 1.0 / n)
        centres.append(X[rng.choice(n, p=p)])
    C = np.array(centres)
    labels = np.zeros(n, dtype=int)
    for _ in range(iters):
        d = ((X[:, None, :] - C[None]) ** 2).sum(-1)
        new = d.argmin(1)
        # An emptied cluster takes the point farthest from its centre.
        for j in range(k):
            if not np.any(new == j):
                far = d[np.arange(n), new].argmax()
                new[far] = j
        if np.array_equal(new, labels) and _ > 0:
            break
        labels = new
        C = np.array([X[labels == j].mean(0) for j in range(k)])
    return labels


def group_components(W: np.ndarray, H: np.ndarray, nb_groups: int, sr: int, n_fft: int, *,
                     on: str = "spectra", seed: int = 0) -> np.ndarray:
    """Group label (K,) of each component, groups numbered by decreasing energy."""
    if on == "spectra":
        feats = template_features(W, sr, n_fft)
    elif on == "activations":
        feats = activation_features(H)
    else:
        raise ParameterError(f"cluster_on={on!r} is not one of spectra, activations")
    labels = kmeans(feats, nb_groups, seed)
    energy = np.array([H[labels == j].sum() for j in range(nb_groups)])
    order = np.argsort(-energy)
    remap = np.empty(nb_groups, dtype=int)
    remap[order] = np.arange(nb_groups)
    return remap[labels]
