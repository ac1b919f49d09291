"""Stacked-context templates (separation/nmf/context.py): the stacking and its inverse,
and the block-by-block fit against one fit of the whole input."""

from __future__ import annotations

import weakref

import numpy as np
import pytest
import torch

from demixstudio.jobs.context import NullContext
from demixstudio.audio.stft import StftConfig
from demixstudio.separation.nmf import common, context, engine


@pytest.mark.parametrize("c", [1, 2])
def test_stacking_and_the_mean_of_predictions_are_inverse(c):
    rng = np.random.default_rng(0)
    V = rng.random((7, 11)).astype(np.float32)
    S = context.stack_frames(V, c)
    assert S.shape == (7 * (2 * c + 1), 11)
    # Column t, block o holds frame t + o − c (the edge frames repeated).
    for o in range(2 * c + 1):
        np.testing.assert_array_equal(S[o * 7:(o + 1) * 7, 5], V[:, 5 + o - c])
    np.testing.assert_array_equal(S[:7, 0], V[:, 0])
    np.testing.assert_array_equal(context.stack_frames(torch.as_tensor(V), c).numpy(), S)
    # Every prediction of a frame by an exact model is the frame itself.
    eye = torch.eye(11)
    back = context.frame_means(torch.as_tensor(S), eye, 7, c, 0, 11).numpy()
    np.testing.assert_allclose(back, V, rtol=1e-6)
    # A run inside: columns 2..9 of S predict frames 4..7 (first = 2).
    np.testing.assert_allclose(context.frame_means(torch.as_tensor(S), eye[:, 2:10], 7, c, 2, 4),
                               V[:, 4:8], rtol=1e-6)
    assert context.stack_frames(V, 0) is V
    # A model's means, its product made one row block at a time, are the whole
    # product's.
    W = torch.as_tensor(rng.random((7 * (2 * c + 1), 3)).astype(np.float32))
    H = torch.as_tensor(rng.random((3, 11)).astype(np.float32))
    for first, count, cols in ((0, 11, slice(None)), (2, 4, slice(2, 10))):
        np.testing.assert_allclose(
            context.frame_means(W, H[:, cols], 7, c, first, count),
            context.frame_means(W @ H[:, cols], torch.eye(H[:, cols].shape[1]), 7, c, first,
                                count), rtol=1e-6)


def _mixture(blocks):
    frames = sum(b.shape[1] for b in blocks)
    mean = float(sum(b.sum() for b in blocks)) / frames
    return common.Mixture(StftConfig(n_fft=46, hop=23), list(blocks), frames,
                          torch.device("cpu"), mean)


def test_block_by_block_fit_matches_one_block():
    """The blocks' fits see the frames beyond their ends that their columns need, so
    run to convergence (the problem is convex in the activations) the masks are those
    of one fit of the whole input."""
    rng = np.random.default_rng(1)
    F, T, K = 24, 300, 6
    W = torch.as_tensor(rng.random((F * 3, K)).astype(np.float32))
    W /= W.sum(0, keepdim=True)
    H = rng.gamma(0.5, size=(K, T)).astype(np.float32)
    V = torch.as_tensor(context.stack_frames(W.numpy(), 0)[:F] @ H
                        + 0.01 * rng.random((F, T)).astype(np.float32))
    whole, _ = context.fit_and_mask(_mixture([V]), W, [3, 3], 1, NullContext(), max_iter=1500,
                                    tol=0.0, power=2.0)
    blocks = [V[:, a:a + 64].contiguous() for a in range(0, T, 64)]
    parts, res = context.fit_and_mask(_mixture(blocks), W, [3, 3], 1, NullContext(), max_iter=1500,
                                      tol=0.0, power=2.0)
    assert whole.shape == (2, 1, F, T)
    np.testing.assert_allclose(whole.sum(0), 1.0, atol=1e-5)
    np.testing.assert_allclose(parts, whole, atol=1e-4)
    assert res.iterations == 1500 and not res.converged
    assert len(res.H) == len(blocks)
    assert engine.BLOCK_FRAMES > 64  # the split above is finer than the default's


def test_the_spectrogram_is_released_before_the_masks(monkeypatch):
    """The mixture's blocks are views of one allocation (``common.load_mixture``); by
    the time the masks are allocated nothing may hold any of them, or the whole
    spectrogram would stay in memory beside the masks."""
    F, T = 24, 200
    store = np.random.default_rng(2).random(F * T).astype(np.float32) + 0.01
    alive = weakref.ref(store)
    blocks = [torch.as_tensor(store[F * a:F * min(a + 64, T)].reshape(F, -1))
              for a in range(0, T, 64)]
    m = _mixture(blocks)
    del store, blocks
    seen = []
    monkeypatch.setattr(context.memory, "check_layers_fit",
                        lambda *a: seen.append(alive() is None))
    W = torch.rand((F * 3, 6), generator=torch.Generator().manual_seed(0))
    masks, _ = context.fit_and_mask(m, W, [3, 3], 1, NullContext(), max_iter=5)
    assert seen == [True] and m.V == []
    assert masks.shape == (2, 1, F, T)
