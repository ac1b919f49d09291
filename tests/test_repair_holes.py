"""``repair`` where the input has digital silence or narrow holes: frames wholly
under the floor are left silent, and a hole of a few bins in a frame is filled no
louder than the bins around it (``phase.cap_narrow_holes``). Real recordings from
../shared/audio."""

from __future__ import annotations

import nmf_cases as nc
import numpy as np

from demixstudio.audio.stft import StftConfig
from demixstudio.jobs.context import NullContext
from demixstudio.separation import AudioHint, Hints, get_method, make_params
from demixstudio.separation.nmf.repair import phase
from demixstudio.separation.nmf.repair.phase import cap_narrow_holes
from demixstudio.separation.nmf.spectra import log_spectral_distance

SPEECH = "speech_librispeech/5703-47212-0000.wav"


def test_repair_leaves_digital_silence_silent():
    """Speech followed by two seconds of exact zeros, repaired with an example: the
    zeros stay zeros. Frames wholly under the floor had been taken as missing and
    filled from their neighbours' activations, which held the speech's last frame
    (the zeros came back with sound up to 0.064, the speech's peak 0.65)."""
    sr = nc.SR
    x = nc.excerpt(SPEECH, (5.0, 7.0)).astype(np.float32)
    x = np.concatenate([x, np.zeros(2 * sr, dtype=np.float32)])[None]
    example = nc.excerpt(SPEECH, (0.0, 4.0)).astype(np.float32)[None]
    m = get_method("repair")
    out = m.separate(x, sr, make_params(m.Params, {}),
                     Hints(examples={"speech": [AudioHint(example, sr)]}),
                     NullContext())[0].waveform
    assert not np.any(out[:, -int(1.5 * sr):])


def test_cap_narrow_holes_against_a_loop(monkeypatch):
    """cap_narrow_holes against a frame-by-frame loop over the runs of missing bins,
    two frames at a time, so that its frames are taken in several turns."""
    monkeypatch.setattr(phase, "HOLE_FRAMES", 2)
    rng = np.random.default_rng(2)
    for trial in range(100):
        bins, frames = int(rng.integers(5, 40)), int(rng.integers(1, 7))
        missing = rng.random((bins, frames)) < rng.random()
        mag = rng.random((bins, frames)).astype(np.float32)
        fill = (3 * rng.random((bins, frames))).astype(np.float32)
        expected = fill.copy()
        seen = np.where(missing, 0.0, mag)
        for t in range(frames):
            i = 0
            while i < bins:
                if not missing[i, t]:
                    i += 1
                    continue
                j = i
                while j < bins and missing[j, t]:
                    j += 1
                if j - i <= phase.HOLE_BINS:
                    r = phase.HOLE_SIDE_BINS
                    sides = np.concatenate([seen[max(0, i - r):i, t], seen[j:j + r, t]])
                    cap = sides.max() if sides.size else 0.0
                    expected[i:j, t] = np.minimum(fill[i:j, t], cap)
                i = j
        np.testing.assert_allclose(cap_narrow_holes(fill, mag, missing), expected)


def test_repair_of_an_undamaged_quiet_recording_changes_next_to_nothing():
    """A LibriSpeech excerpt as it is: the floor finds 0.2 % of its bins (pairs in
    pauses at −123 dB, beside bins at −107 to −113 dB), and their fill had come out
    at −61 dB, 0.085 dB of distance from the original; capped at what is around
    them, 0.005 dB."""
    sr = nc.SR
    x = nc.excerpt(SPEECH, (5.0, 10.0)).astype(np.float32)[None]
    example = nc.excerpt(SPEECH, (0.0, 5.0)).astype(np.float32)[None]
    m = get_method("repair")
    layer = m.separate(x, sr, make_params(m.Params, {}),
                       Hints(examples={"speech": [AudioHint(example, sr)]}), NullContext())[0]
    assert layer.extra["missing_fraction"] > 0.001
    assert log_spectral_distance(x, layer.waveform, StftConfig.for_rate(sr)) < 0.02
