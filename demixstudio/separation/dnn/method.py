"""The ``dnn`` method: a trained stem model from the store; each predicted stem is a layer.

The session adds the residual (mixture minus every layer), so whatever the
model leaves out — or a stem the model was not trained for — stays audible
and the layers always sum to the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import numpy as np

from demixstudio.errors import ParameterError
from demixstudio.jobs.context import JobContext
from demixstudio.separation.base import Hints, LayerProposal, Method, param, params_to_dict
from demixstudio.devices import DEVICE_CHOICES
from demixstudio.separation.dnn import store
from demixstudio.separation.dnn.inference import separate
from demixstudio.separation.registry import register


@dataclass(frozen=True)
class DnnParams:
    model: str = param("", label="Model",
                       help="name of a model in the store (`demixstudio models list`); "
                            "empty = the only one there")
    device: str = param("auto", label="Device", advanced=True, choices=DEVICE_CHOICES,
                        help="where the network runs: auto picks CUDA, then MPS, then the CPU")
    chunk_s: float = param(20.0, label="Chunk (s)", advanced=True, min=1.0, max=600.0,
                           help="seconds per chunk; shortened automatically on out-of-memory")
    overlap_s: float = param(1.0, label="Overlap (s)", min=0.0, max=10.0,
                             help="cross-fade between consecutive chunks")
    wiener_iterations: int = param(0, label="Wiener iterations", min=0, max=10,
                                   help="EM iterations of the multichannel Wiener post-filter "
                                        "(spectrogram models; 0 = ratio masks)")
    memory_mb: float = param(0.0, label="Memory budget (MB)", min=0.0, max=1e6,
                             help="shorten chunks whose predicted working memory exceeds "
                                  "this; 0 = automatic (on the CPU about 1 GB; on a GPU "
                                  "only real out-of-memory errors shorten them)")
    half: bool = param(True, label="Half precision on GPU",
                       help="run the network in float16 on CUDA (ignored on the CPU)")


def resolve_model_name(name: str) -> str:
    """``name``, or the only stored model when ``name`` is empty."""
    if name:
        return name
    names = [m.name for m in store.list_models()]
    if len(names) == 1:
        return names[0]
    if not names:
        raise ParameterError(f"the model store {store.models_dir()} is empty; train one with "
                             "`demixstudio train` or add one with `demixstudio models import`")
    raise ParameterError(f"set model=NAME; the store holds: {', '.join(names)}")


@register
class DnnMethod(Method):
    name = "dnn"
    title = "Deep stem separation"
    summary = ("a trained network (MMDenseNet, Open-Unmix, Wave-U-Net) from the model store; "
               "one layer per stem")
    references = (
        "Takahashi & Mitsufuji 2017, Multi-scale multi-band DenseNets for audio source separation",
        "Stöter, Uhlich, Liutkus & Mitsufuji 2019, Open-Unmix",
        "Stoller, Ewert & Dixon 2018, Wave-U-Net",
    )
    Params = DnnParams

    def separate(self, mix: np.ndarray, sr: int, params: DnnParams, hints: Hints,
                 ctx: JobContext) -> List[LayerProposal]:
        name = resolve_model_name(params.model)
        model = store.load_model(name)
        res = separate(model, mix, sr, device=params.device, chunk_s=params.chunk_s,
                       overlap_s=params.overlap_s, half=params.half,
                       memory_budget_mb=params.memory_mb or None,
                       wiener_iterations=params.wiener_iterations, ctx=ctx)
        p = params_to_dict(params)
        p["model"] = name
        extra = {"device": res.device, "chunk_s": res.chunk_s, "retries": res.retries}
        return [LayerProposal(t, self.name, p, waveform=res.stems[j], extra=extra)
                for j, t in enumerate(res.targets)]
