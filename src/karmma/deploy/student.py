"""A trained student as a deployable unit: its weights plus what inference needs.

:class:`StudentInfo` is what travels with every exported form (safetensors
metadata, ONNX metadata, the split-ONNX manifest): the training config, the
heads and their class names, the modality input shapes and how the training
frames were prepared (flow method, short side, frame rate), so a raw video
is turned into inputs exactly as training saw them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from karmma.configuration import from_dict
from karmma.models.karmma import KARMMA
from karmma.training.checkpoints import CheckpointError

METADATA_KEY = "karmma_deploy"


@dataclass
class StudentInfo:
    """Everything about a student that inference needs besides its weights.

    Attributes:
        config: the training config (a ``TrainConfig`` as a dict).
        heads: classes per head, e.g. ``{"verb": 97, "noun": 300}``.
        input_shapes: ``{key: shape of one sample}`` in availability-column order.
        classes: class names per head when the class files were known, else None.
        preparation: ``{"flow", "short_side", "fps"}`` of the training frames
            (``karmma prepare`` settings; a value is None when unknown).
    """

    config: dict
    heads: dict[str, int]
    input_shapes: dict[str, tuple[int, ...]]
    classes: dict[str, list[str]] | None = None
    preparation: dict = field(default_factory=dict)

    @property
    def modalities(self) -> list[str]:
        return list(self.input_shapes)

    def to_json(self) -> str:
        data = asdict(self)
        data["input_shapes"] = {k: list(v) for k, v in self.input_shapes.items()}
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> "StudentInfo":
        data = json.loads(text)
        data["input_shapes"] = {k: tuple(v) for k, v in data["input_shapes"].items()}
        return cls(**data)

    def train_config(self):
        from karmma.training.config import TrainConfig

        return from_dict(TrainConfig, self.config)


def describe_student(model: KARMMA, config: dict, heads: dict[str, int]) -> StudentInfo:
    """The :class:`StudentInfo` of ``model``: class names and preparation settings are
    looked up under the training data root when it is still there."""
    from karmma.data.inspect import class_names

    info = StudentInfo(
        config=config, heads=dict(heads),
        input_shapes={k: tuple(model.specs[k].input_shape) for k in model.modalities},
    )
    data = info.train_config().data
    info.classes = class_names(data, heads)
    info.preparation = _preparation_settings(Path(data.root)) if data.root else {}
    return info


def _preparation_settings(root: Path) -> dict:
    """The ``karmma prepare`` settings recorded in ``root/.prepared/*.json`` (empty when unknown)."""
    marker = next(iter(sorted((root / ".prepared").glob("*.json"))), None) if (root / ".prepared").is_dir() else None
    if marker is None:
        return {}
    try:
        settings = json.loads(marker.read_text())["settings"]
    except (OSError, ValueError, KeyError):
        return {}
    return {k: settings.get(k) for k in ("flow", "short_side", "fps")}


def load_torch_student(path: str | Path) -> tuple[KARMMA, StudentInfo]:
    """A student from a Lightning checkpoint (``.ckpt``) or an exported ``.safetensors``, in eval mode.

    Raises ``FileNotFoundError`` for a missing file and ``CheckpointError``
    (a ``ValueError``, one line) for anything that is not a karmma student.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model not found: {path}")
    if path.is_dir() and (path / "checkpoints").is_dir():  # a run folder: its best checkpoint
        from karmma.training.checkpoints import resolve_checkpoint

        path = resolve_checkpoint(path)
    if path.suffix == ".safetensors":
        return _load_safetensors(path)
    if path.suffix == ".ckpt":
        return _load_checkpoint(path)
    raise CheckpointError(f"{path}: not a karmma student (expected a .ckpt, .safetensors or .onnx file or a split-ONNX folder)")


def _load_checkpoint(path: Path) -> tuple[KARMMA, StudentInfo]:
    from karmma.data.config import dataset_heads
    from karmma.training.checkpoints import checkpoint_config, model_state, read_checkpoint
    from karmma.training.config import TrainConfig
    from karmma.training.export import STUDENT_STAGES
    from karmma.training.module import build_stage_model

    checkpoint = read_checkpoint(path)
    config = checkpoint_config(checkpoint, path)
    if config.get("stage") not in STUDENT_STAGES:
        raise CheckpointError(f"{path}: not a karmma student (a {config.get('stage')!r} checkpoint; students are {', '.join(STUDENT_STAGES)})")
    train_config = from_dict(TrainConfig, config)
    try:
        heads = dataset_heads(train_config.data)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path}: the class files of its dataset are needed to rebuild a .ckpt ({error}); use an exported .safetensors") from None
    model = build_stage_model(train_config, heads, restore=True)
    _load_state(model, model_state(checkpoint), path)
    return model.eval(), describe_student(model, config, heads)


def _load_safetensors(path: Path) -> tuple[KARMMA, StudentInfo]:
    from safetensors import safe_open

    from karmma.training.export import load_student

    model, config = load_student(path)
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    if METADATA_KEY in metadata:
        return model, StudentInfo.from_json(metadata[METADATA_KEY])
    return model, describe_student(model, config, json.loads(metadata["heads"]))


def _load_state(model: KARMMA, state: dict, path: Path) -> None:
    from karmma.training.checkpoints import load_model_state

    load_model_state(model, state, path)


def save_safetensors(model: KARMMA, info: StudentInfo, out: str | Path) -> Path:
    """Write the student as ``.safetensors`` readable by ``training.export.load_student``,
    with the :class:`StudentInfo` (class names, preparation) in the metadata too."""
    from safetensors.torch import save_file

    from karmma.training.export import give_normal_mode

    out = Path(out)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    metadata = {"karmma": "student", "config": json.dumps(info.config), "heads": json.dumps(info.heads), METADATA_KEY: info.to_json()}
    from karmma.io import atomic_path

    with atomic_path(out) as tmp:
        save_file(state, str(tmp), metadata=metadata)
        give_normal_mode(tmp)
    return out
