"""The document: a mixture, its ordered layers and the residual.

Invariant: with every layer at unity settings the layers sum to the mixture.
It holds by construction: the residual's audio is the mixture minus every
other layer, so whatever a method leaves unclaimed (or a user deletes) is
heard in the residual rather than lost.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from demixstudio.audio.io import check_audio, sample_rate
from demixstudio.audio.mixer import MixSettings, gain_matrix, mixdown
from demixstudio.audio.stft import StftConfig, apply_mask
from demixstudio.errors import ParameterError
from demixstudio.jobs.context import JobContext, NullContext
from demixstudio.separation.base import Hints, LayerProposal, PaintHint
from demixstudio.session.commands import History, MoveLayer, ReplaceLayers, SetLayerSettings
from demixstudio.session.layer import (PALETTE, RESIDUAL_COLOUR, Layer, Provenance, check_setting,
                                      unique_name)
from demixstudio.session.paint import AddPaintTarget, PaintStore, Stroke

Listener = Callable[[str, Dict[str, Any]], None]

#: The prefix of correction paint: ``not:NAME`` is energy that does not belong to
#: the layer the method knows as NAME (nmf-paint's ``NOT``).
NOT = "not:"
#: The kinds of hints (``Method.hint_kinds``), each the name of a field of ``Hints``.
HINT_KINDS = ("paint", "examples", "hums", "time_ranges")
#: The kinds a run's layers keep for a rerun (``Provenance.run_hints``). Not paint: it
#: is the session's own (``session.paint``, which the editor hands every rerun; a
#: refinement is new paint), and a copy kept with each run, in the undo history too,
#: could take as much memory as a spectrogram. Recordings are shared, not copied.
KEPT_KINDS = ("examples", "hums", "time_ranges")


class Session:
    """A mixture and the layers pulled out of it.

    Parameters
    ----------
    mixture : np.ndarray [shape=(channels, samples)], float
    sr : int, sample rate in Hz
    name : the song's name (used for export file names)
    stft : StftConfig for masks; default ``StftConfig.for_rate(sr)``

    Events: ``subscribe(fn)`` registers ``fn(kind, payload)``, called after
    each change with kind ``"layers"`` (the list changed), ``"layer"``
    (payload ``{"layer": id, "fields": [...]}``), ``"history"`` or ``"paint"``
    (payload ``{"target": name, "bins": (b0, b1), "frames": (t0, t1)}``, the
    half-open region of ``session.paint`` that changed).
    """

    def __init__(self, mixture: np.ndarray, sr: int, *, name: str = "untitled",
                 stft: Optional[StftConfig] = None, source_path: Optional[str] = None) -> None:
        self.mixture = check_audio(mixture, "the mixture")
        # A fractional rate would be truncated, and every time in the editor be off.
        self.sr = sample_rate(sr)
        self.name = name
        self.source_path = source_path
        self.stft = stft or StftConfig.for_rate(self.sr)
        self._residual = Layer("residual", residual=True, colour=RESIDUAL_COLOUR)
        self._layers: List[Layer] = []
        self._listeners: List[Listener] = []
        self._audio_cache: Dict[str, np.ndarray] = {}
        self.history = History(self, lambda: self._emit("history", {}))
        self.paint = PaintStore(self.stft, self.sr, self.samples, on_change=self._paint_changed)

    # -- basic facts ----------------------------------------------------------
    @property
    def channels(self) -> int:
        return self.mixture.shape[0]

    @property
    def samples(self) -> int:
        return self.mixture.shape[1]

    @property
    def duration_s(self) -> float:
        return self.samples / self.sr

    @property
    def layers(self) -> List[Layer]:
        """Every layer in order, the residual last."""
        return [*self._layers, self._residual]

    @property
    def residual(self) -> Layer:
        return self._residual

    def layer(self, key: str) -> Layer:
        """A layer by id or by name."""
        for layer in self.layers:
            if layer.id == key:
                return layer
        for layer in self.layers:
            if layer.name == key:
                return layer
        names = ", ".join(repr(x.name) for x in self.layers)
        raise ParameterError(f"no layer {key!r}; layers: {names}")

    # -- events -----------------------------------------------------------------
    def subscribe(self, fn: Listener) -> Callable[[], None]:
        """Call ``fn(kind, payload)`` after each change; returns an unsubscribe function."""
        self._listeners.append(fn)
        return lambda: self._listeners.remove(fn) if fn in self._listeners else None

    def _emit(self, kind: str, payload: Dict[str, Any]) -> None:
        for fn in list(self._listeners):
            fn(kind, payload)

    def _layers_changed(self) -> None:
        # Content of surviving layers is immutable; only the residual depends
        # on the set of layers, so only its cache (and removed layers') go.
        live = {x.id for x in self._layers}
        self._audio_cache = {k: v for k, v in self._audio_cache.items() if k in live}
        self._emit("layers", {})

    def _apply_settings(self, layer: Layer, values: Dict[str, Any]) -> None:
        for k, v in values.items():
            setattr(layer, k, v)
        self._emit("layer", {"layer": layer.id, "fields": list(values)})

    # -- audio -------------------------------------------------------------------
    def layer_audio(self, layer: Layer) -> np.ndarray:
        """The layer's audio at unity settings: float32 (channels, samples)."""
        if layer.id in self._audio_cache:
            return self._audio_cache[layer.id]
        if layer.is_residual:
            audio = self.mixture.copy()
            for other in self._layers:
                audio -= self.layer_audio(other)
        elif layer.mask is not None:
            audio = apply_mask(self.mixture, layer.mask, self.stft)
        else:
            audio = layer.waveform
        self._audio_cache[layer.id] = audio
        return audio

    def residual_level_db(self, block: int = 1 << 18) -> float:
        """Energy of the residual relative to the mixture, in dB (−inf if silent).

        Computed block by block without rendering (or caching) the residual,
        so checking a long session costs no full-size copy.
        """
        e_mix = 0.0
        e_res = 0.0
        audios = [self.layer_audio(x) for x in self._layers]
        for start in range(0, self.samples, block):
            m = self.mixture[:, start:start + block].astype(np.float64)
            r = m.copy()
            for a in audios:
                r -= a[:, start:start + block]
            e_mix += float(np.sum(m * m))
            e_res += float(np.sum(r * r))
        if e_res == 0.0:
            return float("-inf")
        return 10.0 * float(np.log10(e_res / max(e_mix, 1e-30)))

    def balance_error(self) -> float:
        """max |sum of layers at unity − mixture|: the bookkeeping check."""
        total = np.zeros_like(self.mixture)
        for layer in self.layers:
            total += self.layer_audio(layer)
        return float(np.abs(total - self.mixture).max())

    def mix_settings(self) -> List[MixSettings]:
        return [MixSettings(x.gain_db, x.pan, x.mute, x.solo) for x in self.layers]

    def mixdown(self) -> np.ndarray:
        """The remix: every layer with its gain, pan, mute and solo. (channels, samples)."""
        stems = [self.layer_audio(x) for x in self.layers]
        return mixdown(stems, gain_matrix(self.mix_settings(), self.channels), self.samples)

    def stem(self, layer: Layer, *, apply_settings: bool = True) -> np.ndarray:
        """One layer as a stem (gain and pan applied unless asked not to; mute/solo ignored)."""
        audio = self.layer_audio(layer)
        if not apply_settings:
            return audio
        g = gain_matrix([MixSettings(layer.gain_db, layer.pan)], self.channels)
        return mixdown([audio], g, self.samples)

    # -- editing (undoable) --------------------------------------------------------
    def set(self, layer: Layer | str, **settings: Any) -> None:
        """Change settings of a layer (name, colour, gain_db, pan, mute, solo)."""
        lay = layer if isinstance(layer, Layer) else self.layer(layer)
        if "name" in settings:
            # Names are unique (methods and extraction number new layers): files,
            # the CLI and scripts refer to layers by name.
            name = check_setting("name", settings["name"])
            if any(x.name == name and x.id != lay.id for x in self.layers):
                raise ParameterError(f"there is already a layer named {name!r}")
        self.history.push(SetLayerSettings(lay.id, **settings))

    def remove(self, *layers: Layer | str) -> None:
        """Delete one or more layers in one undo step; their audio returns to the residual."""
        lays = [x if isinstance(x, Layer) else self.layer(x) for x in layers]
        if not lays:
            raise ParameterError("no layer to delete")
        if any(x.is_residual for x in lays):
            raise ParameterError("the residual cannot be deleted; it is what no layer claims")
        label = f"delete {lays[0].name}" if len(lays) == 1 else f"delete {len(lays)} layers"
        self.history.push(ReplaceLayers(list(dict.fromkeys(x.id for x in lays)), [], label=label))

    def move(self, layer: Layer | str, index: int) -> None:
        lay = layer if isinstance(layer, Layer) else self.layer(layer)
        if lay.is_residual:
            raise ParameterError("the residual stays last")
        self.history.push(MoveLayer(lay.id, index))

    def merge(self, layers: Sequence[Layer | str], name: Optional[str] = None) -> Layer:
        """Replace several layers with one holding their sum (mask sum when all are masks)."""
        lays = [x if isinstance(x, Layer) else self.layer(x) for x in layers]
        if len(lays) < 2 or any(x.is_residual for x in lays):
            raise ParameterError("merge takes two or more layers, not the residual")
        # Names are unique (see set): a name asked for must be free once the merged
        # layers are gone; the default one is numbered if it is taken.
        gone = {x.id for x in lays}
        taken = {x.name for x in self.layers if x.id not in gone}
        if name is not None:
            name = check_setting("name", name)
            if name in taken:
                raise ParameterError(f"there is already a layer named {name!r}")
        name = name or unique_name(" + ".join(x.name for x in lays), taken)
        if all(x.mask is not None for x in lays):
            merged = Layer(name,
                           mask=sum(np.broadcast_to(x.mask, self._mask_shape(x.mask))
                                    for x in lays).astype(np.float32),
                           colour=lays[0].colour, provenance=Provenance("merge", input="layers"))
        else:
            merged = Layer(name,
                           waveform=sum(self.layer_audio(x) for x in lays).astype(np.float32),
                           colour=lays[0].colour, provenance=Provenance("merge", input="layers"))
        self.history.push(ReplaceLayers([x.id for x in lays], [merged], label="merge layers"))
        return merged

    def _mask_shape(self, mask: np.ndarray) -> tuple:
        return (self.channels, mask.shape[1], mask.shape[2])

    # -- paint and selection (undoable; see session/paint.py, session/selection.py) --
    def _paint_changed(self, target: str, bins: tuple, frames: tuple) -> None:
        self._emit("paint", {"target": target, "bins": bins, "frames": frames})

    def add_paint_target(self, name: str, colour: Optional[str] = None) -> str:
        """Create paint target ``name`` as one undo step (a project saves it, empty
        or not); nothing if it exists. Returns the name as stored (stripped)."""
        name = str(name).strip()
        if not name:
            raise ParameterError("a paint target name must not be empty")
        if name not in self.paint:
            self.history.push(AddPaintTarget(name, colour))
        return name

    def begin_stroke(self, target: str, label: str = "Brush") -> Stroke:
        """Start a stroke on ``target`` (created if missing); ``finish()`` makes it one undo step."""
        return Stroke(self, target, label)

    def paint_stroke(self, target: str, bins: slice, frames: slice, new_weights: np.ndarray,
                     label: str = "Brush") -> bool:
        """Set the weights of ``target`` on ``bins`` × ``frames`` to ``new_weights`` as one undo step.

        ``new_weights`` is float32 (bins, frames) of the region, in [0, 1].
        Returns False (and records nothing) if nothing changed.
        """
        w = np.asarray(new_weights, dtype=np.float32)
        expect = (bins.stop - bins.start, frames.stop - frames.start)
        if w.shape != expect:
            raise ParameterError(f"paint weights have shape {w.shape}; the region is {expect}")
        stroke = self.begin_stroke(target, label)
        stroke.write(bins.start, frames.start, w)
        return stroke.finish()

    def clear_paint(self, target: str) -> bool:
        """Erase every weight of ``target`` as one undo step (the target stays)."""
        stroke = self.begin_stroke(target, f"clear {target}")
        stroke.clear()
        return stroke.finish()

    def extract_selection(self, target: str, layer: Optional[Layer | str] = None,
                          name: Optional[str] = None) -> Layer:
        """Move the paint of ``target`` × ``layer``'s content (None: the mixture) to a new layer."""
        from demixstudio.session.selection import extract_selection

        return extract_selection(self, target, layer, name)

    def remove_selection(self, target: str, layer: Layer | str) -> Layer:
        """Send the paint of ``target`` × ``layer``'s content to the residual."""
        from demixstudio.session.selection import remove_selection

        return remove_selection(self, target, layer)

    def hints_from_paint(self) -> Hints:
        """Hints with the paint part filled from ``self.paint``."""
        return Hints(paint=self.paint.to_hints())

    def undo(self) -> bool:
        return self.history.undo()

    def redo(self) -> bool:
        return self.history.redo()

    def clear_history(self) -> None:
        """Forget every undo and redo step, freeing the layers only they held (the
        history also drops its oldest steps by itself beyond ``history.budget``)."""
        self.history.clear()

    # -- separation --------------------------------------------------------------
    def input_audio(self, on: Optional[Layer | str]) -> np.ndarray:
        """What a method sees when run on ``on`` (None = the mixture)."""
        if on is None:
            return self.mixture
        return self.layer_audio(on if isinstance(on, Layer) else self.layer(on))

    def run_method(self, method: str, params: Any = None, hints: Optional[Hints] = None,
                   ctx: Optional[JobContext] = None, *, on: Optional[Layer | str] = None
                   ) -> List[Layer]:
        """Run a registered method on the mixture or a layer and apply its proposals.

        Run on the mixture, the new layers replace all current ones; run on a
        layer, they replace that layer. Either way it is one undoable step.
        """
        from demixstudio.separation.registry import get_method

        m = get_method(method)
        params = checked_params(m, params)
        audio = self.input_audio(on)
        m.check_input(audio)
        hints = hints or Hints()
        proposals = m.separate(audio, self.sr, params, hints, ctx or NullContext())
        return self.apply_proposals(proposals, on=on, hints=hints)

    def apply_proposals(self, proposals: Sequence[LayerProposal], *,
                        on: Optional[Layer | str] = None,
                        hints: Optional[Hints] = None) -> List[Layer]:
        """Turn method proposals into layers, as one undoable step (see ``run_method``).

        ``hints``: what the method was given; the layers keep those of the kinds it
        reads (``Provenance.run_hints``) for a rerun."""
        kept = _kept_hints(proposals, hints)
        parent = None if on is None else (on if isinstance(on, Layer) else self.layer(on))
        base_audio = self.input_audio(parent)
        new: List[Layer] = []
        # The layers that stay beside the new ones: their names and colours are taken.
        if parent is None:
            keep = [self._residual]
        elif parent.is_residual:
            keep = self.layers
        else:
            keep = [x for x in self.layers if x.id != parent.id]
        taken_names = {x.name for x in keep}
        used = {x.colour for x in keep if not x.is_residual}
        source = "mixture" if parent is None else parent.name
        for p in proposals:
            name = unique_name(self._proposal_name(p, source), taken_names)
            taken_names.add(name)
            colour = _free_colour(used, len(new))
            used.add(colour)
            new.append(self._proposal_layer(p, name, colour, source, parent, base_audio, kept))
        if parent is None:
            remove = [x.id for x in self._layers]
            label = f"separate with {proposals[0].method}" if proposals else "separate"
        elif parent.is_residual:
            remove = []  # carving layers out of the residual: it shrinks by itself
            label = f"separate residual with {proposals[0].method}" if proposals else "separate"
        else:
            remove = [parent.id]
            label = f"separate {parent.name}" + (f" with {proposals[0].method}" if proposals else "")
        self.history.push(ReplaceLayers(remove, new, label=label,
                                        index=len(self._layers) if parent is not None
                                        and parent.is_residual else None))
        return new

    # -- the refinement loop ------------------------------------------------------
    def run_of(self, layer: Layer | str) -> List[Layer]:
        """The layers one run of a method made together with ``layer`` (itself
        included, in the session's order): the same method, parameters and input."""
        from demixstudio.separation.registry import available

        layer = layer if isinstance(layer, Layer) else self.layer(layer)
        p = layer.provenance
        if layer.is_residual or p is None or p.method not in available():
            how = "" if p is None or layer.is_residual else f" (it was made by {p.method!r})"
            raise ParameterError(f"layer {layer.name!r} was not made by a separation method"
                                 f"{how}; there is no run to repeat")
        return [x for x in self._layers if x.provenance is not None
                and (x.provenance.method, x.provenance.params, x.provenance.input)
                == (p.method, p.params, p.input)]

    def rerun_input(self, run: Sequence[Layer],
                    audio_of: Optional[Callable[[Layer], np.ndarray]] = None
                    ) -> tuple[Optional[Layer], np.ndarray]:
        """What ``run`` (see :meth:`run_of`) was made from: (parent, audio float32
        (channels, samples)).

        parent None: the run was on the mixture. Otherwise the input layer has
        been replaced by the run, and since a run's layers add up to its input, a
        stand-in is rebuilt from them (named like the input): the sum of their
        masks when all are masks (so new masks stay exact products), else of their
        audio; a run on the residual also takes back what the residual holds now.
        ``audio_of`` renders a layer at unity (default :meth:`layer_audio`; a
        worker thread passes one that leaves the session's cache alone).
        """
        audio_of = audio_of or self.layer_audio
        source = run[0].provenance.input
        if source == "mixture":
            return None, self.mixture
        on_residual = source == self._residual.name
        if not on_residual and all(x.mask is not None for x in run):
            mask = run[0].mask.copy() if len(run) == 1 else np.sum(
                np.broadcast_arrays(*[x.mask for x in run]), axis=0, dtype=np.float32)
            parent = Layer(source, mask=mask)
            return parent, apply_mask(self.mixture, mask, self.stft)
        audio = np.zeros_like(self.mixture)
        for x in list(run) + ([self._residual] if on_residual else []):
            audio += audio_of(x)
        return Layer(source, waveform=audio), audio

    def refinement_hints(self, run: Sequence[Layer], hints: Optional[Hints] = None) -> Hints:
        """The hints for a rerun of ``run`` (see :meth:`run_of`), made from ``hints``:

        - a kind of hint the run's method does not read (``Method.hint_kinds``) is
          refused with ``ParameterError``: the rerun would change nothing yet look
          like a refinement (paint on an hpss or nmf-supervised layer);
        - a kind of recording it reads (``KEPT_KINDS``) that ``hints`` hold none of
          is the run's own (``Provenance.run_hints``, kept while the session is
          open), so that nmf-supervised re-run with other parameters still has its
          examples. Paint is not kept with a run: it is the session's
          (:meth:`hints_from_paint`, which the editor passes), so ``hints`` hold
          all of it, the paint the run was made with and the corrections since;
        - paint that names one of the run's layers by its name in the session
          (``NAME`` or ``not:NAME`` after a rename, or "harmonic: rest" for a run
          on a layer) goes to the method under the name it knows the layer by
          (``Provenance.name_in_run``); names the method knows come first;
        - ``Hints.previous`` is the model state the method reported with the run's
          layers (``extra["state"]``), so that the method continues from the
          separation the corrections were made on. The state lives only while the
          session is open (it is not written to project files): after a reload a
          rerun starts afresh.
        """
        from demixstudio.separation.registry import get_method

        hints = hints or Hints()
        if not run:
            return hints
        prov = run[0].provenance
        method = get_method(prov.method)
        unread = [k for k in HINT_KINDS if getattr(hints, k) and k not in method.hint_kinds]
        if unread:
            raise ParameterError(unread_hints_reason(method, unread))
        own = prov.run_hints or Hints()  # of KEPT_KINDS only
        given = {k: getattr(hints, k) or getattr(own, k) for k in HINT_KINDS}
        given["paint"] = self._paint_in_run_names(run, given["paint"])
        state = prov.analysis.get("state")
        previous = hints.previous or state or {}
        return Hints(**given, previous=previous)

    def _paint_in_run_names(self, run: Sequence[Layer],
                            paint: Dict[str, PaintHint]) -> Dict[str, PaintHint]:
        """``paint`` with the targets that name a layer of ``run`` by its name in the
        session, not by the method's name for it, renamed to the latter (``NAME``
        and ``not:NAME`` alike). Two targets that come to name the same group are
        joined (the larger weight of the two in each bin)."""
        known = {x.provenance.name_in_run for x in run} - {None}
        # A name the method knows stays its own, even if another layer is displayed
        # under it (two layers whose names were swapped).
        alias = {x.name: x.provenance.name_in_run for x in run
                 if x.provenance.name_in_run is not None and x.name not in known}
        out: Dict[str, PaintHint] = {}
        for key, hint in paint.items():
            prefix = NOT if key.startswith(NOT) else ""
            base = key[len(prefix):]
            key = prefix + alias.get(base, base)
            out[key] = hint if key not in out else self._paint_union(out[key], hint)
        # The paint store is the session's, shared by every run: a correction of a
        # layer that neither this run made nor this paint adds ("not:X" for another
        # run's layer) says nothing about this run's groups, and the method would
        # refuse it as a layer it does not make.
        targets = known | {k for k in out if not k.startswith(NOT)}
        return {k: h for k, h in out.items()
                if not k.startswith(NOT) or k[len(NOT):] in targets}

    def _paint_union(self, a: PaintHint, b: PaintHint) -> PaintHint:
        """One PaintHint whose weights are the larger of ``a``'s and ``b``'s: their
        rectangles when neither holds a mask, else a mask on the session's grid."""
        if a.mask is None and b.mask is None:
            return PaintHint(rects=tuple(a.rects) + tuple(b.rects))
        times = self.stft.frame_times(self.samples, self.sr)
        freqs = self.stft.bin_freqs(self.sr)
        mask = np.maximum(a.on_grid(times, freqs), b.on_grid(times, freqs))
        return PaintHint(mask=mask, times=times, freqs=freqs)

    def paint_refusal(self, layer: Layer | str) -> Optional[str]:
        """Why paint cannot refine the run that made ``layer`` (None if it can): the
        layer was made by no separation method, or by one that does not read paint.
        The editor's "Paint what does not belong here" and "Re-run with paint" ask."""
        from demixstudio.separation.registry import get_method

        try:
            run = self.run_of(layer)
        except ParameterError as exc:
            return str(exc)
        method = get_method(run[0].provenance.method)
        return None if "paint" in method.hint_kinds else unread_hints_reason(method, ["paint"])

    def apply_rerun(self, run: Sequence[Layer], parent: Optional[Layer],
                    base_audio: np.ndarray, proposals: Sequence[LayerProposal],
                    hints: Optional[Hints] = None) -> List[Layer]:
        """Put ``proposals`` in place of ``run``'s layers, as one undoable step.

        ``parent`` and ``base_audio`` come from :meth:`rerun_input`; ``hints`` are
        what the method was given (:meth:`refinement_hints`), kept for the next
        rerun. A new layer that is the same part of the run as one of the run's
        layers (it answers the same target or, without a target, the method
        proposed it under the same name: ``Provenance.name_in_run``) takes that
        layer's place in the mix: its name (a rename is kept), colour, gain, pan,
        mute and solo. A refinement changes what is in a layer, not how it is mixed.
        """
        if not proposals:
            raise ParameterError("the method proposed no layers")
        source = run[0].provenance.input
        ids = {x.id for x in run}
        keep = [x for x in self.layers if x.id not in ids]
        taken_names = {x.name for x in keep}
        unclaimed = list(run)
        used = {x.colour for x in keep if not x.is_residual}
        used |= {x.colour for x in run}
        kept = _kept_hints(proposals, hints)
        new: List[Layer] = []
        for p in proposals:
            name = self._proposal_name(p, source)
            before = next((x for x in unclaimed if _same_part(x, p, name)), None)
            if before is not None:
                unclaimed.remove(before)
                name = before.name
            name = unique_name(name, taken_names)
            taken_names.add(name)
            colour = before.colour if before is not None else _free_colour(used, len(new))
            used.add(colour)
            layer = self._proposal_layer(p, name, colour, source, parent, base_audio, kept)
            if before is not None:
                for k in ("gain_db", "pan", "mute", "solo"):
                    setattr(layer, k, getattr(before, k))
            new.append(layer)
        self.history.push(ReplaceLayers([x.id for x in run], new,
                                        label=f"refine with {proposals[0].method}"))
        return new

    def rerun(self, layer: Layer | str, hints: Optional[Hints] = None, params: Any = None,
              ctx: Optional[JobContext] = None) -> List[Layer]:
        """Repeat the run that made ``layer`` with new ``hints`` (the refinement loop).

        The same method, with the run's parameters unless ``params`` are given,
        on what the run was made from (:meth:`rerun_input`), with ``hints`` as
        :meth:`refinement_hints` completes them (hints the method does not read
        are refused; kinds of recording not given are the run's own, but paint is
        what ``hints`` hold); the new layers replace every layer of that run
        (:meth:`apply_rerun`). This is how paint made after a separation refines
        it: paint ``not:NAME`` over what a layer should not hold (NAME: the
        layer's name, or the method's name for it) and rerun it with the
        session's paint (``rerun(layer, session.hints_from_paint())``, or hints
        holding the run's own paint and the correction), and that energy moves
        to the run's other layers.
        """
        from demixstudio.separation.registry import get_method

        run = self.run_of(layer)
        m = get_method(run[0].provenance.method)
        params = (checked_params(m, params) if params is not None
                  else provenance_params(m, run[0].provenance))
        hints = self.refinement_hints(run, hints)
        parent, audio = self.rerun_input(run)
        m.check_input(audio)
        proposals = m.separate(audio, self.sr, params, hints, ctx or NullContext())
        return self.apply_rerun(run, parent, audio, proposals, hints)

    def _proposal_name(self, p: LayerProposal, source: str) -> str:
        """A proposal's layer name on ``source`` (the input's name): what a method
        made of a layer is named after that layer, unless it answers a target."""
        if p.target is not None or source in ("mixture", self._residual.name):
            return p.name
        return f"{source}: {p.name}"

    def _proposal_layer(self, p: LayerProposal, name: str, colour: str, source: str,
                        parent: Optional[Layer], base_audio: np.ndarray,
                        run_hints: Optional[Hints] = None) -> Layer:
        """The layer for proposal ``p`` made from ``source`` (its provenance's input),
        given ``run_hints`` (see ``Provenance.run_hints``)."""
        prov = Provenance(p.method, dict(p.params), input=source, target=p.target,
                          proposal_name=p.name, analysis=dict(p.extra or {}),
                          run_hints=run_hints)
        return Layer(name, colour=colour, provenance=prov,
                     **self._content_for(p, parent, base_audio))

    def _content_for(self, p: LayerProposal, parent: Optional[Layer],
                     base_audio: np.ndarray) -> Dict[str, np.ndarray]:
        """The content of proposal ``p`` as a layer's keyword arguments: a float32
        waveform (channels, samples) or mask (1 or channels, bins, frames).

        Raises ``ParameterError`` (and changes nothing: callers build every
        layer before the one undoable step) if the shape is wrong or a value is
        NaN or infinite.
        """
        c, n = base_audio.shape
        if p.waveform is not None:
            w = np.asarray(p.waveform, dtype=np.float32)
            if w.shape != (c, n):
                raise ParameterError(
                    f"method {p.method!r} returned a waveform of shape {w.shape}; expected {(c, n)}")
            _check_finite(w, p.method)
            return {"waveform": w}
        mask = np.asarray(p.mask, dtype=np.float32)
        expect = (self.stft.bins, self.stft.frames(n))
        if mask.ndim != 3 or mask.shape[1:] != expect or mask.shape[0] not in (1, c):
            raise ParameterError(
                f"method {p.method!r} returned a mask of shape {mask.shape}; "
                f"expected (1 or {c}, {expect[0]}, {expect[1]})")
        _check_finite(mask, p.method)
        if parent is None:
            return {"mask": mask}
        if parent.mask is not None:
            # A mask on a mask layer is a product of masks on the mixture's STFT,
            # so the result stays exact and editable.
            return {"mask": (parent.mask * mask).astype(np.float32)}
        return {"waveform": apply_mask(base_audio, mask, self.stft)}


def _check_finite(a: np.ndarray, method: str) -> None:
    """Raise ``ParameterError`` if float32 ``a`` holds NaN or inf.

    One float64 sum instead of ``np.isfinite(a).all()``: NaN and inf carry
    through it, float32 values cannot overflow it, and numpy casts a buffer at
    a time, so an hour-long stem costs no full-size temporary.
    """
    if not np.isfinite(np.sum(a, dtype=np.float64)):
        raise ParameterError(
            f"method {method!r} produced non-finite values (NaN/Inf); nothing was changed")


def _same_part(layer: Layer, p: LayerProposal, name: str) -> bool:
    """Whether proposal ``p`` of a rerun is the part of the run ``layer`` was: the
    same target, or without one the same name from the method (``name``: ``p``'s
    name in the session, compared with the layer's own only for provenance from an
    older project, which did not keep the method's name: a renamed one is not found)."""
    prov = layer.provenance
    if p.target is not None or prov.target is not None:
        return prov.target == p.target
    if prov.proposal_name is not None:
        return prov.proposal_name == p.name
    return layer.name == name


def _kept_hints(proposals: Sequence[LayerProposal], hints: Optional[Hints]) -> Optional[Hints]:
    """What a rerun of ``proposals``' run can reuse of ``hints``: those of
    ``KEPT_KINDS`` its method reads (None when that is nothing, or the method is not
    registered)."""
    from demixstudio.separation.registry import available, get_method

    if hints is None or not proposals or proposals[0].method not in available():
        return None
    kinds = get_method(proposals[0].method).hint_kinds
    kept = Hints(**{k: dict(getattr(hints, k)) for k in KEPT_KINDS if k in kinds})
    return None if kept.is_empty() else kept


def unread_hints_reason(method: Any, kinds: Sequence[str]) -> str:
    """Why hints of ``kinds`` (``HINT_KINDS``) cannot refine a run of ``method``: it
    does not read them, so a rerun would change nothing. Names the methods that read
    paint when paint is among them."""
    from demixstudio.separation.registry import available, get_method

    def words(ks: Sequence[str]) -> str:
        return " or ".join(k.replace("_", " ") for k in ks)

    reads = (f"it reads {words(method.hint_kinds)}" if method.hint_kinds
             else "it reads no hints")
    text = (f"{method.name} does not read {words(kinds)} ({reads}): re-running it with "
            f"{'them' if len(kinds) > 1 or kinds[0] != 'paint' else 'paint'} would change "
            "nothing")
    if "paint" in kinds:
        painters = [n for n in available() if "paint" in get_method(n).hint_kinds]
        if painters:
            text += f"; the methods that read paint are {' and '.join(painters)}"
    return text


def _free_colour(used: set, n: int) -> str:
    """The first palette colour not in ``used`` (the n-th in turn when all are)."""
    return next((c for c in PALETTE if c not in used), PALETTE[n % len(PALETTE)])


def checked_params(method: Any, params: Any) -> Any:
    """``params`` for ``method`` checked: None gives the defaults, a dict of typed
    values is built into ``method.Params`` (as the GUI's form and project files
    do), an instance of ``method.Params`` is used as it is.

    Raises ``ParameterError`` for anything else (e.g. another method's Params),
    which would otherwise fail inside the method on a missing attribute.
    """
    from demixstudio.separation.base import make_params

    if params is None:
        return method.Params()
    if isinstance(params, dict):
        return make_params(method.Params, values=params)
    if not isinstance(params, method.Params):
        raise ParameterError(
            f"method {method.name!r} takes {type(method).__name__}.Params (or a dict of its "
            f"values); got {type(params).__qualname__}")
    return params


def provenance_params(method: Any, prov: Provenance) -> Any:
    """``method``'s Params rebuilt from a layer's provenance (values it no longer
    declares are dropped, new ones take their defaults)."""
    from demixstudio.separation.base import make_params, param_specs

    known = {spec.name for spec in param_specs(method.Params)}
    return make_params(method.Params, values={k: v for k, v in prov.params.items() if k in known})
