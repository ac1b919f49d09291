"""Selection operations: extract the painted selection to a layer, or remove it.

As in SpectraLayers, a selection is a soft time–frequency mask W (bins,
frames) in [0, 1] — here the paint of one target. Extracting from a layer
splits its content in two: the new layer gets W × content and the source keeps
(1 − W) × content, so the pair sums to what the source held and the session's
books stay balanced. Mask layers stay masks (W·M and (1 − W)·M on the
mixture's STFT, exact and cheap); waveform layers are split with
``apply_mask`` and a subtraction, so the two parts add up to the waveform.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional, Sequence

import numpy as np

from demixstudio.audio.stft import apply_mask
from demixstudio.errors import ParameterError
from demixstudio.session.commands import ReplaceLayers
from demixstudio.session.layer import Layer, Provenance, unique_name

if TYPE_CHECKING:  # pragma: no cover - typing only
    from demixstudio.session.session import Session


class ReplaceContent(ReplaceLayers):
    """ReplaceLayers where some inserted layers keep the id of the layer they replace.

    The session caches audio by layer id; those entries are dropped on both
    do and undo so nobody hears the old content under the same id.
    """

    def __init__(self, remove_ids: Sequence[str], insert: Sequence[Layer], label: str) -> None:
        super().__init__(remove_ids, insert, label=label)
        self._ids = set(remove_ids) | {x.id for x in insert}

    def do(self, s: "Session") -> None:
        for i in self._ids:
            s._audio_cache.pop(i, None)
        super().do(s)

    def undo(self, s: "Session") -> None:
        for i in self._ids:
            s._audio_cache.pop(i, None)
        super().undo(s)


def _selection(s: "Session", target: str) -> np.ndarray:
    """The paint of ``target`` as a mask: float32 (1, bins, frames)."""
    if s.paint.is_empty(target):
        raise ParameterError(f"nothing is painted for target {target!r}; paint a selection first")
    return s.paint.mask(target)[None]


def _with_content(layer: Layer, **content: np.ndarray) -> Layer:
    """A copy of ``layer`` (same id, settings, provenance) holding other content."""
    return Layer(layer.name, colour=layer.colour, gain_db=layer.gain_db, pan=layer.pan,
                 mute=layer.mute, solo=layer.solo, provenance=layer.provenance,
                 layer_id=layer.id, **content)


def _split(s: "Session", layer: Layer, w: np.ndarray) -> tuple:
    """(selected, kept) content dicts of a non-residual layer under selection ``w``."""
    if layer.mask is not None:
        sel = (w * layer.mask).astype(np.float32)
        keep = ((1.0 - w) * layer.mask).astype(np.float32)
        return {"mask": sel}, {"mask": keep}
    sel = apply_mask(layer.waveform, w, s.stft)
    return {"waveform": sel}, {"waveform": (layer.waveform - sel).astype(np.float32)}


def _residual_selected(s: "Session", w: np.ndarray) -> dict:
    """W × the residual's content: a mask when every other layer is a mask."""
    others = s._layers
    if all(x.mask is not None for x in others):
        # The residual of mask layers is the mixture under 1 − Σ masks (STFT is linear).
        rest = np.ones((1, s.stft.bins, s.stft.frames(s.samples)), dtype=np.float32)
        for x in others:
            rest = rest - x.mask
        return {"mask": (w * rest).astype(np.float32)}
    return {"waveform": apply_mask(s.layer_audio(s.residual), w, s.stft)}


def extract_selection(s: "Session", target: str, layer: Optional[Layer | str] = None,
                      name: Optional[str] = None) -> Layer:
    """Move the selected energy of ``layer`` (None: of every layer) into a new layer.

    Returns the new layer, inserted after its source (last before the
    residual when taken from the mixture or the residual). One undo step.
    """
    w = _selection(s, target)
    src = None if layer is None else (layer if isinstance(layer, Layer) else s.layer(layer))
    new_name = unique_name(name or target, {x.name for x in s.layers})
    prov = Provenance("selection", {"target": target},
                      input="mixture" if src is None else src.name)
    colour = s.paint.colour(target)
    label = f"extract {target}" + ("" if src is None else f" from {src.name}")
    if src is None:
        # From the mixture: the new layer is W × mixture, and every layer gives
        # up its share of it (the residual shrinks by itself).
        new = Layer(new_name, mask=w, colour=colour, provenance=prov)
        kept: List[Layer] = [_with_content(x, **_split(s, x, w)[1]) for x in s._layers]
        cmd = ReplaceContent([x.id for x in s._layers], [*kept, new], label)
    elif src.is_residual:
        new = Layer(new_name, colour=colour, provenance=prov, **_residual_selected(s, w))
        cmd = ReplaceContent([], [new], label)
        cmd.index = len(s._layers)
    else:
        sel, keep = _split(s, src, w)
        new = Layer(new_name, colour=colour, provenance=prov, **sel)
        cmd = ReplaceContent([src.id], [_with_content(src, **keep), new], label)
    s.history.push(cmd)
    return new


def remove_selection(s: "Session", target: str, layer: Layer | str) -> Layer:
    """Take the selected energy out of ``layer``; it goes to the residual. One undo step.

    Returns the layer as it is now (same id, the selection removed).
    """
    w = _selection(s, target)
    src = layer if isinstance(layer, Layer) else s.layer(layer)
    if src.is_residual:
        raise ParameterError("the residual holds what no layer claims; extract the selection "
                             "from it to a new layer instead of removing it")
    kept = _with_content(src, **_split(s, src, w)[1])
    s.history.push(ReplaceContent([src.id], [kept], f"remove {target} from {src.name}"))
    return kept
