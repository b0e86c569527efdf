"""Export a trained student alone: a small safetensors file with its config in the metadata."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from karmma.configuration import from_dict
from karmma.data.config import dataset_heads
from karmma.models.karmma import KARMMA
from karmma.io import atomic_path
from karmma.training.checkpoints import (
    CheckpointError,
    checkpoint_config,
    load_model_state,
    model_state,
    read_checkpoint,
    upgrade_config,
)
from karmma.training.config import TrainConfig
from karmma.training.module import build_stage_model

STUDENT_STAGES = ("student", "baseline", "baseline_masked", "baseline_delta")


def give_normal_mode(path: Path) -> None:
    """safetensors writes files readable by their owner only (0600); exports are meant to be
    shared and deployed, so give them the mode any new file gets (0666 less the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(0o666 & ~umask)


def export_student(checkpoint_path: str | Path, out: str | Path) -> Path:
    checkpoint = read_checkpoint(checkpoint_path)
    config = checkpoint_config(checkpoint, checkpoint_path)
    if config.get("stage") not in STUDENT_STAGES:
        raise CheckpointError(f"{checkpoint_path}: a {config.get('stage')!r} checkpoint; export takes one of {', '.join(STUDENT_STAGES)}")
    heads = dataset_heads(from_dict(TrainConfig, config).data)
    state = {k: v.contiguous() for k, v in model_state(checkpoint).items()}
    out = Path(out)
    metadata = {"karmma": "student", "config": json.dumps(config), "heads": json.dumps(heads)}
    with atomic_path(out) as tmp:
        save_file(state, str(tmp), metadata=metadata)
        give_normal_mode(tmp)
    return out


def load_student(path: str | Path) -> tuple[KARMMA, dict]:
    """A model exported by :func:`export_student` and its training config (no pickle involved)."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as error:
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from None
    if metadata.get("karmma") != "student":
        raise CheckpointError(f"{path}: not a karmma student export")
    try:
        config = upgrade_config(json.loads(metadata["config"]))
        heads = json.loads(metadata["heads"])
    except (KeyError, ValueError) as error:
        raise CheckpointError(f"{path}: a karmma student export with broken metadata ({type(error).__name__}: {error})") from None
    if not isinstance(heads, dict) or not heads or not all(isinstance(n, int) and n > 0 for n in heads.values()):
        raise CheckpointError(f"{path}: metadata 'heads' must map head names to class counts, got {heads!r}")
    model = build_stage_model(from_dict(TrainConfig, config, f"{path} (config metadata)"), heads, restore=True)
    load_model_state(model, state, path)
    return model.eval(), config
