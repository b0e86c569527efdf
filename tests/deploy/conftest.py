"""Deployment fixtures: a tiny SynthKitchen set with its MP4s, a random-weight student, its exports."""

from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from karmma.data.config import DatasetConfig, dataset_heads
from karmma.data.views import ClipConfig
from karmma.stages import build_stage_model
from karmma.train_config import TrainConfig


@pytest.fixture(scope="session")
def synth_videos(make_synth_set) -> tuple[Path, Path]:
    """``(raw, prepared)``: 2 SynthKitchen recordings (one 2018-style id, one 2020-style) and their prepared form."""
    return make_synth_set("deploy", seed=5, videos_per_participant=1)


def student_config(root: Path, modalities=()) -> TrainConfig:
    return TrainConfig(
        stage="student",
        preset="tiny",
        modalities=list(modalities),
        data=DatasetConfig(format="epic", root=str(root)),
        clip=ClipConfig(flip=False, flow_scale=2.0),
    )


@pytest.fixture(scope="session")
def make_student_config():
    """``make_student_config(root, modalities=()) -> TrainConfig`` of the tiny student on ``root``."""
    return student_config


@pytest.fixture(scope="session")
def student_file(synth_videos, tmp_path_factory) -> Path:
    """A tiny V/F/A student with random weights, exported to safetensors (with class names and preparation)."""
    from karmma.artifacts import describe_model, save_student

    config = student_config(synth_videos[1])
    heads = dataset_heads(config.data)
    torch.manual_seed(0)
    model = build_stage_model(config, heads).eval()
    return save_student(
        model, describe_model(model, asdict(config), heads), tmp_path_factory.mktemp("student") / "student.safetensors"
    )


@pytest.fixture(scope="session")
def onnx_student(student_file) -> Path:
    from karmma.artifacts import load_model
    from karmma.deploy.onnx_export import export_onnx

    model, info = load_model(student_file)
    return export_onnx(model, info, student_file.with_name("student.onnx"))
