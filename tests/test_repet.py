"""Known-answer tests of ``repet`` (REPET and REPET-SIM).

Backgrounds that really repeat: an excerpt of real song stems (drums + bass,
piano + drums) looped several times; a speech recording on top is the
foreground, at the same RMS. One more case is a real song (Bearlin, "Roads":
accompaniment vs vocals), whose accompaniment repeats only as music does.
Scores are the plain SNR of the foreground layer against the true voice.
"""

from __future__ import annotations

import functools
from math import gcd

import numpy as np
import pytest
from conftest import shared

from demixstudio.audio.stft import StftConfig, apply_mask
from demixstudio.errors import Cancelled, ParameterError
from demixstudio.jobs.context import JobContext, NullContext
from demixstudio.separation import Hints, get_method, make_params
from demixstudio.separation.repet import (_frame_medians, beat_spectrum, magnitude,
                                          repeating_period, similar_frames)
from demixstudio.session.session import Session

SR = 16000


@functools.lru_cache(maxsize=None)
def _load(rel: str) -> np.ndarray:
    import soundfile as sf
    from scipy.signal import resample_poly

    x, rate = sf.read(str(shared(rel)), dtype="float64", always_2d=True)
    x = x.mean(axis=1)
    g = gcd(rate, SR)
    return resample_poly(x, SR // g, rate // g)


def _excerpt(rel: str, t0: float, seconds: float) -> np.ndarray:
    return _load(rel)[int(t0 * SR):int((t0 + seconds) * SR)]


def _loop_case(stems, t0: float, period: float, repeats: int, voice: str):
    """(background, foreground) as float64 mono: a looped excerpt and a voice at equal RMS."""
    loop = sum(_excerpt(s, t0, period) for s in stems)
    bg = np.tile(loop, repeats)
    fg = _load(voice)[:bg.size]
    bg = bg[:fg.size]
    fg = fg * np.sqrt(np.mean(bg ** 2) / np.mean(fg ** 2))
    return bg, fg


# label -> (background, foreground) factory; LOOP_S: the loop length of each.
CASES = {
    "falcon69 drums+bass loop / speech": lambda: _loop_case(
        ("easton_ellises_falcon69/drums.wav", "easton_ellises_falcon69/bass.wav"), 0.5, 1.7, 6,
        "speech_librispeech/198-209-0000.wav"),
    "bearlin piano+drums loop / speech": lambda: _loop_case(
        ("bearlin_roads/piano.wav", "bearlin_roads/drums.wav"), 2.0, 2.3, 5,
        "speech_librispeech/3436-172162-0000.wav"),
}
LOOP_S = {"falcon69 drums+bass loop / speech": 1.7, "bearlin piano+drums loop / speech": 2.3}
# Foreground SNR floors (dB) per mode; the input SNR is 0 dB in every case (measured,
# falcon69 / bearlin: period 10.7 / 9.7, sim 5.7 / 3.6, sim with a 5 s window 5.0 / 3.1).
FLOORS = {"period": 7.0, "sim": 2.5, "sim, 5 s window": 2.0}
MODES = {"period": {"mode": "period"}, "sim": {"mode": "sim"},
         "sim, 5 s window": {"mode": "sim", "sim_window_s": 5.0}}


def _snr(ref: np.ndarray, est: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref ** 2) / np.sum((ref - est) ** 2)))


def _run(mix: np.ndarray, ctx=None, **values):
    m = get_method("repet")
    return m.separate(mix, SR, make_params(m.Params, values), Hints(), ctx or NullContext())


def _foreground_snr(bg, fg, **values):
    mix = (bg + fg).astype(np.float32)[None]
    props = _run(mix, **values)
    assert [x.name for x in props] == ["background", "foreground"]
    cfg = StftConfig.for_rate(SR)
    est = [apply_mask(mix, x.mask, cfg)[0] for x in props]
    total = est[0].astype(np.float64) + est[1]
    assert np.max(np.abs(total - mix[0])) <= 1e-5 * np.max(np.abs(mix))
    return _snr(fg, est[1]), props


@pytest.mark.parametrize("label", list(CASES))
@pytest.mark.parametrize("mode", list(MODES))
def test_looped_backgrounds_give_back_the_voice(label, mode):
    bg, fg = CASES[label]()
    snr, props = _foreground_snr(bg, fg, **MODES[mode])
    assert snr >= FLOORS[mode], f"{label} {mode}: foreground SNR {snr:.2f} dB"
    if mode == "period":
        # The period found is the loop length (within one frame).
        frame_s = StftConfig.for_rate(SR).hop / SR
        assert abs(props[0].extra["period_s"] - LOOP_S[label]) <= frame_s + 1e-9


def test_real_song_accompaniment_and_vocals():
    stems = ("piano", "bass", "drums", "other")
    bg = sum(_load(f"bearlin_roads/{s}.wav") for s in stems)
    fg = _load("bearlin_roads/vocals.wav")
    snr_period, _ = _foreground_snr(bg, fg)
    snr_sim, props = _foreground_snr(bg, fg, mode="sim")
    input_snr = _snr(fg, bg + fg)
    assert snr_period - input_snr >= 4.0, snr_period
    assert snr_sim - input_snr >= 2.0, snr_sim
    # The default search window (300 s each way) holds all of a song this short:
    # the same masks as searching anywhere.
    assert get_method("repet").Params().sim_window_s >= 300.0
    anywhere = _run((bg + fg).astype(np.float32)[None], mode="sim", sim_window_s=0.0)
    assert np.array_equal(props[0].mask, anywhere[0].mask)


def test_beat_spectrum_peaks_at_the_loop_length():
    bg, _ = CASES["bearlin piano+drums loop / speech"]()
    cfg = StftConfig.for_rate(SR)
    b = beat_spectrum(magnitude(bg.astype(np.float32)[None], cfg, NullContext()))
    assert b[0] == pytest.approx(1.0)
    p = round(2.3 * SR / cfg.hop)
    assert b[p - 2:p + 3].max() > 0.5 > np.median(b[10:p - 10])
    assert abs(repeating_period(b, 20, b.size // 3) - p) <= 1


def test_similar_frames_respect_distance_and_include_the_frame(rng):
    u = rng.random((30, 200)).astype(np.float32)
    u[:, 100:150] = u[:, 0:50]  # frames 100.. repeat frames 0..
    u /= np.linalg.norm(u, axis=0)
    idx = similar_frames(u, slice(0, 50), threshold=0.0, distance=10, repeats=5)
    assert idx.shape[0] == 50 and idx.shape[1] <= 5
    for j in range(50):
        row = idx[j][idx[j] >= 0]
        assert j in row and j + 100 in row
        gaps = np.diff(np.sort(row))
        assert np.all(gaps >= 10)


def test_similar_frames_within_a_window(rng):
    """A search window keeps every repeat within it (the frame's own included), and
    one as long as the input changes nothing."""
    u = rng.random((30, 300)).astype(np.float32)
    u[:, 100:150] = u[:, 0:50]
    u /= np.linalg.norm(u, axis=0)
    rows = slice(40, 140)
    whole = similar_frames(u, rows, threshold=0.0, distance=5, repeats=8)
    near = similar_frames(u, rows, threshold=0.0, distance=5, repeats=8, window=30)
    for j, row in zip(range(40, 140), near):
        row = row[row >= 0]
        assert j in row and np.all(np.abs(row - j) <= 30)
    assert np.array_equal(similar_frames(u, rows, threshold=0.0, distance=5, repeats=8,
                                         window=300), whole)
    assert not np.array_equal(near, whole)  # frames 0..49 and 100..149 are 100 apart


def test_frame_medians_match_numpy(rng):
    """The grouped, threaded medians equal NumPy's median over each row's frames,
    for odd and even counts and rows with empty slots."""
    from concurrent.futures import ThreadPoolExecutor

    frames = rng.random((60, 2, 33)).astype(np.float32)
    idx = rng.integers(0, 60, (9, 6))
    idx[2, 3:] = -1
    idx[5, 1:] = -1
    idx[7, 4] = -1
    with ThreadPoolExecutor(2) as pool:
        got = _frame_medians(frames, idx, pool)
    for i, row in enumerate(idx):
        want = np.median(frames[row[row >= 0]], axis=0)
        np.testing.assert_allclose(got[i], want, rtol=1e-6)


def test_session_balance_stereo_and_bad_values():
    bg, fg = CASES["falcon69 drums+bass loop / speech"]()
    mix = np.stack([bg + fg, bg + 0.5 * fg]).astype(np.float32)
    s = Session(mix, SR, name="m")
    s.run_method("repet")
    assert [x.name for x in s.layers][:2] == ["background", "foreground"]
    assert s.balance_error() < 1e-5
    # Below the bass cutoff everything is background.
    props = _run(mix, cutoff_hz=200.0)
    low = int(np.ceil(200.0 / (SR / StftConfig.for_rate(SR).n_fft)))
    assert np.all(props[0].mask[:, :low] == 1.0)
    with pytest.raises(ParameterError):
        _run(mix[:, :SR], min_period_s=0.8)  # one second cannot repeat 0.8 s three times
    with pytest.raises(ParameterError):
        _run(mix, min_period_s=3.0, max_period_s=2.0)
    with pytest.raises(ParameterError):
        make_params(get_method("repet").Params, strings={"mode": "beats"})
    with pytest.raises(ParameterError, match="sim_window_s"):
        _run(mix, mode="sim", sim_window_s=0.5, sim_distance_s=1.0)


def test_cancel_is_honoured():
    ctx = JobContext()
    ctx.cancel()
    with pytest.raises(Cancelled):
        _run(np.random.default_rng(0).standard_normal((1, 5 * SR)).astype(np.float32), ctx)
