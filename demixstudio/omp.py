"""How torch's OpenMP threads wait between parallel regions (``OMP_WAIT_POLICY``).

By default GNU OpenMP's idle threads spin for a while after each parallel
region before they sleep. That is fastest when the process has the cores to
itself. When another busy process shares them (a second DemixStudio, a build,
another program's computation), the spinning threads take turns that the
threads they wait for need. Every one of the thousands of small parallel
regions in an NMF fit then waits out a time slice. Measured on the two-core
development machine (``benchmarks/bench_contention.py``, 7 s of 44.1 kHz
stereo), two ``nmf-hum`` runs at once took 25–58 s each with the spin and 3.8
s with passive waits; alone, one takes 2.2 s (before the engine's chunk change
below).

So DemixStudio asks for passive waits (idle threads sleep at once) unless the
user has set the policy. On an idle machine this costs little: ``nmf``,
``nmf-paint`` and ``nmf-hum`` on those 7 s, the engine's iteration on a 2049 ×
5670 spectrogram, and ``nmf-hum`` and ``nmf-paint`` on a minute of audio take
the same time within a few per cent. What would pay is a fit so small that
torch's threads wake for every tiny operation: the NMF engine runs such fits
on one thread instead, and shares larger ones between its own workers
(``engine.MIN_SHARE_ENTRIES``), which took ``nmf-hum`` on 7 s from 3.2 s to
1.9 s (2.2 s with spinning threads and the engine as it was).

OpenMP reads the variable once, when it starts, so this must run before torch
is first imported: :mod:`demixstudio` calls it as it is imported. A script that
imports torch before demixstudio keeps OpenMP's default (or sets the variable
itself).
"""

from __future__ import annotations

import os

#: The policy asked for when the user has not set one.
WAIT_POLICY = "PASSIVE"


def prefer_passive_waits() -> None:
    """Set ``OMP_WAIT_POLICY`` to :data:`WAIT_POLICY` unless it is set already.

    Child processes (batch workers, a Dask ``LocalCluster``) inherit it."""
    os.environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)
