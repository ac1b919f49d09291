"""Which parts of long example recordings (examples, hums) are analysed.

A dictionary of a few dozen templates is well determined by a couple of minutes
of a source, and every step after it grows with the length, so a longer recording
is sampled: excerpts spread over its stretches with sound. The choice needs only
each recording's length, rate and the energy of its stretches, so a file can be
sampled as it is read (``hintfiles.load_recording``) as well as in memory
(``nmf.spectra.example_signals``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Union

import numpy as np

from demixstudio.audio.io import energy as sum_of_squares

#: Of one source's example recordings (or hums), at most this much is analysed
#: (seconds, all of them together). A dictionary of a few dozen templates is well
#: determined by two minutes of frames (7500 at 16 kHz, 10300 at 44.1 kHz), and every
#: step after it (the magnitudes, three-frame patches, the dictionary's fit, the hum's
#: joint fit) grows with the length. On a minute of 44.1 kHz stereo with an example of
#: each of two sources, ``nmf-supervised`` took 83 s and 2.5 GB above the memory at
#: the call with 10-minute examples, 210 s and 7.4 GB with 30-minute ones; sampled,
#: 34 s and 1.2–1.3 GB with 10- to 60-minute ones (2026-11-25). Longer examples are
#: sampled, not cut, so the dictionary sees the whole recording's variety, and the
#: sample is taken where they have sound (see :func:`example_spans`).
MAX_EXAMPLE_S = 120.0
#: The sample of a longer example is made of excerpts of about this length
#: (seconds), spread evenly over each recording's stretches with sound.
EXCERPT_S = 10.0
#: ... and no recording contributes an excerpt shorter than this (seconds), however
#: many there are.
MIN_EXCERPT_S = 2.0
#: An excerpt-long stretch more than this far (dB) under the recording's loudest has
#: no sound worth sampling: an isolated vocal track of a song is mostly silence or
#: bleed between the phrases.
SOUND_DB = 40.0

#: The energy of each of a recording's ``slots`` consecutive ``size``-sample
#: stretches, as ``energies(size, slots)`` -> float64 (slots,): how a recording that
#: is not in memory (a file read in a stream) tells where it has sound.
StretchEnergies = Callable[[int, int], np.ndarray]


def example_spans(lengths: Sequence[int], rates: Sequence[float],
                  limit_s: float | None = None,
                  audio: Sequence[Union[np.ndarray, StretchEnergies, None]] | None = None
                  ) -> list[list[tuple[int, int]]]:
    """Which samples of each recording to analyse: for recordings of ``lengths``
    samples at ``rates`` (Hz), a list per recording of ``(start, stop)`` spans in
    its own samples.

    When all of them together last at most ``limit_s`` (None:
    :data:`MAX_EXAMPLE_S`), each is whole. Otherwise each recording gets a share of
    ``limit_s`` in proportion to its duration (at least :data:`MIN_EXCERPT_S`, or
    all of it when shorter), taken as excerpts of about :data:`EXCERPT_S`: the
    recording is cut into excerpt-long stretches and those at the middles of equal
    parts are taken, a sample spread over the whole recording. With ``audio`` (each
    recording, (channels, samples), or its :data:`StretchEnergies`), only stretches
    with sound (within :data:`SOUND_DB` of the loudest) are candidates, and when
    there are fewer of those than the share holds, all of them are taken."""
    limit_s = MAX_EXAMPLE_S if limit_s is None else float(limit_s)
    seconds = [n / float(r) for n, r in zip(lengths, rates)]
    total = sum(seconds)
    if total <= limit_s:
        return [[(0, int(n))] for n in lengths]
    out = []
    for i, (n, r, d) in enumerate(zip(lengths, rates, seconds)):
        share = min(d, max(limit_s * d / total, MIN_EXCERPT_S))
        count = max(1, int(round(share / EXCERPT_S)))
        size = max(1, int(share / count * r))
        slots = max(1, int(n) // size)
        candidates = np.arange(slots)
        energies = (_energies(audio[i], size, slots)
                    if audio is not None and slots > count else None)
        if energies is not None:
            candidates = with_sound(energies)
        if candidates.size > count:
            candidates = candidates[((np.arange(count) + 0.5) * candidates.size
                                     / count).astype(int)]
        out.append([(int(k) * size, min(int(k) * size + size, int(n))) for k in candidates])
    return out


def _energies(a: Union[np.ndarray, StretchEnergies, None], size: int, slots: int
              ) -> np.ndarray | None:
    if callable(a):
        return np.asarray(a(size, slots), dtype=np.float64)
    if a is None or np.ndim(a) != 2:
        return None
    return np.array([sum_of_squares(a[:, k * size:(k + 1) * size]) for k in range(slots)])


def with_sound(energies: np.ndarray) -> np.ndarray:
    """Indices of the stretches whose ``energies`` are within :data:`SOUND_DB` of the
    loudest (all of them when none has any energy, or the energies are not finite)."""
    loudest = energies.max()
    if not np.isfinite(loudest) or loudest <= 0.0:
        return np.arange(energies.size)
    return np.flatnonzero(energies > loudest * 10.0 ** (-SOUND_DB / 10.0))
