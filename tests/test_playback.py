"""The playback engine renders exactly the session's mixdown, live, without a device."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import soundfile as sf
from conftest import shared

from demixstudio.audio.mixer import MixSettings, gain_matrix, mixdown
from demixstudio.audio.playback import PlaybackEngine, input_status, output_status
from demixstudio.errors import ParameterError

SR = 16000


def _stems() -> list:
    """Two real recordings as stereo stems of equal length (a short excerpt)."""
    out = []
    for rel in ("speech_sisec_dev1/dev1_female4_src_1.wav",
                "speech_sisec_dev1/dev1_male4_src_2.wav"):
        x, sr = sf.read(str(shared(rel)), dtype="float32", always_2d=True)
        assert sr == SR
        out.append(x[: 3 * SR, 0])
    n = min(len(x) for x in out)
    left = np.stack([out[0][:n], 0.3 * out[0][:n]])
    right = np.stack([0.4 * out[1][:n], out[1][:n]])
    return [left.astype(np.float32), right.astype(np.float32)]


def _play_all(engine: PlaybackEngine, frames: int) -> np.ndarray:
    engine.seek(0)
    engine.play()
    blocks = []
    while engine.playing:
        blocks.append(engine.render(frames).copy())
    return np.concatenate(blocks, axis=1)


def test_status_sentences_on_this_machine():
    ok, why = output_status()
    assert isinstance(ok, bool) and why
    if not ok:
        assert why.startswith("Playback is off")
    ok_in, why_in = input_status()
    assert why_in and (ok_in or why_in.startswith("Recording is off"))


def test_render_equals_mixdown_with_settings():
    stems = _stems()
    settings = [MixSettings(gain_db=-6.0, pan=0.4), MixSettings(gain_db=3.0, pan=-0.8)]
    engine = PlaybackEngine(SR, 2, blocksize=512)
    engine.set_sources(stems, settings)
    played = _play_all(engine, 512)
    expect = mixdown(stems, gain_matrix(settings, 2), stems[0].shape[1])
    n = expect.shape[1]
    np.testing.assert_allclose(played[:, :n], expect, atol=1e-6)
    assert not played[:, n:].any()  # silence after the end, then it stops


def test_settings_change_is_heard_in_the_next_block():
    stems = _stems()
    engine = PlaybackEngine(SR, 2, blocksize=256)
    engine.set_sources(stems, [MixSettings(), MixSettings()])
    engine.seek(4000)
    engine.play()
    engine.render(256)
    engine.set_settings([MixSettings(mute=True), MixSettings(solo=False, gain_db=-6.0)])
    block = engine.render(256).copy()
    g = 10 ** (-6 / 20)
    np.testing.assert_allclose(block, g * stems[1][:, 4256:4512], atol=1e-6)
    engine.set_settings([MixSettings(solo=True), MixSettings()])
    np.testing.assert_allclose(engine.render(256), stems[0][:, 4512:4768], atol=1e-6)


def test_loop_wraps_inside_a_block_and_stop_returns_to_loop_start():
    stems = _stems()
    engine = PlaybackEngine(SR, 2, blocksize=1000)
    engine.set_sources(stems, [MixSettings(), MixSettings()])
    engine.set_loop(1000, 1700)
    engine.seek(1500)
    engine.play()
    block = engine.render(1000).copy()
    full = stems[0] + stems[1]
    # 200 samples to the loop end, then the loop again from its start.
    np.testing.assert_allclose(block[:, :200], full[:, 1500:1700], atol=1e-6)
    np.testing.assert_allclose(block[:, 200:900], full[:, 1000:1700], atol=1e-6)
    np.testing.assert_allclose(block[:, 900:], full[:, 1000:1100], atol=1e-6)
    assert engine.playing and engine.position == 1100
    engine.stop()
    assert not engine.playing and engine.position == 1000


def test_region_plays_only_its_audio_then_stops():
    stems = _stems()
    engine = PlaybackEngine(SR, 2, blocksize=512)
    engine.set_sources(stems, [MixSettings(), MixSettings()])
    region = (0.5 * stems[0][:, 2000:2600]).copy()
    engine.set_region(region, 2000)
    engine.play()  # starts at the region, wherever the playhead was
    assert engine.position == 2000
    out = np.concatenate([engine.render(512).copy(), engine.render(512).copy()], axis=1)
    np.testing.assert_allclose(out[:, :600], region, atol=1e-7)
    assert not out[:, 600:].any() and not engine.playing
    engine.set_region(None)
    assert not engine.region_active


def test_callback_fills_device_buffers_mono_to_stereo():
    mono = _stems()[0][:1]
    engine = PlaybackEngine(SR, 1, blocksize=128)
    engine.set_sources([mono], [MixSettings(gain_db=-20.0)])
    engine.play()
    out = np.full((300, 2), 9.0, dtype=np.float32)  # longer than one block
    engine._callback(out, 300, None, None)
    expect = 0.1 * mono[0, :300]
    np.testing.assert_allclose(out[:, 0], expect, atol=1e-6)
    np.testing.assert_allclose(out[:, 1], expect, atol=1e-6)


def test_render_allocates_no_audio_buffers():
    stems = _stems()
    engine = PlaybackEngine(SR, 2, blocksize=1024)
    engine.set_sources(stems, [MixSettings(pan=0.3), MixSettings(gain_db=-3.0)])
    engine.play()
    engine.render(1024)  # warm up
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    for _ in range(40):
        engine.render(1024)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # One block of audio is 8 KiB; Python view objects are a few hundred bytes.
    assert peak - base < 4096, peak - base


def test_default_block_keeps_changes_within_50_ms():
    for sr in (8000, 16000, 22050, 44100, 48000, 96000, 192000):
        n = PlaybackEngine(sr, 2).blocksize
        assert 2 * n / sr <= 0.050 and n >= 64, (sr, n)
    assert PlaybackEngine(44100, 2).blocksize == 1024


def test_bad_input_is_refused():
    engine = PlaybackEngine(SR, 2)
    with pytest.raises(ParameterError):
        engine.set_sources([np.zeros((1, 10), np.float32)], [MixSettings()])
    with pytest.raises(ParameterError):
        engine.set_sources([np.zeros((2, 10), np.float32)], [])
    with pytest.raises(ParameterError):
        engine.render(engine.blocksize + 1)
