"""The layer session: books that balance, mixdown rules, events, undo/redo."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import shared
from demixstudio.audio.io import load_audio
from demixstudio.audio.mixer import MixSettings, gain_matrix, mix_into, pan_gains
from demixstudio.errors import ParameterError
from demixstudio.separation.base import LayerProposal
from demixstudio.session import Session


def _real_mix():
    """A stereo mixture of real stems, with the stems (bearlin 'Roads', 3 s)."""
    stems = {n: load_audio(shared(f"bearlin_roads/{n}.wav"))[0][:, 44100 * 4:44100 * 7]
             for n in ("vocals", "bass", "piano")}
    return sum(stems.values()).astype(np.float32), stems


def _ideal_masks(session, stems):
    """Ratio masks from the true stems on the session's STFT grid: (1, bins, frames)."""
    from demixstudio.audio.stft import stft
    mags = {n: np.abs(stft(a, session.stft)).sum(0, keepdims=True) for n, a in stems.items()}
    total = sum(mags.values()) + 1e-12
    return {n: (m / total).astype(np.float32) for n, m in mags.items()}


def test_layers_sum_to_mixture():
    mix, stems = _real_mix()
    s = Session(mix, 44100, name="roads")
    masks = _ideal_masks(s, stems)
    s.apply_proposals([LayerProposal(n, "oracle", {}, mask=m) for n, m in masks.items()])
    assert [x.name for x in s.layers] == ["vocals", "bass", "piano", "residual"]
    assert s.balance_error() <= 1e-4
    # The masks sum to one, so the residual is only rounding.
    assert np.abs(s.layer_audio(s.residual)).max() <= 1e-4
    # Unity settings: the remix is the mixture.
    assert np.abs(s.mixdown() - mix).max() <= 1e-4


def test_mixdown_mute_solo_gain_pan():
    mix, stems = _real_mix()
    s = Session(mix, 44100)
    s.apply_proposals([LayerProposal(n, "oracle", {}, waveform=a) for n, a in stems.items()])
    v, b, p = (s.layer(n) for n in ("vocals", "bass", "piano"))
    s.set(v, mute=True)
    assert np.allclose(s.mixdown(), stems["bass"] + stems["piano"], atol=1e-5)
    s.set(b, solo=True)
    assert np.allclose(s.mixdown(), stems["bass"], atol=1e-6)
    s.set(v, solo=True)  # muted and soloed: mute wins, as in a DAW
    assert np.allclose(s.mixdown(), stems["bass"], atol=1e-6)
    s.set(v, mute=False)
    s.set(b, gain_db=-6.0, pan=-1.0)
    out = s.mixdown()
    g = 10 ** (-6 / 20)
    assert np.allclose(out[0], stems["vocals"][0] + g * np.sqrt(2) * stems["bass"][0], atol=1e-5)
    assert np.allclose(out[1], stems["vocals"][1], atol=1e-5)


def test_constant_power_pan_law():
    for p in np.linspace(-1, 1, 11):
        left, right = pan_gains(p)
        assert abs(left ** 2 + right ** 2 - 2.0) < 1e-9
    assert np.allclose(pan_gains(0.0), (1.0, 1.0))
    g = gain_matrix([MixSettings(pan=0.5)], channels=1)
    assert g[0, 0] == 1.0  # pan does not apply to mono output


def test_mix_into_does_not_allocate_beyond_scratch(rng):
    stems = [rng.standard_normal((2, 1000)).astype(np.float32) for _ in range(3)]
    g = gain_matrix([MixSettings(-3.0, 0.2), MixSettings(), MixSettings(mute=True)], 2)
    out = np.empty((2, 256), np.float32)
    scratch = np.empty(256, np.float32)
    mix_into(out, stems, g, 900, scratch)  # past the end: zeros beyond sample 1000
    expect = g[0][:, None] * stems[0][:, 900:] + stems[1][:, 900:]
    assert np.allclose(out[:, :100], expect, atol=1e-6) and not out[:, 100:].any()


def test_events_and_undo_redo():
    mix, stems = _real_mix()
    s = Session(mix, 44100)
    seen = []
    s.subscribe(lambda kind, payload: seen.append((kind, payload)))
    s.apply_proposals([LayerProposal(n, "oracle", {}, waveform=a) for n, a in stems.items()])
    assert ("layers", {}) in seen
    seen.clear()
    s.set("bass", gain_db=-12.0, name="double bass")
    assert ("layer", {"layer": s.layer("double bass").id, "fields": ["gain_db", "name"]}) in seen
    s.remove("piano")
    assert [x.name for x in s.layers] == ["vocals", "double bass", "residual"]
    # The deleted piano is heard in the residual: the books still balance.
    assert np.allclose(s.layer_audio(s.residual), stems["piano"], atol=1e-5)
    assert s.balance_error() <= 1e-4
    assert s.undo() and [x.name for x in s.layers] == ["vocals", "double bass", "piano", "residual"]
    assert s.undo() and s.layer("bass").gain_db == 0.0
    assert s.redo() and s.layer("double bass").gain_db == -12.0
    s.move("piano", 0)
    assert [x.name for x in s.layers][0] == "piano"
    assert s.history.undo_label() == "reorder layers"
    s.undo()
    merged = s.merge(["vocals", "piano"], name="vox+piano")
    assert np.allclose(s.layer_audio(merged), stems["vocals"] + stems["piano"], atol=1e-5)
    s.undo()
    assert [x.name for x in s.layers] == ["vocals", "double bass", "piano", "residual"]
    # Names stay unique: a merge may take one of its own layers' names, not another's,
    # and its default name is numbered when taken.
    with pytest.raises(ParameterError, match="already a layer named 'double bass'"):
        s.merge(["vocals", "piano"], name="double bass")
    assert s.merge(["vocals", "piano"], name="piano").name == "piano"
    s.undo()
    s.set("double bass", name="vocals + piano")
    assert s.merge(["vocals", "piano"]).name == "vocals + piano 2"
    s.undo()
    s.undo()
    with pytest.raises(ParameterError):
        s.remove("residual")
    with pytest.raises(ParameterError, match="between -1"):
        s.set("vocals", pan=3)


def test_method_on_a_layer_replaces_it():
    """Re-separate a mask layer: the new masks are products, the books stay exact."""
    mix, stems = _real_mix()
    s = Session(mix, 44100)
    masks = _ideal_masks(s, stems)
    s.apply_proposals([LayerProposal("vocals", "oracle", {}, mask=masks["vocals"]),
                       LayerProposal("band", "oracle", {}, mask=masks["bass"] + masks["piano"])])
    band = s.layer("band")
    inner = masks["bass"] / np.maximum(masks["bass"] + masks["piano"], 1e-12)
    new = s.apply_proposals([LayerProposal("low", "oracle", {}, mask=inner),
                             LayerProposal("high", "oracle", {}, mask=1 - inner)], on=band)
    assert [x.name for x in s.layers] == ["vocals", "band: low", "band: high", "residual"]
    assert np.allclose(new[0].mask, masks["bass"], atol=1e-5)
    assert s.balance_error() <= 1e-4
    assert np.abs(s.layer_audio(s.residual)).max() <= 1e-3
    s.undo()
    assert [x.name for x in s.layers] == ["vocals", "band", "residual"]


def test_method_on_mixture_replaces_all_and_runs_registry():
    mix, stems = _real_mix()
    s = Session(mix, 44100)
    s.apply_proposals([LayerProposal("x", "oracle", {}, waveform=mix * 0.5)])
    layers = s.run_method("ica")
    assert [x.name for x in s.layers] == ["source 1", "source 2", "residual"]
    assert all(x.provenance.method == "ica" for x in layers)
    assert s.balance_error() <= 1e-4
    s.undo()
    assert [x.name for x in s.layers] == ["x", "residual"]


def test_bad_proposals():
    mix, _ = _real_mix()
    s = Session(mix, 44100)
    with pytest.raises(ParameterError, match="mask of shape"):
        s.apply_proposals([LayerProposal("x", "m", {}, mask=np.ones((1, 10, 10), np.float32))])
    with pytest.raises(ParameterError, match="waveform of shape"):
        s.apply_proposals([LayerProposal("x", "m", {}, waveform=mix[:, :10])])
    assert [x.name for x in s.layers] == ["residual"]


def test_non_finite_proposals_are_refused_and_change_nothing(monkeypatch):
    """A NaN or inf in a proposal (a waveform, a mask, a method's output) is a
    clear error naming the method, raised before the session changes: the
    layers, their audio, the books and the undo history stay as they were."""
    from demixstudio.separation import get_method

    mix, stems = _real_mix()
    s = Session(mix, 44100)
    masks = _ideal_masks(s, stems)
    s.apply_proposals([LayerProposal(n, "oracle", {}, mask=m) for n, m in masks.items()])
    before = [(x.id, x.name) for x in s.layers]
    residual = s.layer_audio(s.residual).copy()
    undo_label = s.history.undo_label()
    seen = []
    s.subscribe(lambda kind, payload: seen.append(kind))
    bad_wave = stems["vocals"].copy()
    bad_wave[1, 1000] = np.nan
    bad_mask = masks["bass"].copy()
    bad_mask[0, 5, 7] = np.inf
    message = "method 'broken' produced non-finite values \\(NaN/Inf\\); nothing was changed"
    for on in (None, "piano"):
        with pytest.raises(ParameterError, match=message):
            s.apply_proposals([LayerProposal("fine", "broken", {}, mask=masks["vocals"]),
                               LayerProposal("nan", "broken", {}, waveform=bad_wave)], on=on)
        with pytest.raises(ParameterError, match=message):
            s.apply_proposals([LayerProposal("inf", "broken", {}, mask=bad_mask)], on=on)
    # Through a method, as the GUI and CLI run one.
    hpss = type(get_method("hpss"))
    monkeypatch.setattr(hpss, "separate", lambda self, mix, sr, params, hints, ctx: [
        LayerProposal("nan", "hpss", {}, waveform=np.full_like(mix, np.nan))])
    with pytest.raises(ParameterError, match="method 'hpss' produced non-finite values"):
        s.run_method("hpss")
    assert [(x.id, x.name) for x in s.layers] == before
    assert s.history.undo_label() == undo_label and not s.history.can_redo
    assert seen == []
    np.testing.assert_array_equal(s.layer_audio(s.residual), residual)
    assert s.balance_error() <= 1e-4


def test_run_method_checks_the_type_of_its_params():
    """Another method's Params is a ParameterError naming both, not an
    AttributeError from inside the method; a dict of values is built into the
    method's Params (as make_params does for the GUI and project files)."""
    from demixstudio.separation import get_method

    mix, _ = _real_mix()
    s = Session(mix[:, : 44100], 44100)
    with pytest.raises(ParameterError, match="method 'hpss' takes .*Params.*got Ilrma.Params"):
        s.run_method("hpss", get_method("ilrma").Params())
    with pytest.raises(ParameterError, match="got str"):
        s.run_method("hpss", "margin=2")
    with pytest.raises(ParameterError, match="unknown parameter 'iterations'"):
        s.run_method("hpss", {"iterations": 3})
    assert [x.name for x in s.layers] == ["residual"]
    layers = s.run_method("hpss", {"margin": 2.0})
    assert layers and all(x.provenance.params["margin"] == 2.0 for x in layers)
    # rerun takes new params the same way.
    with pytest.raises(ParameterError, match="got Ilrma.Params"):
        s.rerun(layers[0], params=get_method("ilrma").Params())
    s.rerun(layers[0], params={"margin": 1.0})
    assert s.layers[0].provenance.params["margin"] == 1.0


def test_every_method_refuses_silence_and_a_silent_layer_loses_nothing():
    """A silent input (an empty recording, a layer of zeros) is a clear error for
    every method, not NaN layers; re-separating a silent layer leaves the session
    as it was."""
    from demixstudio.jobs.context import NullContext
    from demixstudio.separation import AudioHint, Hints, PaintHint, available, get_method

    sr = 16000
    noise = np.random.default_rng(0).standard_normal((2, sr)).astype(np.float32)
    hints = Hints(examples={"a": [AudioHint(noise[:1], sr)], "b": [AudioHint(noise[1:], sr)]},
                  hums={"a": [AudioHint(noise[:1], sr)]},
                  paint={"a": PaintHint(rects=((0.1, 0.5, 100.0, 2000.0, 1.0),))})
    silence = np.zeros((2, sr), np.float32)
    for name in available():
        m = get_method(name)
        with pytest.raises(ParameterError, match="silent"):
            m.check_input(silence)
        if name != "dnn":  # its model store is checked first; the session path covers it
            with pytest.raises(ParameterError, match="silent"):
                m.separate(silence, sr, m.Params(), hints, NullContext())
    mix, _ = _real_mix()
    s = Session(mix, 44100)
    s.apply_proposals([LayerProposal("x", "m", {}, waveform=mix),
                       LayerProposal("empty", "m", {}, waveform=np.zeros_like(mix))])
    with pytest.raises(ParameterError, match="silent"):
        s.run_method("nmf", on="empty")
    assert [x.name for x in s.layers] == ["x", "empty", "residual"]


def test_rerun_of_a_split_layer_and_of_a_carved_residual():
    """Session.rerun repeats a run on what it was made from: a layer that run
    replaced (rebuilt as the sum of the run's masks, so the new masks are exact
    products again) or the residual (what it holds now plus the run's layers);
    layers outside the run are left alone and the books stay balanced."""
    from demixstudio.separation import Hints, PaintHint, get_method, make_params
    from demixstudio.session.layer import Provenance

    mix, _ = _real_mix()
    mix = mix[:, : 3 * 44100].copy()
    s = Session(mix, 44100)
    paint = {"low": PaintHint(rects=((0.2, 2.5, 40.0, 300.0, 1.0),)),
             "rest": PaintHint(rects=((0.2, 2.5, 2000.0, 8000.0, 1.0),))}
    fast = make_params(get_method("nmf-paint").Params, {"max_iter": 30})
    s.run_method("hpss")
    harmonic = s.layers[0]
    children = s.run_method("nmf-paint", fast, Hints(paint=paint), on=harmonic)
    names = [x.name for x in s.layers]
    assert [x.provenance.input for x in children] == [harmonic.name] * 2
    paint["not:low"] = PaintHint(rects=((1.0, 2.0, 0.0, 20000.0, 1.0),))
    new = s.rerun(children[0], Hints(paint=paint))
    assert [x.name for x in s.layers] == names
    np.testing.assert_allclose(sum(x.mask for x in new), harmonic.mask, atol=1e-4)
    assert s.balance_error() <= 1e-4
    # On the residual: a waveform layer keeps half the mixture, the run carves the rest.
    s2 = Session(mix, 44100)
    s2.apply_proposals([LayerProposal("half", "m", {}, waveform=mix * 0.5)])
    carved = s2.run_method("nmf-paint", fast, Hints(paint=paint), on=s2.residual)
    assert all(x.provenance.input == "residual" for x in carved)
    new = s2.rerun(carved[1], Hints(paint={k: v for k, v in paint.items() if k != "not:low"}))
    assert [x.name for x in s2.layers] == ["half", "low", "rest", "residual"]
    np.testing.assert_allclose(sum(s2.layer_audio(x) for x in new), mix * 0.5, atol=1e-4)
    assert np.abs(s2.layer_audio(s2.residual)).max() < 1e-3
    assert s2.balance_error() <= 1e-4
    with pytest.raises(ParameterError, match="no run"):
        s2.rerun(s2.residual)
    p = new[0].provenance
    assert p.target == "low" and Provenance.from_dict(p.as_dict()) == p


def _paint_run(seconds: float = 2.0):
    """A session of the real mixture's first ``seconds`` with an nmf-paint run of 20
    iterations: (session, the run's layers "low", "high", "rest", its paint, params)."""
    from demixstudio.separation import Hints, PaintHint, get_method, make_params

    mix, _ = _real_mix()
    s = Session(mix[:, : int(seconds * 44100)].copy(), 44100)
    paint = {"low": PaintHint(rects=((0.2, 1.8, 40.0, 300.0, 1.0),)),
             "high": PaintHint(rects=((0.2, 1.8, 2000.0, 8000.0, 1.0),))}
    fast = make_params(get_method("nmf-paint").Params, {"max_iter": 20})
    first = s.run_method("nmf-paint", fast, Hints(paint=dict(paint)))
    assert [x.name for x in s.layers] == ["low", "high", "rest", "residual"]
    return s, first, paint, fast


def test_a_rerun_keeps_the_rename_and_mix_of_layers_without_a_target():
    """A layer without a target (nmf-paint's rest, nmf's "source 2", hpss's
    "percussive", "harmonic: rest" of a run on a layer) is found again by a rerun by
    the name the method gave it (``Provenance.proposal_name``, kept in project files),
    not by its name in the session: renamed, it keeps that name, its colour, gain,
    pan, mute and solo. (Before, a renamed one was replaced by a new layer under the
    method's name, at unity.)"""
    from demixstudio.separation import Hints, get_method, make_params
    from demixstudio.session.layer import Provenance

    s, _first, paint, fast = _paint_run()
    mix = s.mixture
    settings = dict(name="background", colour="#123456", gain_db=-12.0, pan=0.5, mute=True,
                    solo=True)
    nmf = make_params(get_method("nmf").Params, {"max_iter": 20})
    for method, params, hints, layer, on in (
            ("nmf-paint", fast, Hints(paint=paint), "rest", None),
            ("nmf", nmf, None, "source 2", None),
            ("hpss", None, None, "percussive", None),
            ("nmf-paint", fast, Hints(paint=paint), "harmonic: rest", "harmonic")):
        s = Session(mix, 44100)
        if on is not None:
            s.run_method("hpss")
        first = s.run_method(method, params, hints, on=on)
        s.set(layer, **settings)
        names = [x.name for x in s.layers]
        new = s.rerun(first[0], hints)
        assert [x.name for x in s.layers] == names, method
        again = s.layer("background")
        assert again in new and {k: getattr(again, k) for k in settings} == settings, method
        assert again.provenance.proposal_name == layer.split(": ")[-1]
        assert Provenance.from_dict(again.provenance.as_dict()) == again.provenance
        assert s.balance_error() <= 1e-4


def test_paint_naming_a_layer_by_its_name_in_the_session_reaches_the_method():
    """Session.rerun reads paint that names one of the run's layers by its name in the
    session (a rename, or "harmonic: rest" of a run on a layer) as the method's name
    for it: nmf-paint corrects that layer and continues from the run's factorisation
    (no "factorising" stage), where before ``not:background`` on the renamed rest
    layer made a new target "background" and started afresh."""
    from demixstudio.jobs.context import JobContext
    from demixstudio.separation import Hints, PaintHint

    s, first, paint, _fast = _paint_run()
    s.set("rest", name="background")
    s.set("low", name="Low end")
    veto = PaintHint(rects=((0.5, 1.5, 2000.0, 8000.0, 1.0),))
    more = PaintHint(rects=((1.0, 1.5, 40.0, 200.0, 1.0),))
    given = s.refinement_hints(first, Hints(paint={**paint, "not:background": veto,
                                                     "Low end": more}))
    assert sorted(given.paint) == ["high", "low", "not:rest"]
    # Two names of one layer: their paint is joined.
    assert given.paint["low"].rects == paint["low"].rects + more.rects
    assert given.paint["not:rest"] is veto
    assert given.previous is first[0].provenance.analysis["state"]
    # The session's paint store is shared by all runs: a correction of a layer of
    # another run is left out (the method would refuse it), while one of a target
    # this paint adds stays.
    other = s.refinement_hints(first, Hints(paint={**paint, "not:vocals": veto,
                                                   "flute": more, "not:flute": veto}))
    assert sorted(other.paint) == ["flute", "high", "low", "not:flute"]
    # A name the method knows is its own, whatever layer is displayed under it.
    s.set("high", name="low!")
    s.set("Low end", name="high")
    assert sorted(s.refinement_hints(first, Hints(paint=paint)).paint) == ["high", "low"]
    s.set("high", name="Low end")
    s.set("low!", name="high")

    stages = set()
    ctx = JobContext(on_progress=lambda p: stages.add(p.message), min_interval_s=0)
    times = s.stft.frame_times(s.samples, s.sr)
    freqs = s.stft.bin_freqs(s.sr)
    w = veto.on_grid(times, freqs)
    held = float((first[2].mask[0] * w).sum() / w.sum())
    new = s.rerun("background", Hints(paint={**paint, "not:background": veto}), ctx=ctx)
    assert [x.name for x in s.layers] == ["Low end", "high", "background", "residual"]
    assert "fitting" in stages and "factorising" not in stages, stages
    rest = s.layer("background")
    assert rest is new[2] and rest.provenance.target is None
    assert float((rest.mask[0] * w).sum() / w.sum()) < min(0.1, 0.5 * held), held
    # A run on a layer: its rest layer is shown as "harmonic: rest".
    on = Session(s.mixture, 44100)
    on.run_method("hpss")
    split = on.run_method("nmf-paint", first[0].provenance.params, Hints(paint=paint),
                          on="harmonic")
    assert split[2].name == "harmonic: rest"
    given = on.refinement_hints(split, Hints(paint={**paint, "not:harmonic: rest": veto}))
    assert sorted(given.paint) == ["high", "low", "not:rest"]


def test_a_rerun_refuses_hints_its_method_does_not_read_and_keeps_the_runs_own():
    """A rerun with paint of a run whose method does not read paint (hpss,
    nmf-supervised) is refused with the reason, and nothing changes (before, it
    'succeeded', changed nothing and added an undo step "refine with ...").
    A kind of hint the rerun is not given is the run's own: nmf-supervised re-run
    with other parameters still has its examples (it failed with "needs example
    recordings ... got 0")."""
    from demixstudio.separation import AudioHint, Hints, PaintHint, get_method, make_params

    s, first, _paint, _fast = _paint_run()
    veto = PaintHint(rects=((0.5, 1.5, 100.0, 3000.0, 1.0),))
    assert s.paint_refusal(first[2]) is None
    assert "no run" in s.paint_refusal(s.residual)

    s.run_method("hpss")
    label, ids = s.history.undo_label(), [x.id for x in s.layers]
    assert "hpss does not read paint" in s.paint_refusal("harmonic")
    with pytest.raises(ParameterError, match="hpss does not read paint .*nmf-paint"):
        s.rerun("harmonic", Hints(paint={"not:harmonic": veto}))
    assert s.history.undo_label() == label and [x.id for x in s.layers] == ids

    stems = {n: load_audio(shared(f"bearlin_roads/{n}.wav"))[0][:, 44100 * 9:44100 * 11]
             for n in ("vocals", "bass")}
    examples = {n: [AudioHint(a, 44100, n)] for n, a in stems.items()}
    m = get_method("nmf-supervised")
    values = {"max_iter": 10, "components": 8}
    run = s.run_method("nmf-supervised", make_params(m.Params, values), Hints(examples=examples))
    label = s.history.undo_label()
    with pytest.raises(ParameterError, match="nmf-supervised does not read paint"):
        s.rerun(run[0], Hints(paint={"not:vocals": veto}, examples=examples))
    assert s.history.undo_label() == label
    new = s.rerun(run[0], params={**values, "mask_power": 1.0})
    assert [x.provenance.target for x in new] == ["vocals", "bass"]
    assert new[0].provenance.params["mask_power"] == 1.0
    assert new[0].provenance.run_hints.examples.keys() == examples.keys()
    assert s.balance_error() <= 1e-4


def test_a_fractional_sample_rate_is_refused():
    x = np.zeros((1, 1000), np.float32)
    x[0, ::7] = 0.1
    for bad in (44100.9, 0, -8000, True):
        with pytest.raises(ParameterError, match="sample rate"):
            Session(x, bad)
    assert Session(x, 8000.0).sr == 8000


@pytest.mark.parametrize("method, values, advice, layers", [
    ("nmf", {"per_component": True, "components": 12, "max_iter": 5}, "fewer layers", 3),
    ("duet", {"sources": 3}, "fewer layers", 3),
    ("adress", {"sources": 3}, "fewer layers", 3),
    ("hpss", {"margin": 2.0}, "fewer layers", 3),  # masks per channel
    ("repet", {"mode": "sim"}, "shorter stretch", 2),
])
def test_layers_that_cannot_fit_in_memory_are_refused_before_allocating(monkeypatch, method,
                                                                        values, advice, layers):
    """With less memory free than the masks need, the run stops with a message that
    says how much and what to change, before allocating them; the session keeps what
    it had. (Unchecked, NumPy hands out the array lazily and the system kills the
    editor while it is filled: 20 per-component layers of an hour need ~50 GB.)"""
    from demixstudio.errors import InsufficientMemoryError
    from demixstudio.jobs import memory
    from demixstudio.separation import get_method, make_params

    mix, _ = _real_mix()
    s = Session(mix, 44100)
    s.run_method("hpss", make_params(get_method("hpss").Params, {}))
    before = [x.id for x in s.layers]
    undo = s.history.undo_label()
    masks = s.stft.bins * s.stft.frames(mix.shape[1]) * 4 * 3  # 3 layers at least
    monkeypatch.setattr(memory, "available_bytes", lambda: int(masks / 2))
    with pytest.raises(InsufficientMemoryError, match=advice) as err:
        s.run_method(method, make_params(get_method(method).Params, values))
    assert "would need" in str(err.value) and "is free" in str(err.value)
    assert [x.id for x in s.layers] == before and s.history.undo_label() == undo
    monkeypatch.setattr(memory, "available_bytes", lambda: 64 * masks)
    assert len(s.run_method(method, make_params(get_method(method).Params, values))) >= layers


@pytest.mark.parametrize("method, values, advice", [
    ("projet", {"mode": "pan+delay", "iterations": 2}, "fewer directions"),
    ("ilrma", {"iterations": 3}, "larger n_fft"),
])
def test_working_arrays_that_cannot_fit_are_refused(monkeypatch, method, values, advice):
    """PROJET's kernel (frequencies × projections × directions: 19 GB at the largest
    pan+delay settings) and ILRMA's model (frames × components: 12 GB for n_fft=16,
    256 components on 10 minutes) are checked against the free memory before they
    are built; the refusal names what to change, and the session is unchanged."""
    from demixstudio.errors import InsufficientMemoryError
    from demixstudio.jobs import memory
    from demixstudio.separation import get_method, make_params

    mix, _ = _real_mix()
    s = Session(mix, 44100)
    before = [x.id for x in s.layers]
    monkeypatch.setattr(memory, "available_bytes", lambda: 2**20)
    with pytest.raises(InsufficientMemoryError, match=advice) as err:
        s.run_method(method, make_params(get_method(method).Params, values))
    assert "would need" in str(err.value) and [x.id for x in s.layers] == before
    monkeypatch.setattr(memory, "available_bytes", lambda: 2**40)
    assert len(s.run_method(method, make_params(get_method(method).Params, values))) >= 2
