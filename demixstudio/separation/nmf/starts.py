"""Starting factors for learning a dictionary: NNDSVDa.

Nonnegative double singular value decomposition (Boutsidis & Gallopoulos 2008):
each of the ``rank`` leading singular pairs of ``V`` is split into its positive
and negative parts, and the pair whose parts carry more of the singular value
becomes one template and its activations. The "a" variant fills the zeros with
the mean of ``V``, since multiplicative updates never move a zero. The start
hardly depends on the seed (only the randomised SVD's draws do), and it puts the
templates along the directions that carry the example's energy rather than anywhere:
on a short example whose dictionary from a random start memorises its frames (a
frame drum's 1.5 s stroke, ``benchmarks/NMF_NOTES.md``, session 71), that is what
generalises.

The leading singular vectors come from a randomised range finder with a few power
iterations (Halko, Martinsson & Tropp 2011), so an example of thousands of frames
with stacked three-frame patches (thousands of rows) costs a few products of ``V``
with a thin matrix, not a full SVD.
"""

from __future__ import annotations

import numpy as np

#: The starts :func:`spectra.learn_dictionary` knows: random templates, or NNDSVDa.
STARTS = ("random", "nndsvda")

#: Columns beyond the rank in the range finder, and its power iterations: enough for
#: the leading vectors of a spectrogram, whose singular values fall off fast.
OVERSAMPLE = 10
POWER_ITERATIONS = 3


def leading_singular(V: np.ndarray, rank: int, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``rank`` leading singular triplets of ``V`` float32 (rows, cols):
    U float32 (rows, r), s float32 (r,), Vt float32 (r, cols), r = min(rank, rows, cols)."""
    rows, cols = V.shape
    r = min(rank, rows, cols)
    q = min(r + OVERSAMPLE, rows, cols)
    rng = np.random.default_rng(seed)
    Y = V @ rng.standard_normal((cols, q)).astype(np.float32)
    Q, _ = np.linalg.qr(Y)
    for _ in range(POWER_ITERATIONS):  # re-orthonormalised each time, for float32
        Q, _ = np.linalg.qr(V.T @ Q)
        Q, _ = np.linalg.qr(V @ Q)
    Ub, s, Vt = np.linalg.svd((Q.T @ V).astype(np.float64), full_matrices=False)
    U = (Q.astype(np.float64) @ Ub[:, :r]).astype(np.float32)
    return U, s[:r].astype(np.float32), Vt[:r].astype(np.float32)


def nndsvda(V: np.ndarray, rank: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """NNDSVDa start of ``V`` float32 (rows, cols), nonnegative: W float32 (rows, rank),
    H float32 (rank, cols), with W H ≈ V and no zeros. Components beyond V's rank
    (more than its rows or columns) start at the mean."""
    rows, cols = V.shape
    U, s, Vt = leading_singular(V, rank, seed)
    W = np.zeros((rows, rank), dtype=np.float32)
    H = np.zeros((rank, cols), dtype=np.float32)
    for j in range(len(s)):
        x, y = U[:, j], Vt[j]
        if j == 0:  # the leading pair of a nonnegative matrix has one sign
            W[:, 0] = np.sqrt(s[0]) * np.abs(x)
            H[0] = np.sqrt(s[0]) * np.abs(y)
            continue
        xp, xn = np.maximum(x, 0), np.maximum(-x, 0)
        yp, yn = np.maximum(y, 0), np.maximum(-y, 0)
        pos = np.linalg.norm(xp) * np.linalg.norm(yp)
        neg = np.linalg.norm(xn) * np.linalg.norm(yn)
        u, v, mass = (xp, yp, pos) if pos >= neg else (xn, yn, neg)
        if mass <= 0:
            continue
        scale = np.sqrt(s[j] * mass)
        W[:, j] = scale * u / np.linalg.norm(u)
        H[j] = scale * v / np.linalg.norm(v)
    mean = np.float32(V.mean())
    W[W <= 0] = mean
    H[H <= 0] = mean
    return W, H
