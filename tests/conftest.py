"""Shared fixtures: the real recordings in ../shared/audio, a seeded RNG."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# The NMF engine remembers its product timing per machine (nmf/products.py): the
# tests keep theirs out of the user's cache folder.
if "DEMIXSTUDIO_CACHE_DIR" not in os.environ:
    os.environ["DEMIXSTUDIO_CACHE_DIR"] = tempfile.mkdtemp(prefix="demixstudio-tests-")
    # (removed when the run ends, so runs do not leave folders behind)
    atexit.register(shutil.rmtree, os.environ["DEMIXSTUDIO_CACHE_DIR"], ignore_errors=True)

# The suite runs with the product's OpenMP wait policy, set before any test module
# imports torch (OpenMP reads it once, as torch starts it: demixstudio/omp.py).
from demixstudio.omp import prefer_passive_waits  # noqa: E402

prefer_passive_waits()

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
