"""DemixStudio asks OpenMP for passive waits (demixstudio/omp.py): idle compute
threads sleep instead of spinning, so a second busy process on the same cores does
not make every small parallel region wait out a time slice."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items()
            if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_DISPLAY_ENV")}
    return subprocess.run([sys.executable, "-c", code], env={**base, **env},
                          capture_output=True, text=True, check=True, timeout=120)


def test_importing_demixstudio_asks_for_passive_waits():
    out = _run("import os, demixstudio; print(os.environ['OMP_WAIT_POLICY'])")
    assert out.stdout.strip() == "PASSIVE"


def test_a_policy_the_user_set_is_kept():
    out = _run("import os, demixstudio; print(os.environ['OMP_WAIT_POLICY'])",
               OMP_WAIT_POLICY="ACTIVE")
    assert out.stdout.strip() == "ACTIVE"


def _spin_count(code: str) -> str | None:
    """GNU OpenMP's spin count as it started in a process running ``code`` (None when
    torch's OpenMP is not GNU's, which prints no such line)."""
    err = _run(code, OMP_DISPLAY_ENV="VERBOSE").stderr
    lines = [ln for ln in err.splitlines() if "GOMP_SPINCOUNT" in ln]
    return lines[0].split("=", 1)[1].strip().strip("'") if lines else None


def test_torchs_openmp_starts_with_the_passive_policy():
    # The policy is read once, as torch loads OpenMP: demixstudio must come first, as
    # it does in the CLI, the editor and the batch workers.
    ours = _spin_count("import demixstudio, torch; torch.ones(4).sum()")
    if ours is None and sys.platform != "linux":  # torch's Linux wheels ship GNU's OpenMP
        pytest.skip("torch's OpenMP here is not GNU's: it prints no spin count")
    assert ours == "0"
    # A process that starts OpenMP first keeps its default, a spin before each sleep:
    # this is what the setting changes.
    assert int(_spin_count("import torch, demixstudio; torch.ones(4).sum()")) > 0
