"""Batch separation: many files, on this machine or on a Dask cluster.

>>> from demixstudio.batch import run_batch                      # doctest: +SKIP
>>> summary = run_batch(["podcasts/"], "hpss", "out/", workers=4)  # doctest: +SKIP
>>> summary.ok, summary.failed, summary.skipped                    # doctest: +SKIP

One Dask task per file; outputs ``OUT/<relative path>/<layer>.flac`` and
``layers.json``; a JSONL manifest (``OUT/manifest.jsonl``) records each
file's status, timings, peak memory and error; re-runs skip what is done.
"""

from demixstudio.batch.inputs import AUDIO_EXTENSIONS, InputFile, collect_inputs
from demixstudio.batch.manifest import MANIFEST_NAME
from demixstudio.batch.runner import BatchSummary, run_batch

__all__ = ["AUDIO_EXTENSIONS", "BatchSummary", "InputFile", "MANIFEST_NAME", "collect_inputs",
           "run_batch"]
