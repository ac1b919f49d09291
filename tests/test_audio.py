"""Audio files, resampling and the STFT convention."""

from __future__ import annotations

import errno
import itertools

import numpy as np
import pytest
import soundfile as sf

from conftest import shared
from demixstudio.audio.io import (audio_info, declared_frames, load_audio, ogg_unterminated,
                                  resample, save_audio)
from demixstudio.audio.stft import (AudioStft, OverlapAdd, StftConfig, apply_mask, istft,
                                    iter_stft_blocks, stft, stft_block)
from demixstudio.errors import AudioFormatError, OutputError, ParameterError


@pytest.mark.parametrize("n", [1, 2, 100, 511, 512, 513, 4096, 44101])
@pytest.mark.parametrize("cfg", [StftConfig(), StftConfig(1024, 256), StftConfig(512, 256),
                                 StftConfig(256, 32)])
def test_stft_round_trip(rng, n, cfg):
    x = rng.standard_normal((3, n)).astype(np.float32)
    X = stft(x, cfg)
    assert X.dtype == np.complex64 and X.shape == (3, cfg.bins, cfg.frames(n))
    y = istft(X, n, cfg)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.linalg.norm(y - x) / np.linalg.norm(x) <= 1e-5


def test_stft_blocks_match_one_pass(rng):
    x = rng.standard_normal((2, 50000)).astype(np.float32)
    cfg = StftConfig()
    a = stft(x, cfg, block=7)
    b = stft(x, cfg, block=100000)
    assert np.array_equal(a, b)
    assert np.allclose(istft(a, x.shape[1], cfg, block=5), istft(a, x.shape[1], cfg), atol=1e-6)


def test_stft_frame_convention():
    """Frame t is centred at t*hop: a click at sample 5*hop peaks in frame 5."""
    cfg = StftConfig(1024, 256)
    x = np.zeros((1, 8192), np.float32)
    x[0, 5 * 256] = 1.0
    energy = np.abs(stft(x, cfg)[0]).sum(0)
    assert int(np.argmax(energy)) == 5
    assert np.allclose(cfg.bin_freqs(16000)[[0, -1]], [0, 8000])


def test_apply_mask_equals_masked_istft(rng):
    x = rng.standard_normal((2, 30001)).astype(np.float32)
    cfg = StftConfig.for_rate(16000)
    m = rng.random((1, cfg.bins, cfg.frames(x.shape[1]))).astype(np.float32)
    ref = istft(stft(x, cfg) * m, x.shape[1], cfg)
    assert np.abs(apply_mask(x, m, cfg, block=64) - ref).max() < 1e-5
    # Complementary masks add back to the input (the basis of the session's books).
    both = apply_mask(x, m, cfg) + apply_mask(x, 1 - m, cfg)
    assert np.abs(both - x).max() < 1e-4


def test_stft_of_any_frame_range_matches_the_whole(rng):
    """AudioStft / iter_stft_blocks recompute frames [t0, t1) from the samples they cover."""
    x = rng.standard_normal((2, 20011)).astype(np.float32)
    cfg = StftConfig(512, 128)
    whole = stft(x, cfg)
    lazy = AudioStft(x, cfg)
    assert lazy.shape == whole.shape
    for t0, t1 in [(0, 1), (0, 9), (3, 40), (100, 157), (150, whole.shape[2]),
                   (whole.shape[2] - 2, whole.shape[2] + 5)]:
        np.testing.assert_array_equal(lazy.frames(t0, t1), whole[:, :, t0:t1])
        np.testing.assert_array_equal(stft_block(whole, t0, t1), whole[:, :, t0:t1])
    got = np.concatenate([X for _, X in iter_stft_blocks(x, cfg, 37)], axis=2)
    np.testing.assert_array_equal(got, whole)


def test_overlap_add_takes_blocks_in_any_order_and_size(rng):
    x = rng.standard_normal((2, 30001)).astype(np.float32)
    cfg = StftConfig.for_rate(16000)
    X = stft(x, cfg)
    nfr = X.shape[2]
    edges = [0, 1, 50, 51, 300, nfr]
    ola = OverlapAdd(2, x.shape[1], cfg)
    for t0, t1 in reversed(list(itertools.pairwise(edges))):
        ola.add_spectrum(t0, X[:, :, t0:t1])
    y = ola.result()
    assert y.shape == x.shape and y.dtype == np.float32
    np.testing.assert_allclose(y, istft(X, x.shape[1], cfg), rtol=0, atol=1e-6)
    assert np.abs(y - x).max() < 1e-5
    with pytest.raises(RuntimeError):
        ola.result()


def test_for_rate():
    assert StftConfig.for_rate(44100).n_fft == 2048
    assert StftConfig.for_rate(16000).n_fft == 1024
    with pytest.raises(ParameterError):
        StftConfig(1000, 300)


@pytest.mark.parametrize("ext,bits,tol", [("wav", "16", 2 ** -15), ("wav", "24", 2 ** -23),
                                          ("wav", "float", 0.0), ("flac", "16", 2 ** -15),
                                          ("flac", "24", 2 ** -23)])
def test_save_load_round_trip(tmp_path, rng, ext, bits, tol):
    x = (rng.standard_normal((3, 5000)) * 0.2).astype(np.float32)
    p = save_audio(tmp_path / f"a.{ext}", x, 22050, bits=bits)
    y, sr = load_audio(p)
    assert sr == 22050 and y.shape == x.shape and y.dtype == np.float32
    assert np.abs(y - x).max() <= tol
    assert [q.name for q in tmp_path.iterdir()] == [f"a.{ext}"]  # no temporary left


def test_load_real_formats(tmp_path):
    """int16 WAV, 32-bit float WAV, stereo, mono, other rates, OGG and AIFF all load."""
    a, sr = load_audio(shared("speech_sisec_dev1/dev1_female4_src_1.wav"))
    assert a.shape == (1, 160000) and sr == 16000 and a.dtype == np.float32
    b, sr = load_audio(shared("environment/church_bells.wav"))  # float32, peak > 1
    assert sr == 16000 and np.abs(b).max() > 1.0
    c, sr = load_audio(shared("bearlin_roads/bass.wav"))
    assert c.shape[0] == 2 and sr == 44100
    for fmt, ext, sub in (("OGG", "ogg", None), ("AIFF", "aiff", None),
                          ("MP3", "mp3", "MPEG_LAYER_III")):
        p = tmp_path / f"x.{ext}"
        sf.write(p, a[0, :16000], 16000, format=fmt, subtype=sub)
        y, r = load_audio(p)
        assert y.shape[0] == 1 and r == 16000 and abs(y.shape[1] - 16000) < 2000


def test_resample_on_load():
    a, sr = load_audio(shared("speech_sisec_dev1/dev1_male4_src_1.wav"), sr=44100)
    assert sr == 44100 and a.shape == (1, 441000)
    b, _ = load_audio(shared("speech_sisec_dev1/dev1_male4_src_1.wav"))
    back = resample(a, 44100, 16000)
    # Down again: the band below 8 kHz survives the round trip.
    err = np.linalg.norm(back[:, 1000:-1000] - b[:, 1000:-1000]) / np.linalg.norm(b)
    assert err < 0.01


def _tone_level(y: np.ndarray, sr: int) -> tuple[float, float]:
    """(frequency of the strongest peak in Hz, its amplitude in dB) of float32 (n,)."""
    w = np.hanning(y.size)
    Y = np.abs(np.fft.rfft(y * w)) / (w.sum() / 2)
    k = int(np.argmax(Y))
    return float(np.fft.rfftfreq(y.size, 1 / sr)[k]), float(20 * np.log10(Y[k]))


@pytest.mark.parametrize("rates", [(44100, 16000), (48000, 44100), (16000, 44100)])
def test_resample_keeps_the_band_and_leaves_no_images(rates):
    """A tone well inside the lower rate's band keeps its level (within 0.5 dB up to
    90 % of its Nyquist frequency) and frequency; one above it leaves nothing more
    than 100 dB down. The short polyphase filter used before gave a 44.1 kHz tone
    at 8.5 kHz back at 7.5 kHz after the move to 16 kHz, 14 dB down."""
    sr_from, sr_to = rates
    top = min(sr_from, sr_to) / 2
    t = np.arange(2 * sr_from) / sr_from
    edge = int(0.1 * sr_to)  # the filter's start and end
    for f0 in (1000.0, 0.9 * top):
        y = resample(np.sin(2 * np.pi * f0 * t).astype(np.float32)[None], sr_from, sr_to)
        f, level = _tone_level(y[0, edge:-edge], sr_to)
        assert abs(f - f0) < 2.0 and abs(level) < 0.5, (f0, f, level)
    if sr_from > sr_to:
        for f0 in (1.06 * top, min(1.5 * top, 0.98 * sr_from / 2)):
            y = resample(np.sin(2 * np.pi * f0 * t).astype(np.float32)[None], sr_from, sr_to)
            assert _tone_level(y[0, edge:-edge], sr_to)[1] < -100.0, f0


def test_resample_keeps_time_and_length():
    """An impulse lands where its time says at the new rate, and the length is
    ceil(n · sr_to / sr_from), channel by channel."""
    x = np.zeros((2, 44101), np.float32)
    x[0, 22050] = 1.0
    x[1, 11025] = -1.0
    for sr_to in (16000, 48000, 22050):
        y = resample(x, 44100, sr_to)
        assert y.shape == (2, int(np.ceil(44101 * sr_to / 44100))) and y.dtype == np.float32
        assert np.argmax(y[0]) == round(22050 * sr_to / 44100)
        assert np.argmin(y[1]) == round(11025 * sr_to / 44100)


def test_bad_files(tmp_path):
    with pytest.raises(AudioFormatError, match="no such file"):
        load_audio(tmp_path / "missing.wav")
    txt = tmp_path / "notes.wav"
    txt.write_text("this is not audio")
    with pytest.raises(AudioFormatError, match="not an audio file"):
        load_audio(txt)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, 2), np.float32), 44100)
    with pytest.raises(AudioFormatError, match="no audio samples"):
        load_audio(empty)
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.full((100, 1), np.nan, np.float32), 44100, subtype="FLOAT")
    with pytest.raises(AudioFormatError, match="NaN"):
        load_audio(nan)
    one = tmp_path / "one.wav"
    sf.write(one, np.array([[0.5]], np.float32), 8000)
    a, sr = load_audio(one)
    assert a.shape == (1, 1)
    with pytest.raises(AudioFormatError):
        audio_info(tmp_path)


@pytest.mark.parametrize("subtype,channels", [("PCM_16", 2), ("PCM_24", 1), ("FLOAT", 6)])
def test_a_wav_cut_short_is_read_and_said(tmp_path, rng, subtype, channels):
    """A WAV whose data chunk stops before its header's size (an interrupted copy)
    loads what is there, and the caller is told how much is missing."""
    whole = tmp_path / "whole.wav"
    x = (0.1 * rng.standard_normal((3 * 8000, channels))).astype(np.float32)
    sf.write(whole, x, 8000, subtype=subtype)
    # Chunks before the data (here an odd-sized one, padded to even as RIFF wants)
    # must be walked over: editors write JUNK, bext or LIST chunks there.
    data = bytearray(whole.read_bytes())
    at = data.index(b"data")
    data[at:at] = b"JUNK" + (5).to_bytes(4, "little") + b"take3" + b"\0"
    data[4:8] = (len(data) - 8).to_bytes(4, "little")
    data = bytes(data)
    whole.write_bytes(data)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[:len(data) // 3])
    assert declared_frames(whole) == declared_frames(cut) == len(x)
    said = []
    a, sr = load_audio(cut, on_warning=said.append)
    assert sr == 8000 and 0 < a.shape[1] < len(x) // 3
    np.testing.assert_allclose(a.T, x[:a.shape[1]], atol=1e-4)
    assert len(said) == 1 and "cut.wav is cut short" in said[0]
    assert "announces 3.00 s" in said[0] and f"{a.shape[1] / 8000:.2f} s can be read" in said[0]
    # Whole files, and other formats, say nothing.
    flac = tmp_path / "whole.flac"
    sf.write(flac, x, 8000)
    for path in (whole, flac):
        said.clear()
        assert load_audio(path, on_warning=said.append)[0].shape == (channels, len(x))
        assert said == []
    assert declared_frames(flac) is None


@pytest.mark.parametrize("fmt,subtype", [("AIFF", "PCM_16"), ("AIFF", "FLOAT"),
                                          ("RF64", "PCM_24"), ("W64", "PCM_16")])
def test_aiff_rf64_and_w64_cut_short_are_read_and_said(tmp_path, rng, fmt, subtype):
    """The other containers whose header gives the length (AIFF's COMM chunk, RF64's
    ds64 size, Wave64's data chunk) are noticed like a WAV when cut short."""
    x = (0.1 * rng.standard_normal((3 * 8000, 2))).astype(np.float32)
    whole = tmp_path / f"whole.{fmt.lower()}"
    sf.write(whole, x, 8000, format=fmt, subtype=subtype)
    data = whole.read_bytes()
    cut = tmp_path / f"cut.{fmt.lower()}"
    cut.write_bytes(data[:len(data) // 2])
    assert declared_frames(whole) == declared_frames(cut) == len(x)
    said = []
    a, _ = load_audio(cut, on_warning=said.append)
    assert 0 < a.shape[1] < len(x) // 2
    np.testing.assert_allclose(a.T, x[:a.shape[1]], atol=1e-4)
    assert len(said) == 1 and f"cut.{fmt.lower()} is cut short: its header announces " \
        "3.00 s" in said[0], said
    said.clear()
    assert load_audio(whole, on_warning=said.append)[0].shape == (2, len(x)) and said == []


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT", "ULAW", "ALAC_16", "ALAC_24"])
def test_a_caf_cut_short_is_read_up_to_its_last_whole_packet_and_said(tmp_path, rng, subtype):
    """libsndfile refuses a CAF whose data chunk runs past the end of the file: it
    opens on a view that announces the whole packets there are. An ALAC packet cut
    in two is not decoded into noise; cut inside the header, the error says so."""
    x = (0.1 * rng.standard_normal((3 * 8000, 2))).astype(np.float32)
    whole = tmp_path / "whole.caf"
    sf.write(whole, x, 8000, format="CAF", subtype=subtype)
    data = whole.read_bytes()
    cut = tmp_path / "cut.caf"
    cut.write_bytes(data[:len(data) * 2 // 3 + 1])
    with pytest.raises(sf.LibsndfileError):
        sf.info(str(cut))  # what this reads around
    assert declared_frames(whole) == declared_frames(cut) == len(x)
    said = []
    a, sr = load_audio(cut, on_warning=said.append)
    assert sr == 8000 and 0.3 * len(x) < a.shape[1] < 0.7 * len(x)
    tolerance = 0.01 if subtype == "ULAW" else 1e-4
    np.testing.assert_allclose(a.T, x[:a.shape[1]], atol=tolerance)
    assert audio_info(cut).frames == a.shape[1]
    assert len(said) == 1 and "cut.caf is cut short: its header announces 3.00 s" in said[0]
    cut.write_bytes(data[:40])  # inside the desc chunk
    with pytest.raises(AudioFormatError, match="cut short before any audio"):
        load_audio(cut, on_warning=said.append)
    said.clear()
    assert load_audio(whole, on_warning=said.append)[0].shape == (2, len(x)) and said == []


def test_a_flac_cut_short_gives_its_start_to_a_caller_that_can_say_so(tmp_path, rng):
    """A FLAC cut short stops decoding with an error: with ``on_warning`` the part
    before the fault loads and the warning says how much; without it, the error."""
    x = (0.1 * rng.standard_normal((3 * 16000, 2))).astype(np.float32)
    whole = tmp_path / "whole.flac"
    sf.write(whole, x, 16000)
    data = whole.read_bytes()
    cut = tmp_path / "cut.flac"
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(AudioFormatError, match="damaged"):
        load_audio(cut)
    said = []
    a, sr = load_audio(cut, on_warning=said.append)
    # Most of what the file holds (half of it) is read, and it is the recording's start.
    assert 0.2 * len(x) < a.shape[1] < 0.5 * len(x)
    np.testing.assert_allclose(a.T, x[:a.shape[1]], atol=1e-4)
    assert len(said) == 1 and "cut.flac is cut short: its header announces 3.00 s" in said[0]
    # One second at 16 kHz cut in half: libsndfile fails the first 4096-frame read
    # itself (it decodes ahead into the fault); shorter steps still get the start.
    short = tmp_path / "short.flac"
    sf.write(short, x[:16000, 0], 16000)
    data = short.read_bytes()
    short.write_bytes(data[:len(data) // 2])
    said.clear()
    a, _ = load_audio(short, on_warning=said.append)
    assert 2000 <= a.shape[1] < 8000 and len(said) == 1
    np.testing.assert_allclose(a[0], x[:a.shape[1], 0], atol=1e-4)
    # Damaged from the start: nothing to give, the error.
    head = tmp_path / "head.flac"
    head.write_bytes(data[:200])
    with pytest.raises(AudioFormatError):
        load_audio(head, on_warning=said.append)


def test_scan_energies_and_read_spans(tmp_path, rng):
    """One pass gives Σ x² of each block of a file; a stretch's energy counts only the
    blocks wholly inside it, so the silent stretch before sound that starts in the
    middle of a block has none; spans are read exactly, on their own. A FLAC that
    stops decoding gives no scan (``load_audio`` salvages it)."""
    from demixstudio.audio.io import read_spans, scan_energies

    x = (0.1 * rng.standard_normal((50000, 2))).astype(np.float32)
    x[:21500] = 0.0  # silence, then sound from the middle of the 22nd block of 1000
    path = tmp_path / "x.wav"
    sf.write(path, x, 8000, subtype="FLOAT")
    scan = scan_energies(path, step=1000)
    assert (scan.sr, scan.channels, scan.frames, scan.energies.size) == (8000, 2, 50000, 50)
    exact = np.square(x.astype(np.float64)).reshape(50, 1000, 2).sum(axis=(1, 2))
    np.testing.assert_allclose(scan.energies, exact, rtol=1e-4)
    # Stretches of 5300 frames: the fourth (15900-21200) is silent though its last
    # block (21000-22000) reaches into the sound; the fifth (21200-26500) holds blocks
    # 22-25 wholly.
    e = scan.stretches(5300, 9)
    assert e[:4].tolist() == [0.0, 0.0, 0.0, 0.0]
    np.testing.assert_allclose(e[4], exact[22:26].sum(), rtol=1e-4)
    np.testing.assert_allclose(e[8], exact[43:47].sum(), rtol=1e-4)  # 42400-47700
    spans = [(21500, 30000), (100, 200), (49000, 50000)]
    for (a, b), got in zip(spans, read_spans(path, spans)):
        np.testing.assert_array_equal(got, x[a:b].T)
    flac = tmp_path / "x.flac"
    sf.write(flac, x, 8000)
    data = flac.read_bytes()
    flac.write_bytes(data[:len(data) // 2])
    assert scan_energies(flac) is None


@pytest.mark.parametrize("subtype", ["VORBIS", "OPUS"])
def test_an_ogg_file_cut_short_is_read_and_said(tmp_path, rng, subtype):
    """An Ogg header announces no length and libsndfile reads to the last whole
    page, so a cut Ogg file looks whole: the missing end-of-stream page tells.
    Cut inside a page or exactly between two, the start loads and the caller is
    told; cut before any audio, the error says the file is cut short."""
    sr = 48000
    x = (0.1 * rng.standard_normal((3 * sr, 2))).astype(np.float32)
    whole = tmp_path / "whole.ogg"
    sf.write(whole, x, sr, format="OGG", subtype=subtype)
    data = whole.read_bytes()
    said = []
    assert load_audio(whole, on_warning=said.append)[0].shape == (2, len(x))
    assert said == [] and not ogg_unterminated(whole)
    pages = [i for i in range(len(data)) if data.startswith(b"OggS", i)]
    assert len(pages) > 4
    cuts = {"mid-page": (pages[-3] + pages[-2]) // 2, "between pages": pages[-2]}
    for how, at in cuts.items():
        cut = tmp_path / "cut.ogg"
        cut.write_bytes(data[:at])
        assert ogg_unterminated(cut), how
        said.clear()
        a, rate = load_audio(cut, on_warning=said.append)
        assert rate == sr and 0.5 * len(x) < a.shape[1] < len(x), how
        assert len(said) == 1 and said[0].startswith("cut.ogg is cut short: "), (how, said)
        assert f"the {a.shape[1] / sr:.2f} s that can be read are used" in said[0]
        # The part read is the recording's start, as its decoder gives it.
        whole_audio = load_audio(whole)[0]
        np.testing.assert_allclose(a, whole_audio[:, :a.shape[1]], atol=2e-3)
    head = tmp_path / "head.ogg"
    head.write_bytes(data[:pages[1] + 20])
    with pytest.raises(AudioFormatError, match="cut short"):
        load_audio(head, on_warning=said.append)
    # Not Ogg, or bytes after the last page: nothing to say.
    assert not ogg_unterminated(tmp_path / "missing.ogg")
    junk = tmp_path / "junk.ogg"
    junk.write_bytes(data + b"\0" * 100)
    assert not ogg_unterminated(junk)


def test_a_streamed_wav_with_no_size_in_its_header_is_not_called_cut_short(tmp_path, rng):
    """Writers that cannot seek back leave the data size 0xFFFFFFFF: libsndfile
    reads to the end, and nothing is missing."""
    x = (0.1 * rng.standard_normal((8000, 2))).astype(np.float32)
    path = tmp_path / "stream.wav"
    sf.write(path, x, 8000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    at = data.index(b"data") + 4
    data[at:at + 4] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(data))
    assert declared_frames(path) is None
    said = []
    assert load_audio(path, on_warning=said.append)[0].shape == (2, 8000)
    assert said == []


def test_save_failures_leave_nothing(tmp_path, rng, monkeypatch):
    x = rng.standard_normal((2, 1000)).astype(np.float32) * 0.1
    with pytest.raises(OutputError, match="does not exist"):
        save_audio(tmp_path / "nowhere" / "a.wav", x, 8000)
    with pytest.raises(ParameterError):
        save_audio(tmp_path / "a.mp4", x, 8000)
    with pytest.raises(ParameterError):
        save_audio(tmp_path / "a.flac", x, 8000, bits="float")

    real_write = sf.SoundFile.write

    def full_disk(self, data):
        real_write(self, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sf.SoundFile, "write", full_disk)
    final = tmp_path / "full.wav"
    with pytest.raises(OutputError, match="no space left"):
        save_audio(final, x, 8000)
    assert list(tmp_path.iterdir()) == []


def test_write_errors_name_the_final_file_and_a_full_disk(tmp_path, monkeypatch):
    import shutil

    from demixstudio.audio import io

    x = np.zeros((2, 1000), np.float32)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1, 1, 0))
    why = io._write_failure(tmp_path / ".a.wav.part", x, RuntimeError("System error."))
    assert why == "no space left on the disk"
    with pytest.raises(ParameterError, match="transpose"):
        save_audio(tmp_path / "t.wav", np.zeros((1000, 2), np.float32), 8000)
    with pytest.raises(ParameterError, match="floating point"):
        save_audio(tmp_path / "i.wav", np.zeros((2, 10), np.int16), 8000)
    with pytest.raises(ParameterError, match="sample rate"):
        save_audio(tmp_path / "r.wav", x, 8000.5)
    bad = np.zeros((8000, 1), np.float32)
    bad[6000] = np.inf
    sf.write(tmp_path / "inf.wav", bad, 8000, subtype="FLOAT")
    with pytest.raises(AudioFormatError, match="at 0.750 s"):
        load_audio(tmp_path / "inf.wav")
    assert list(p.name for p in tmp_path.iterdir()) == ["inf.wav"]


def test_saving_through_a_symbolic_link_updates_its_target(tmp_path, rng):
    x = rng.standard_normal((2, 1000)).astype(np.float32) * 0.1
    target = tmp_path / "real" / "a.wav"
    target.parent.mkdir()
    save_audio(target, x, 8000)
    link = tmp_path / "a.wav"
    link.symlink_to(target)
    save_audio(link, x * 2, 8000, bits="float")
    assert link.is_symlink()
    assert np.array_equal(load_audio(target)[0], x * 2)


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path, rng):
    """A writer killed mid-write leaves its temporary; remove_stale_parts clears
    those of processes that no longer run, and only those."""
    import os
    import subprocess
    import sys

    from demixstudio.audio.atomic import atomic_path, remove_stale_parts

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # a PID that ran and is gone (reaped)
    dead = tmp_path / f".song.dsproj.abcd_123.{child.pid}.part"
    mine = tmp_path / f".song.dsproj.efgh_456.{os.getpid()}.part"
    old_style = tmp_path / ".song.abcd1234.dsproj.part"  # no PID: cannot tell
    other = tmp_path / "notes.txt"
    for p in (dead, mine, old_style, other):
        p.write_bytes(b"x")
    # The name atomic_path gives its temporary is one remove_stale_parts knows.
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "song.dsproj") as tmp:
            assert tmp.name.startswith(".song.dsproj.") and tmp.name.endswith(f".{os.getpid()}.part")
            assert remove_stale_parts(tmp_path) == [dead]  # not the one being written
            assert tmp.exists()
            raise RuntimeError("stop")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (mine, old_style, other))
    assert remove_stale_parts(tmp_path / "missing") == []
