"""Run a nussl separator in nussl's own interpreter (a separate virtual environment).

nussl pins old scipy/numpy that our environment must not take, so it lives in
its own venv (by default /tmp/nussl-venv; override with $NUSSL_PYTHON) and is
driven through a subprocess: the mixture goes in as .npy, the estimates and
the separation time (imports excluded) come back as .npz.

Setting that venv up (nussl 1.1.9 with scipy < 1.13, numpy 1.23 (it uses np.bool), pandas < 2.3,
zarr < 3; its soxbindings dependency needs libsox headers and is not needed
for separation, so nussl is installed with ``--no-deps`` plus the rest)::

    python3 -m venv /tmp/nussl-venv
    /tmp/nussl-venv/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu
    /tmp/nussl-venv/bin/pip install --no-deps nussl
    /tmp/nussl-venv/bin/pip install jams librosa matplotlib museval musdb pyyaml ffmpy \\
        pytorch-ignite tensorboard norbert tqdm termtables gpytorch ffmpeg-python \\
        importlib-resources sox pyloudnorm "scipy<1.13" "numpy==1.23.5" "pandas<2.3" "zarr<3"
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

NUSSL_PYTHON = os.environ.get("NUSSL_PYTHON", "/tmp/nussl-venv/bin/python")

# The runner. nussl imports musdb -> stempeg at package import, and stempeg
# refuses to import without ffmpeg binaries; separation never touches them,
# so stempeg gets an empty stand-in module.
_RUNNER = r"""
import json, sys, time, types, warnings
warnings.filterwarnings("ignore")
sys.modules.setdefault("stempeg", types.ModuleType("stempeg"))
import numpy as np
import nussl
from nussl.separation import spatial
args = json.loads(sys.argv[1])
mix = np.load(args["mix"])
sig = nussl.AudioSignal(audio_data_array=mix, sample_rate=args["sr"],
                        stft_params=nussl.STFTParams(window_length=args["n_fft"],
                                                     hop_length=args["hop"],
                                                     window_type="hann"))
cls = getattr(spatial, args["method"])
t0 = time.perf_counter()
sep = cls(sig, **args["kwargs"])
estimates = sep()
elapsed = time.perf_counter() - t0
est = np.stack([e.audio_data for e in estimates]).astype(np.float32)
np.savez(args["out"], estimates=est, elapsed=elapsed, version=nussl.__version__)
"""


def nussl_available() -> Tuple[bool, str]:
    """Whether the nussl interpreter exists and imports nussl; and a line saying so."""
    if not Path(NUSSL_PYTHON).is_file():
        return False, f"nussl: no interpreter at {NUSSL_PYTHON} (set $NUSSL_PYTHON)"
    probe = ("import sys, types; sys.modules.setdefault('stempeg', types.ModuleType('stempeg'));"
             "import nussl; print(nussl.__version__)")
    r = subprocess.run([NUSSL_PYTHON, "-c", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return False, f"nussl does not import in {NUSSL_PYTHON}: {r.stderr.strip()[-200:]}"
    return True, f"nussl {r.stdout.strip().splitlines()[-1]} ({NUSSL_PYTHON})"


def run_nussl(method: str, mix: np.ndarray, sr: int, n_fft: int, hop: int,
              **kwargs) -> Optional[Tuple[np.ndarray, float]]:
    """nussl's ``spatial.<method>`` on ``mix`` (C, N): estimates (J, C, N) and seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        mix_path, out_path = Path(tmp) / "mix.npy", Path(tmp) / "out.npz"
        np.save(mix_path, mix)
        args = {"mix": str(mix_path), "out": str(out_path), "sr": sr, "n_fft": n_fft,
                "hop": hop, "method": method, "kwargs": kwargs}
        r = subprocess.run([NUSSL_PYTHON, "-c", _RUNNER, json.dumps(args)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(f"  nussl {method} failed: {r.stderr.strip()[-300:]}")
            return None
        with np.load(out_path) as z:
            return z["estimates"], float(z["elapsed"])
