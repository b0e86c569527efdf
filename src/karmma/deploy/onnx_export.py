"""Export a student to ONNX, as one graph or as one graph per extractor plus a fusion graph.

*Single graph* (``export_onnx``): inputs ``in_<key>`` ``[B, *input_shape]``
for every modality plus ``availability`` ``[B, M]`` bool; outputs the final
logits ``[B, classes]`` per head. Every extractor runs on every sample
(:meth:`KARMMA.extract` with ``every_sample=True``); a missing modality's
input may be zeros and is replaced by the learned tokens, so one graph serves
every subset. It cannot skip the extractor of a missing modality.

*Split graphs* (``export_split_onnx``, a folder): ``extractor_<key>.onnx``
(``in_<key>`` -> ``tokens_<key>`` ``[B, N_m, C_m]``) per modality and
``fusion.onnx`` (``tokens_<key>`` for every modality + ``availability`` ->
logits). At run time only the extractors of the available modalities run;
the fusion graph gets zeros for the others. ``manifest.json`` holds the
:class:`~karmma.artifacts.ModelInfo`.

Both forms carry the ``ModelInfo`` (ONNX metadata key ``karmma_deploy``),
so ``Recognizer.load`` needs nothing else. The batch dimension is dynamic.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path

import torch
from torch import nn

from karmma.artifacts import METADATA_KEY, SPLIT_MANIFEST, ModelInfo
from karmma.io import atomic_path, write_json
from karmma.models.karmma import KARMMA

OPSET = 18


class StudentGraph(nn.Module):
    """The whole student with positional inputs: ``(*inputs in modality order, availability) -> logits per head``."""

    def __init__(self, model: KARMMA):
        super().__init__()
        self.model = model

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        *inputs, availability = args
        tokens = self.model.extract(dict(zip(self.model.modalities, inputs)), availability, every_sample=True)
        logits = self.model.fuse(tokens, availability).logits
        return tuple(logits[h] for h in self.model.heads)


class FusionGraph(nn.Module):
    """Embedding, fusion and heads: ``(*tokens in modality order, availability) -> logits per head``.

    Tokens of a missing modality are ignored (they may be zeros)."""

    def __init__(self, model: KARMMA):
        super().__init__()
        self.model = model

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        *tokens, availability = args
        logits = self.model.fuse(dict(zip(self.model.modalities, tokens)), availability).logits
        return tuple(logits[h] for h in self.model.heads)


def _export(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
    info: ModelInfo,
) -> Path:
    """Dynamo export with a dynamic batch dimension, then the ModelInfo as metadata."""
    import onnx

    batch = torch.export.Dim("batch", min=1, max=4096)
    dynamic = tuple({0: batch} for _ in args)
    if isinstance(module, (StudentGraph, FusionGraph)):
        dynamic = (dynamic,)  # their forward takes *args: one (variadic) argument
    with atomic_path(path) as tmp:  # a failed export leaves the previous graph, and no partial file
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter prints progress lines and warns about axis names
            torch.onnx.export(
                module.eval(),
                args,
                str(tmp),
                dynamo=True,
                external_data=False,
                opset_version=OPSET,
                optimize=_worth_optimising(module),
                input_names=input_names,
                output_names=output_names,
                dynamic_shapes=dynamic,
            )
        proto = onnx.load(str(tmp))
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, info.to_json()
        onnx.save(proto, str(tmp))
    return path


def _worth_optimising(module: nn.Module) -> bool:
    """The exporter's graph optimiser: a small gain for small models, but over 8 minutes on a
    Swin3D-T student on 2 cores, where ONNX Runtime's own optimisations must do."""
    return sum(p.numel() for p in module.parameters()) < 10_000_000


def _example_availability(model: KARMMA, batch: int) -> torch.Tensor:
    return torch.ones(batch, len(model.modalities), dtype=torch.bool)


def export_onnx(model: KARMMA, info: ModelInfo, path: str | Path) -> Path:
    """One graph for every modality subset (see the module docstring)."""
    model = model.eval()
    example = model.example_inputs(2)
    args = (*(example[k] for k in model.modalities), _example_availability(model, 2))
    names = [f"in_{k}" for k in model.modalities] + ["availability"]
    return _export(StudentGraph(model), args, Path(path), names, list(model.heads), info)


def export_split_onnx(model: KARMMA, info: ModelInfo, folder: str | Path) -> Path:
    """One graph per extractor and a fusion graph, in ``folder`` (see the module docstring)."""
    model = model.eval()
    folder = Path(folder)
    example = model.example_inputs(2)
    tokens = {}
    for key in model.modalities:
        with torch.no_grad():
            tokens[key] = model.extractors[key](example[key])
        _export(
            model.extractors[key],
            (example[key],),
            folder / f"extractor_{key}.onnx",
            [f"in_{key}"],
            [f"tokens_{key}"],
            info,
        )
    args = (*(tokens[k] for k in model.modalities), _example_availability(model, 2))
    names = [f"tokens_{k}" for k in model.modalities] + ["availability"]
    _export(FusionGraph(model), args, folder / "fusion.onnx", names, list(model.heads), info)
    manifest = {
        "info": json.loads(info.to_json()),
        "extractors": {k: f"extractor_{k}.onnx" for k in model.modalities},
        "fusion": "fusion.onnx",
        "token_shapes": {k: list(tokens[k].shape[1:]) for k in model.modalities},
    }
    write_json(folder / SPLIT_MANIFEST, manifest)  # last: the folder is complete
    return folder
