"""Trained models on disk: one loader for every form, one writer for the deployable student.

:func:`load_model` reads a run folder (its ``checkpoints/best.ckpt`` or
``last.ckpt``), a Lightning ``.ckpt`` or a student ``.safetensors``, and returns
the model in eval mode with its :class:`ModelInfo`: the training config, the
heads and their class names, the input shapes and the frame recipe of the
training data (:class:`~karmma.data.recipe.PrepareSettings`: flow method and
stride rule, short side, frame rate, flow bound), so a raw video is turned into
inputs exactly as training saw them. :func:`save_student` writes the one
student format: the weights as ``.safetensors`` with the ``ModelInfo`` in the
metadata. The ONNX forms (:mod:`karmma.deploy.onnx_export`) carry the same
``ModelInfo``. No pickle, no Lightning. :class:`ModelInfo` needs no torch (the
light install reads it from ONNX exports); the model builders are imported where used.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from karmma.checkpoints import (
    CHECKPOINT_RECIPE,
    CheckpointError,
    checkpoint_config,
    load_model_state,
    model_state,
    read_checkpoint,
    resolve_checkpoint,
    upgrade_config,
)
from karmma.configuration import apply_override, from_dict
from karmma.data.recipe import PrepareSettings, recorded_recipe
from karmma.train_config import ClipConfig, TrainConfig, stage_names

if TYPE_CHECKING:  # torch, for the PyTorch forms only
    from karmma.models.karmma import KARMMA

#: metadata key of the :class:`ModelInfo` JSON in safetensors and ONNX files
METADATA_KEY = "karmma_deploy"
#: the file of a split-ONNX folder that lists its graphs and holds the :class:`ModelInfo`
SPLIT_MANIFEST = "manifest.json"

log = logging.getLogger("karmma.artifacts")


@dataclass
class ModelInfo:
    """Everything about a trained model that inference needs besides its weights (how the report
    describes a model is its stage's record, :class:`karmma.train_config.StageSpec`).

    Attributes:
        config: the training config (a ``TrainConfig`` as a dict).
        heads: classes per head, e.g. ``{"verb": 97, "noun": 300}``.
        input_shapes: ``{key: shape of one sample}`` in availability-column order.
        classes: class names per head when the class files were known, else None.
        preparation: the frame recipe of the training data (None: unknown, a model
            whose data were not made by ``karmma prepare`` nor the official EPIC frames).
    """

    config: dict
    heads: dict[str, int]
    input_shapes: dict[str, tuple[int, ...]]
    classes: dict[str, list[str]] | None = None
    preparation: PrepareSettings | None = None

    @property
    def modalities(self) -> list[str]:
        return list(self.input_shapes)

    def to_json(self) -> str:
        data = asdict(self)
        data["input_shapes"] = {k: list(v) for k, v in self.input_shapes.items()}
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str, where: str = "") -> ModelInfo:
        data = json.loads(text)
        data["input_shapes"] = {k: tuple(v) for k, v in data["input_shapes"].items()}
        data["preparation"] = recorded_recipe(data.get("preparation"), where or "a model")
        data["config"] = upgrade_config(data["config"])
        return cls(**data)

    def train_config(self) -> TrainConfig:
        return from_dict(TrainConfig, self.config)

    def clip_config(self) -> ClipConfig:
        """The training clip settings (``config["clip"]``): all raw-media pre-processing needs."""
        return self.train_config().clip


def describe_model(
    model: KARMMA, config: dict, heads: dict[str, int], preparation: PrepareSettings | None = None
) -> ModelInfo:
    """The :class:`ModelInfo` of ``model``: class names are looked up under the training data
    root when it is still there; ``preparation`` is the frame recipe of the training data
    (default: the one of the data root, :func:`~karmma.data.config.dataset_recipe`)."""
    from karmma.data.config import dataset_recipe
    from karmma.data.inspect import class_names

    info = ModelInfo(
        config=config,
        heads=dict(heads),
        input_shapes={k: tuple(model.specs[k].input_shape) for k in model.modalities},
    )
    data = info.train_config().data
    info.classes = class_names(data, heads)
    info.preparation = preparation or dataset_recipe(data)
    return info


def load_model(
    path: str | Path,
    checkpoint: str = "best",
    overrides: Sequence[str] = (),
    stages: Sequence[str] | None = None,
    heads: dict[str, int] | None = None,
) -> tuple[KARMMA, ModelInfo]:
    """A trained model in eval mode and its :class:`ModelInfo`.

    Args:
        path: a run folder, a ``.ckpt`` or a student ``.safetensors``.
        checkpoint: a run folder's ``best`` or ``last`` checkpoint.
        overrides: ``key=value`` changes to the stored training config before the
            model is built (e.g. ``data.root=...`` when the data moved).
        stages: the stages accepted (e.g. ``stage_names("student")``, the students; default: all).
        heads: the heads to build (default: the stored ones, or for a ``.ckpt`` those
            of its dataset's class files).

    Raises :class:`CheckpointError` (one line, naming the file) for anything else.
    """
    from karmma.stages import build_stage_model

    file = resolve_checkpoint(path, checkpoint)
    recipe = None
    if file.suffix == ".safetensors":
        state, config, stored_heads, info = _read_safetensors(file)
    elif file.suffix == ".ckpt":
        loaded = read_checkpoint(file)
        config, state, stored_heads, info = checkpoint_config(loaded, file), model_state(loaded), None, None
        if CHECKPOINT_RECIPE in loaded:
            recipe = recorded_recipe(loaded[CHECKPOINT_RECIPE], str(file))
        else:
            log.warning(
                "%s: a checkpoint written before karmma recorded frame recipes: the recipe of its data root "
                "(data.root) is taken, if it still holds the data it was trained on",
                file,
            )
    else:
        raise CheckpointError(f"{file}: not a karmma model (expected a run folder, a .ckpt or a .safetensors file)")
    _check_stage(file, config.get("stage"), stage_names() if stages is None else stages)
    if overrides:
        config = dict(config)
        for override in overrides:
            apply_override(config, override)
    train_config = from_dict(TrainConfig, config, str(file))
    heads = heads or stored_heads or _dataset_heads(train_config, file)
    model = build_stage_model(train_config, heads, restore=True)
    load_model_state(model, state, file)
    if info is None:
        info = describe_model(model, config, heads, recipe)
    elif overrides:
        info = dataclasses.replace(info, config=config)
    return model.eval(), info


def _check_stage(file: Path, stage: str | None, stages: Sequence[str]) -> None:
    if stage in stages:
        return
    if tuple(stages) == stage_names("student"):
        raise CheckpointError(f"{file}: not a karmma student (a {stage!r} model; students are {', '.join(stages)})")
    wanted = f"a {stages[0]!r} checkpoint" if len(stages) == 1 else f"one of {', '.join(stages)}"
    raise CheckpointError(f"{file}: a {stage!r} checkpoint, but {wanted} is needed here")


def _dataset_heads(config: TrainConfig, file: Path) -> dict[str, int]:
    from karmma.data.config import dataset_heads

    try:
        return dataset_heads(config.data)
    except (OSError, ValueError) as error:
        raise FileNotFoundError(
            f"{file}: the class files of its dataset are needed to rebuild a .ckpt ({error}); "
            "give data.root=<where the data is now>, or use an exported .safetensors"
        ) from None


def _read_safetensors(file: Path) -> tuple[dict, dict, dict[str, int], ModelInfo | None]:
    """``(state, config, heads, info)`` of a student ``.safetensors`` (``info`` None in files written
    before the info was stored: only config and heads)."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as error:  # safetensors raises its own error types
        raise CheckpointError(f"{file}: not a readable safetensors file ({error})") from None
    if metadata.get("karmma") != "student":
        raise CheckpointError(f"{file}: not a karmma student export (no karmma metadata)")
    try:
        if METADATA_KEY in metadata:
            info = ModelInfo.from_json(metadata[METADATA_KEY], str(file))
            config, heads = info.config, info.heads
        else:
            info, config, heads = None, upgrade_config(json.loads(metadata["config"])), json.loads(metadata["heads"])
    except (KeyError, ValueError, TypeError) as error:
        raise CheckpointError(
            f"{file}: a karmma student export with broken metadata ({type(error).__name__}: {error})"
        ) from None
    if not isinstance(heads, dict) or not heads or not all(isinstance(n, int) and n > 0 for n in heads.values()):
        raise CheckpointError(f"{file}: metadata 'heads' must map head names to class counts, got {heads!r}")
    return state, config, heads, info


def save_student(model: KARMMA, info: ModelInfo, out: str | Path) -> Path:
    """Write a student as ``.safetensors`` with its :class:`ModelInfo` in the metadata;
    :func:`load_model` reads it back."""
    from safetensors.torch import save_file

    from karmma.io import atomic_path

    stage, students = info.config.get("stage"), stage_names("student")
    if stage not in students:
        raise CheckpointError(f"not a karmma student (a {stage!r} model; students are {', '.join(students)})")
    out = Path(out)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out) as tmp:
        save_file(state, str(tmp), metadata={"karmma": "student", METADATA_KEY: info.to_json()})
        _give_normal_mode(tmp)
    return out


def _give_normal_mode(path: Path) -> None:
    """safetensors writes files readable by their owner only (0600); exports are meant to be
    shared and deployed, so give them the mode any new file gets (0666 less the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(0o666 & ~umask)
