"""Shared fixtures: the real recordings in ../shared/audio, a seeded RNG."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
SHARED_AUDIO = (REPO / ".." / "shared" / "audio").resolve()


def shared(rel: str) -> Path:
    """Path of a recording in ../shared/audio; fails (not skips) if it is missing."""
    p = SHARED_AUDIO / rel
    if not p.is_file():
        pytest.fail(f"missing test recording {p}: the suite needs ../shared beside the repo")
    return p


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261121)
