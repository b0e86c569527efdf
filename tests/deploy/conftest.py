"""Deployment fixtures: a tiny SynthKitchen set with its MP4s, a random-weight student, its exports."""

from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from karmma.data.config import DatasetConfig, dataset_heads
from karmma.stages import build_stage_model
from karmma.train_config import ClipConfig, TrainConfig


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


def _random_recognizer(modalities=("V", "F", "A")):
    """A tiny student with random weights, run eagerly (no data set, no export): V/F/A with EPIC-like
    heads, or with D the SSv2 heads."""
    from karmma.artifacts import ModelInfo
    from karmma.data.recipe import PrepareSettings
    from karmma.deploy.recognizer import Recognizer
    from karmma.deploy.runtime import TorchRunner
    from karmma.presets import SSV2_HEADS, build_student, tiny_preset

    torch.manual_seed(0)
    if "D" in modalities:
        heads, config = SSV2_HEADS, TrainConfig(preset="tiny", modalities=list(modalities))
        model = build_student(tiny_preset(), heads, list(modalities)).eval()
    else:
        heads, config = {"verb": 4, "noun": 6}, TrainConfig(stage="student", preset="tiny")
        model = build_stage_model(config, heads).eval()
    shapes = {k: tuple(model.specs[k].input_shape) for k in model.modalities}
    info = ModelInfo(asdict(config), heads, shapes, preparation=PrepareSettings(flow="dis", short_side=64))
    return Recognizer(TorchRunner(model, info))


@pytest.fixture(scope="session")
def random_recognizer():
    """``random_recognizer(modalities=("V", "F", "A"))``: a tiny random-weight student, run eagerly."""
    return _random_recognizer


@pytest.fixture(scope="session")
def recognizer():
    """A tiny random-weight V/F/A student, run eagerly."""
    return _random_recognizer()
