"""Grouping NMF components into sources by clustering.

Components of one source share a timbre (similar spectral envelopes) or a
rhythm (activations that rise and fall together).

Three ways (``cluster_on``):

- ``spectra`` (the default): a second, small NMF (Spiertz & Gnann 2009, who put
  it in place of the MFCCs' decorrelating DCT). The templates' mel spectra,
  each scaled to unit sum, form a (mels, K) matrix that is factorised into one
  part per source, Euclidean, X ≈ A B with A (mels, sources) and B (sources,
  K); each component goes to the part that weighs most in it (the largest
  entry of its column of B). A source's templates are then explained as
  mixtures of the same few spectral shapes, where k-means asks them to lie
  near one centre: a source whose templates differ among themselves (a
  voice's vowels, a drum kit) can still be one part.
- ``mfcc``: k-means (k-means++ seeding from a fixed seed) on the templates'
  MFCCs (the cepstrum of the mel-warped log template, without c0, so level
  does not matter). The default until 2026-11-24.
- ``activations``: k-means on the activations' log envelopes (distance ~ 1 −
  correlation), for components that rise and fall together.

Measured on 2026-11-24 (``nmf`` with its defaults, 20 components, seeds 0–2
pooled, median SDR under the best permutation, on ``bench_nmf.py``'s four
sets: the four 7 s mixtures and the three held-out sets): ``spectra`` 6.18 /
2.16 / 6.89 / 3.72 dB against ``mfcc``'s 4.19 / 1.42 / 3.10 / 1.75; at
44.1 kHz, which was not used to choose, 6.02 / 1.70 / 7.38 / 3.13 against
4.62 / 0.94 / 4.33 / 1.17; at 8 kHz 6.48 / 2.14 / 6.51 / 2.85 against 2.79 /
2.71 / 4.40 / 2.99 (two sets lose there). Given to the source that truly holds
most of their energy, the same components would separate at 7.43 / 4.91 / 7.48 /
8.66 dB: the second held-out set is near that bound, two speakers are not. Two harmonic
instruments (cello and saxophone) still go either way with the start (their
first 4 s: 15.1 / 1.9 / 11.0 dB on the better one over seeds 0–2).
Also tried on the same factorisations (``benchmarks/NMF_NOTES.md``): the mel
spectra in KL (2.46 / 2.25 / 7.38 / 4.20; the best of 10 starts 5.95 / 2.26 /
7.38 / 5.28, where Euclidean hardly depends on the start), their logarithm as
an MFCC takes it (4.16 / 2.00 / 5.40 / 1.64), 20 or 80 mel bands, an NMF of the
activations (0.24 / 0.70 / 2.03 / 0.67), and spectral clustering of the
templates' similarity up to a pitch shift (2.40 / 2.52 / 7.31 / 6.06).
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


def mel_spectra(W: np.ndarray, sr: int, n_fft: int, n_mels: int = 40) -> np.ndarray:
    """Each template's mel spectrum, scaled to unit sum: float64 (n_mels, K)."""
    M = mel_filterbank(sr, n_fft, n_mels) @ (W / np.maximum(W.sum(0, keepdims=True), 1e-30))
    return M / np.maximum(M.sum(0, keepdims=True), 1e-30)


def nmf_clusters(X: np.ndarray, k: int, seed: int, *, restarts: int = 4,
                 max_iter: int = 1000, tol: float = 1e-7) -> np.ndarray:
    """Labels (n,) of the columns of ``X`` float (m, n) ≥ 0, by a k-part NMF.

    ``X ≈ A B`` in the Euclidean distance (Lee & Seung's multiplicative
    updates), A (m, k) with unit-sum columns, B (k, n); column j goes to
    ``argmax B[:, j]``. Of ``restarts`` random starts (from ``seed``) the one
    with the least distance is kept; it stops when the distance falls by less
    than ``tol`` (relative) over 10 updates. Every cluster is non-empty: an
    empty one takes the column that weighs most in it among those of a
    cluster with more than one.
    """
    m, n = X.shape
    if k < 1 or k > n:
        raise ParameterError(f"cannot make {k} groups from {n} components")
    X = np.asarray(X, dtype=np.float64)
    eps = 1e-30
    best, best_err = None, np.inf
    for r in range(max(1, restarts)):
        rng = np.random.default_rng([seed, r])
        A = rng.random((m, k)) + 0.1
        A /= A.sum(0, keepdims=True)
        B = rng.random((k, n)) * (X.sum(0).mean() or 1.0) + eps
        last = np.inf
        for it in range(max_iter):
            B *= (A.T @ X) / (A.T @ A @ B + eps)
            A *= (X @ B.T) / (A @ (B @ B.T) + eps)
            s = A.sum(0)
            A /= s + eps
            B *= s[:, None]
            if it % 10 == 9:
                err = float(np.square(X - A @ B).sum())
                if last - err <= tol * last:
                    break
                last = err
        err = float(np.square(X - A @ B).sum())
        if err < best_err:
            best, best_err = B, err
    labels = best.argmax(0)
    share = best / (best.sum(0, keepdims=True) + eps)
    for j in range(k):
        if not np.any(labels == j):
            sizes = np.bincount(labels, minlength=k)
            movable = sizes[labels] > 1
            labels[np.flatnonzero(movable)[share[j, movable].argmax()]] = j
    return labels


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
    """Group label (K,) of each component, groups numbered by decreasing energy.

    ``W`` float (bins, K) templates, ``H`` float (K, frames) activations; ``on``
    spectra, mfcc or activations (see the module's docstring)."""
    if on == "spectra":
        labels = nmf_clusters(mel_spectra(W, sr, n_fft), nb_groups, seed)
    elif on == "mfcc":
        labels = kmeans(template_features(W, sr, n_fft), nb_groups, seed)
    elif on == "activations":
        labels = kmeans(activation_features(H), nb_groups, seed)
    else:
        raise ParameterError(f"cluster_on={on!r} is not one of spectra, mfcc, activations")
    energy = np.array([H[labels == j].sum() for j in range(nb_groups)])
    order = np.argsort(-energy)
    remap = np.empty(nb_groups, dtype=int)
    remap[order] = np.arange(nb_groups)
    return remap[labels]
