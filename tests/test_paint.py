"""The paint model (session.paint), strokes with undo, selections, and paint in project files."""

from __future__ import annotations

import json
import re
import zipfile

import numpy as np
import pytest

from conftest import shared
from demixstudio.audio.io import load_audio
from demixstudio.audio.stft import StftConfig, apply_mask
from demixstudio.errors import ParameterError, ProjectFileError
from demixstudio.separation.base import LayerProposal, PaintHint
from demixstudio.separation.hintfiles import load_paint
from demixstudio.session import Session
from demixstudio.session.paint import TILE_BINS, TILE_FRAMES, PaintStore
from demixstudio.session.project import load_project, save_project


def _bearlin(seconds: float = 6.0):
    stems = {}
    for name in ("vocals", "drums", "bass"):
        x, sr = load_audio(shared(f"bearlin_roads/{name}.wav"))
        stems[name] = x[:, : int(seconds * sr)]
    return stems, sr


@pytest.fixture(scope="module")
def music():
    return _bearlin()


@pytest.fixture
def session(music):
    stems, sr = music
    return Session(sum(stems.values()), sr, name="roads")


def _rect(s: Session, t0, t1, f0, f1):
    """Bins and frames of a time–frequency rectangle on the session's grid."""
    times = s.stft.frame_times(s.samples, s.sr)
    freqs = s.stft.bin_freqs(s.sr)
    fr = np.flatnonzero((times >= t0) & (times <= t1))
    bn = np.flatnonzero((freqs >= f0) & (freqs <= f1))
    return slice(bn[0], bn[-1] + 1), slice(fr[0], fr[-1] + 1)


# --------------------------------------------------------------------------
# PaintStore
# --------------------------------------------------------------------------


def test_store_round_trip_is_exact_and_sparse(rng):
    hour = 3600 * 44100
    store = PaintStore(StftConfig(2048, 512), 44100, hour)
    assert (store.bins, store.frames) == (1025, StftConfig(2048, 512).frames(hour))
    store.add_target("voice")
    store.add_target("birds", "#AbCdEf")
    assert store.targets() == ["voice", "birds"] and store.colour("birds") == "#abcdef"
    assert store.colour("voice").startswith("#") and store.is_empty("voice")
    w = rng.random((300, 700)).astype(np.float32)
    store.write("voice", 200, 150_000, w)
    assert np.array_equal(store.region("voice", 200, 500, 150_000, 150_700), w)  # bit-exact
    assert store.region("voice", 190, 200, 150_000, 150_010).max() == 0.0
    assert store.bounds("voice") == (200, 500, 150_000, 150_700)
    # Only the touched tiles exist: an hour-long grid stays small.
    assert store.nbytes() <= 4 * 4 * TILE_BINS * TILE_FRAMES * 4
    # Pooling over frame groups is the max of each group.
    pooled = store.pooled("voice", 64, 150_000 // 64, 150_700 // 64 + 1)
    dense = store.region("voice", 0, store.bins, (150_000 // 64) * 64, (150_700 // 64 + 1) * 64)
    assert np.array_equal(pooled, dense.reshape(store.bins, -1, 64).max(axis=2))
    # Writing zeros frees tiles again.
    store.write("voice", 200, 150_000, np.zeros_like(w))
    assert store.is_empty("voice") and store.nbytes() == 0 and store.bounds("voice") is None
    # Writes past the edges are clipped, values clipped to [0, 1].
    store.write("birds", store.bins - 2, store.frames - 3, np.full((5, 6), 2.0, np.float32))
    assert store.region("birds", store.bins - 2, store.bins, store.frames - 3,
                        store.frames).min() == 1.0
    with pytest.raises(ParameterError, match="finite"):
        store.write("birds", 0, 0, np.full((2, 2), np.nan, np.float32))
    with pytest.raises(ParameterError, match="no paint target"):
        store.mask("nobody")
    with pytest.raises(ParameterError, match="#rrggbb"):
        store.add_target("x", "red")
    store.remove_target("birds")
    assert store.targets() == ["voice"]


def test_stroke_is_one_undo_step_and_emits_regions(session, rng):
    events = []
    session.subscribe(lambda kind, p: events.append((kind, p)))
    b, f = _rect(session, 1.0, 2.0, 300.0, 3000.0)
    w = rng.random((b.stop - b.start, f.stop - f.start)).astype(np.float32)
    assert session.paint_stroke("voice", b, f, w, label="Rectangle")
    assert session.history.undo_label() == "Rectangle"
    paint = [p for k, p in events if k == "paint"]
    assert paint[-1] == {"target": "voice", "bins": (b.start, b.stop), "frames": (f.start, f.stop)}
    painted = session.paint.mask("voice")
    assert np.array_equal(painted[b, f], w) and painted.sum() == pytest.approx(w.sum())

    # A live stroke: many writes, one history entry; undo/redo replay it exactly.
    stroke = session.begin_stroke("voice", "Brush")
    for i in range(5):
        stroke.write(b.start + 3 * i, f.start + 10 * i, np.full((4, 12), 0.25 + 0.1 * i, np.float32))
    assert stroke.finish()
    after = session.paint.mask("voice")
    n_undo = len(session.history._undo)
    session.undo()
    assert np.array_equal(session.paint.mask("voice"), painted)
    session.redo()
    assert np.array_equal(session.paint.mask("voice"), after)
    assert len(session.history._undo) == n_undo
    events.clear()
    session.undo()
    session.undo()
    assert session.paint.is_empty("voice")
    assert any(k == "paint" and p["target"] == "voice" for k, p in events)  # undo emits too

    # A cancelled stroke leaves nothing behind; a stroke that changes nothing records nothing.
    stroke = session.begin_stroke("voice")
    stroke.write(10, 10, np.ones((5, 5), np.float32))
    stroke.cancel()
    assert session.paint.is_empty("voice")
    assert not session.paint_stroke("voice", slice(0, 2), slice(0, 2), np.zeros((2, 2)))


def test_clear_paint_undoes(session):
    b, f = _rect(session, 0.5, 1.0, 100.0, 500.0)
    session.paint_stroke("drums", b, f, np.full((b.stop - b.start, f.stop - f.start), 0.5))
    before = session.paint.mask("drums")
    assert session.clear_paint("drums") and session.paint.is_empty("drums")
    session.undo()
    assert np.array_equal(session.paint.mask("drums"), before)


def test_hints_land_on_the_same_bins(session, rng):
    b, f = _rect(session, 2.0, 3.5, 200.0, 1200.0)
    w = (0.2 + 0.8 * rng.random((b.stop - b.start, f.stop - f.start))).astype(np.float32)
    session.paint_stroke("voice", b, f, w)
    session.paint.add_target("empty")
    hints = session.hints_from_paint()
    assert list(hints.paint) == ["voice"]  # empty targets give no hint
    hint = hints.paint["voice"]
    times = session.stft.frame_times(session.samples, session.sr)
    freqs = session.stft.bin_freqs(session.sr)
    on_own_grid = hint.on_grid(times, freqs)
    assert np.array_equal(on_own_grid, session.paint.mask("voice"))
    # On a coarser method grid the weights land in the same time–frequency box.
    cfg = StftConfig(1024, 256)
    other = hint.on_grid(cfg.frame_times(session.samples, session.sr), cfg.bin_freqs(session.sr))
    rows = np.flatnonzero(other.any(axis=1))
    cols = np.flatnonzero(other.any(axis=0))
    # Within one cell of the painting grid (linear interpolation reaches into the next cell).
    df, dt = session.sr / session.stft.n_fft * 1.001, session.stft.hop / session.sr * 1.001
    assert abs(rows[0] * session.sr / 1024 - freqs[b.start]) <= df
    assert abs(rows[-1] * session.sr / 1024 - freqs[b.stop - 1]) <= df
    assert abs(cols[0] * 256 / session.sr - times[f.start]) <= dt
    assert abs(cols[-1] * 256 / session.sr - times[f.stop - 1]) <= dt


# --------------------------------------------------------------------------
# Paint hints on a method's grid
# --------------------------------------------------------------------------

SR = 44100
GRID = StftConfig.for_rate(SR)
TIMES = GRID.frame_times(5 * SR, SR)  # (frames,)
FREQS = GRID.bin_freqs(SR)  # (bins,)


def _blocks(hint: PaintHint, size: int) -> np.ndarray:
    """``hint`` on the 5-s grid as a method reads it, ``size`` frames at a time: (bins, frames)."""
    return np.concatenate([hint.on_grid(TIMES[t:t + size], FREQS)
                           for t in range(0, TIMES.size, size)], axis=1)


def test_a_mask_of_one_frame_paints_the_nearest_frame_only():
    """2 freqs × 1 frame at 1.0 s, 200–400 Hz: the frame nearest 1.0 s and the bins
    between 200 and 400 Hz, nothing else (it used to paint every frame and bin)."""
    hint = PaintHint(mask=np.ones((2, 1), np.float32), times=np.array([1.0]),
                     freqs=np.array([200.0, 400.0]))
    w = hint.on_grid(TIMES, FREQS)
    nearest = int(np.abs(TIMES - 1.0).argmin())
    assert np.array_equal(np.flatnonzero(w.any(axis=0)), [nearest])
    in_band = np.flatnonzero((FREQS >= 200.0) & (FREQS <= 400.0))
    assert np.array_equal(np.flatnonzero(w.any(axis=1)), in_band)
    assert np.all(w[in_band, nearest] == 1.0)
    # The same frame whichever blocks a method reads the grid in, one frame included.
    for size in (1, 7, 2048):
        assert np.array_equal(_blocks(hint, size), w), size


def test_a_mask_of_one_cell_paints_one_cell():
    hint = PaintHint(mask=np.full((1, 1), 0.5, np.float32), times=np.array([1.0]),
                     freqs=np.array([200.0]))
    w = hint.on_grid(TIMES, FREQS)
    cell = (int(np.abs(FREQS - 200.0).argmin()), int(np.abs(TIMES - 1.0).argmin()))
    assert np.argwhere(w).tolist() == [list(cell)]
    assert w[cell] == np.float32(0.5)
    assert np.array_equal(_blocks(hint, 1), w)
    # A lone frequency over several frames: one bin, linear between the frames.
    row = PaintHint(mask=np.array([[0.0, 1.0]], np.float32), times=np.array([1.0, 2.0]),
                    freqs=np.array([200.0]))
    w = row.on_grid(TIMES, FREQS)
    assert np.array_equal(np.flatnonzero(w.any(axis=1)), [cell[0]])
    inside = (TIMES >= 1.0) & (TIMES <= 2.0)
    assert np.allclose(w[cell[0]], np.where(inside, TIMES - 1.0, 0.0), atol=1e-6)


def test_a_mask_is_interpolated_bilinearly_and_zero_outside_it(rng):
    """On any other grid: scipy's linear RegularGridInterpolator with 0 outside."""
    from scipy.interpolate import RegularGridInterpolator

    times = np.sort(rng.uniform(0.5, 4.0, 40))
    freqs = np.sort(rng.uniform(50.0, 9000.0, 120))
    mask = rng.random((freqs.size, times.size))
    w = PaintHint(mask=mask, times=times, freqs=freqs).on_grid(TIMES, FREQS)
    ff, tt = np.meshgrid(FREQS, TIMES, indexing="ij")
    ref = RegularGridInterpolator((freqs, times), mask, bounds_error=False, fill_value=0.0)(
        np.stack([ff.ravel(), tt.ravel()], 1)).reshape(ff.shape)
    assert np.allclose(w, ref, atol=1e-6)
    assert not w[:, (TIMES < times[0]) | (TIMES > times[-1])].any()
    assert not w[(FREQS < freqs[0]) | (FREQS > freqs[-1])].any()


@pytest.mark.parametrize("times,freqs,mask_shape,says", [
    (np.zeros(0), np.zeros(0), (0, 0), "times is empty"),
    (np.array([[0.0, 1.0]]), np.array([0.0, 1.0]), (2, 2), "times must be a 1-D array"),
    (np.array([0.0, 1.0]), np.array([[0.0, 1.0]]), (2, 2), "freqs must be a 1-D array"),
    (np.array([1.0, 0.0]), np.array([0.0, 1.0]), (2, 2), "times must be strictly increasing"),
    (np.array([0.0, np.inf]), np.array([0.0, 1.0]), (2, 2), "times holds non-finite"),
    (np.array([0.0, 1.0]), np.array([0.0, 1.0, 2.0]), (2, 3), "mask has shape"),
])
def test_a_mask_off_its_grid_is_refused(times, freqs, mask_shape, says):
    hint = PaintHint(mask=np.zeros(mask_shape, np.float32), times=times, freqs=freqs)
    with pytest.raises(ParameterError, match=says):
        hint.on_grid(TIMES, FREQS)


# --------------------------------------------------------------------------
# Paint hint files (the CLI's --hint paint:TARGET=FILE)
# --------------------------------------------------------------------------

AXES = {"times": np.linspace(0.0, 5.0, 50), "freqs": np.linspace(0.0, 22050.0, 200)}


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("arrays,says", [
    ({"mask": np.zeros((0, 0)), "times": np.zeros(0), "freqs": np.zeros(0)}, "times is empty"),
    ({"mask": np.zeros((200, 50)), "times": AXES["times"][None], "freqs": AXES["freqs"]},
     r"times must be a 1-D array, got shape \(1, 50\)"),
    ({"mask": np.zeros((200, 50)), "times": AXES["times"], "freqs": AXES["freqs"][:, None]},
     "freqs must be a 1-D array"),
    ({"mask": np.zeros((50, 200)), **AXES}, r"mask has shape \(50, 200\), expected"),
    ({"mask": np.zeros((200, 50)), "times": AXES["times"][::-1], "freqs": AXES["freqs"]},
     "times must be strictly increasing"),
    ({"mask": np.zeros((200, 50)), "times": AXES["times"],
      "freqs": np.r_[AXES["freqs"][:-1], np.nan]}, "freqs holds non-finite"),
    ({"mask": np.full((200, 50), 2.0), **AXES}, r"mask values must be in \[0, 1\]"),
    ({"mask": np.zeros((200, 50)), "times": AXES["times"]}, "has no freqs"),
    ({"mask": np.array([object()], dtype=object), **AXES}, "mask cannot be read as numbers"),
    ({"mask": np.array(["a"]), **AXES}, "mask holds <U1, not real numbers"),
])
def test_a_malformed_npz_paint_file_is_refused_by_name(tmp_path, arrays, says):
    path = _npz(tmp_path / "strokes.npz", **arrays)
    with pytest.raises(ParameterError, match=re.escape(f"paint hint {path}: ") + says):
        load_paint(path)


def test_a_paint_file_that_is_no_npz_or_a_folder_says_so(tmp_path):
    text = tmp_path / "strokes.npz"
    text.write_text("hello")
    with pytest.raises(ParameterError, match="not a valid NPZ file") as err:
        load_paint(text)
    assert "pickle" not in str(err.value)
    one = tmp_path / "one.npz"
    with open(one, "wb") as f:
        np.save(f, np.ones(3))  # a bare .npy under an .npz name
    with pytest.raises(ParameterError, match="holds one .npy array, not an NPZ archive"):
        load_paint(one)
    bare = tmp_path / "mask.npy"
    np.save(bare, np.ones((3, 4)))  # no axes to put it on a grid: not read as JSON either
    with pytest.raises(ParameterError, match=r"a \.npy holds one array; save the mask"):
        load_paint(bare)
    with pytest.raises(ParameterError, match=re.escape(f"paint hint {tmp_path}: is a folder")):
        load_paint(tmp_path)
    with pytest.raises(ParameterError, match="no such file"):
        load_paint(tmp_path / "nope.npz")


def test_a_valid_npz_paint_file_keeps_its_grid_and_source(tmp_path):
    mask = np.zeros((200, 50), np.float32)
    mask[10:20, 5:15] = 1.0
    path = _npz(tmp_path / "strokes.npz", mask=mask, **AXES)
    hint = load_paint(path)
    assert np.array_equal(hint.mask, mask) and np.array_equal(hint.times, AXES["times"])
    assert hint.source == str(path)


# --------------------------------------------------------------------------
# Selections
# --------------------------------------------------------------------------


def _layers_audio(s: Session):
    return {x.id: s.layer_audio(x).copy() for x in s.layers}


def test_extract_from_the_mixture_keeps_the_books(music):
    stems, sr = music
    s = Session(sum(stems.values()), sr)
    # One waveform layer (the real drum stem) and one mask layer.
    n_bins, n_frames = s.stft.bins, s.stft.frames(s.samples)
    low = np.zeros((1, n_bins, n_frames), np.float32)
    low[:, :40] = 1.0
    s.apply_proposals([LayerProposal("drums", "test", {}, waveform=stems["drums"]),
                       LayerProposal("low", "test", {}, mask=low)])
    before = _layers_audio(s)
    b, f = _rect(s, 1.0, 4.0, 150.0, 2500.0)
    s.paint_stroke("voice", b, f, np.full((b.stop - b.start, f.stop - f.start), 0.8))
    W = s.paint.mask("voice")[None]
    new = s.extract_selection("voice")
    assert s.balance_error() < 1e-4
    assert new.mask is not None and np.array_equal(new.mask, W)
    assert np.abs(s.layer_audio(new) - apply_mask(s.mixture, W, s.stft)).max() < 1e-5
    # Each old layer gave up exactly its selected part and kept its id.
    drums = s.layer("drums")
    part = apply_mask(stems["drums"], W, s.stft)
    assert np.abs(s.layer_audio(drums) + part - before[drums.id]).max() < 1e-5
    assert np.array_equal(s.layer("low").mask, ((1 - W) * low).astype(np.float32))
    assert [x.name for x in s.layers] == ["drums", "low", "voice", "residual"]
    assert new.colour == s.paint.colour("voice")
    # One undo step restores every layer.
    s.undo()
    assert [x.name for x in s.layers] == ["drums", "low", "residual"]
    for lid, audio in before.items():
        assert np.abs(s.layer_audio(s.layer(lid)) - audio).max() < 1e-6
    assert s.balance_error() < 1e-4


def test_extract_and_remove_on_layers(music):
    stems, sr = music
    s = Session(sum(stems.values()), sr)
    rng = np.random.default_rng(5)
    m = rng.random((1, s.stft.bins, s.stft.frames(s.samples))).astype(np.float32)
    s.apply_proposals([LayerProposal("soft", "test", {}, mask=m),
                       LayerProposal("vocals", "test", {}, waveform=stems["vocals"])])
    b, f = _rect(s, 0.5, 5.0, 200.0, 4000.0)
    s.paint_stroke("sel", b, f, np.full((b.stop - b.start, f.stop - f.start), 0.6))
    W = s.paint.mask("sel")[None]

    soft_audio = s.layer_audio(s.layer("soft")).copy()
    piece = s.extract_selection("sel", "soft", name="soft part")
    assert np.array_equal(piece.mask, (W * m).astype(np.float32))
    assert np.abs(s.layer_audio(piece) + s.layer_audio(s.layer("soft")) - soft_audio).max() < 1e-5
    assert [x.name for x in s.layers][:2] == ["soft", "soft part"]

    voc = s.extract_selection("sel", "vocals")
    assert np.abs(s.layer_audio(voc) + s.layer_audio(s.layer("vocals")) - stems["vocals"]).max() < 1e-5
    assert s.balance_error() < 1e-4

    # Remove: the selected energy goes to the residual.
    res_before = s.layer_audio(s.residual).copy()
    vocals_before = s.layer_audio(s.layer("vocals")).copy()
    s.remove_selection("sel", "vocals")
    gone = apply_mask(vocals_before, W, s.stft)
    assert np.abs(s.layer_audio(s.residual) - (res_before + gone)).max() < 1e-4
    assert s.balance_error() < 1e-4
    s.undo()
    assert np.abs(s.layer_audio(s.layer("vocals")) - vocals_before).max() < 1e-6
    with pytest.raises(ParameterError, match="residual"):
        s.remove_selection("sel", "residual")
    s.paint.add_target("nothing")
    with pytest.raises(ParameterError, match="nothing is painted"):
        s.extract_selection("nothing")


def test_extract_from_the_residual_of_mask_layers(music):
    stems, sr = music
    s = Session(sum(stems.values()), sr)
    m = np.zeros((1, s.stft.bins, s.stft.frames(s.samples)), np.float32)
    m[:, 100:] = 0.7
    s.apply_proposals([LayerProposal("high", "test", {}, mask=m)])
    b, f = _rect(s, 1.0, 3.0, 50.0, 5000.0)
    s.paint_stroke("x", b, f, np.ones((b.stop - b.start, f.stop - f.start)))
    res = s.layer_audio(s.residual).copy()
    new = s.extract_selection("x", s.residual)
    assert new.mask is not None  # the residual of mask layers is a mask: stays exact
    W = s.paint.mask("x")[None]
    assert np.abs(s.layer_audio(new) - apply_mask(res, W, s.stft)).max() < 1e-4
    assert s.balance_error() < 1e-4
    assert [x.name for x in s.layers] == ["high", "x", "residual"]


# --------------------------------------------------------------------------
# Project files
# --------------------------------------------------------------------------


def test_project_keeps_paint_exactly(tmp_path, session, rng):
    b, f = _rect(session, 0.2, 5.5, 30.0, 9000.0)
    w = rng.random((b.stop - b.start, f.stop - f.start)).astype(np.float32)
    session.paint_stroke("voice", b, f, w)
    session.paint_stroke("drums", slice(0, 3), slice(0, 5), np.full((3, 5), 0.125))
    session.paint.add_target("later", "#102030")
    p = save_project(session, tmp_path / "p.dsproj")
    t = load_project(p)
    assert t.paint.targets() == ["voice", "drums", "later"]
    for name in t.paint.targets():
        assert t.paint.colour(name) == session.paint.colour(name)
        assert np.array_equal(t.paint.mask(name), session.paint.mask(name))
    assert t.paint.is_empty("later")
    assert not t.history.can_undo

    # A schema-1 project (written before paint existed) still opens, without paint.
    def as_v1(doc):
        doc["schema"] = 1
        del doc["paint"]
    old = _rewrite(p, tmp_path / "old.dsproj", as_v1)
    assert load_project(old).paint.targets() == []
    # Tampered paint is refused with a clear reason.
    bad = _rewrite(p, tmp_path / "bad.dsproj",
                   lambda d: d["paint"][0]["keys"].__setitem__(0, [999, 0]))
    with pytest.raises(ProjectFileError, match="tile keys"):
        load_project(bad)
    bad2 = _rewrite(p, tmp_path / "bad2.dsproj",
                    lambda d: d["paint"][0].__setitem__("colour", "blue"))
    with pytest.raises(ProjectFileError, match="colour"):
        load_project(bad2)


def _rewrite(src, dst, edit):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename == "project.json":
                doc = json.loads(data)
                edit(doc)
                data = json.dumps(doc).encode()
            zout.writestr(item.filename, data)
    return dst
