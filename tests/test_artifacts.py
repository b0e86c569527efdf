"""One loader for run folders, checkpoints and exports; one student format (karmma.artifacts)."""

import json
import os
from dataclasses import asdict

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from karmma.artifacts import METADATA_KEY, load_model, save_student
from karmma.checkpoints import CheckpointError, read_checkpoint
from karmma.stages import build_stage_model
from karmma.train_config import TrainConfig, stage_names


def test_a_run_its_checkpoint_and_its_export_load_the_same_student(trained_runs, tmp_path):
    _, results = trained_runs
    from_run, info = load_model(results["student"]["run"], stages=stage_names("student"))
    from_checkpoint, _ = load_model(results["student"]["best"])
    original = read_checkpoint(results["student"]["best"])["state_dict"]
    assert torch.equal(
        from_run.state_dict()["head.classifiers.verb.weight"], original["model.head.classifiers.verb.weight"]
    )
    path = save_student(from_run, info, tmp_path / "student.safetensors")
    from_export, exported = load_model(path)
    for name, value in from_checkpoint.state_dict().items():
        assert torch.equal(from_export.state_dict()[name], value), name
    assert not from_export.training and json.loads(exported.to_json()) == json.loads(info.to_json())
    with safe_open(str(path), framework="pt") as f:
        stored = json.loads(f.metadata()[METADATA_KEY])
    assert stored["config"]["stage"] == "student" and stored["preparation"]["flow"] and stored["classes"]["verb"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not safetensors' owner-only 0600: exports are shared
    assert path.stat().st_size < 10 * 2**20


def test_the_stage_whitelist_and_unreadable_files_give_one_line_errors(trained_runs, tmp_path):
    _, results = trained_runs
    with pytest.raises(
        CheckpointError, match=r"teacher/checkpoints/best.ckpt: not a karmma student \(a 'teacher' model"
    ):
        load_model(results["teacher"]["best"], stages=stage_names("student"))
    teacher, info = load_model(results["teacher"]["run"])  # every stage loads where none is asked for
    assert info.config["stage"] == "teacher" and teacher.modalities == ["V", "F", "A"]
    with pytest.raises(CheckpointError, match="not a karmma student"):
        save_student(teacher, info, tmp_path / "teacher.safetensors")
    plain = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(CheckpointError, match="weights.safetensors: not a karmma student export"):
        load_model(plain)
    with pytest.raises(CheckpointError, match="model not found"):
        load_model(tmp_path / "nothing.ckpt")


def test_exports_with_only_config_and_heads_still_load(tmp_path):
    """Files written by the former ``karmma export-student`` (config and heads, no ModelInfo)."""
    config = asdict(TrainConfig(stage="student", preset="tiny", modalities=["V", "A"]))
    heads = {"verb": 4, "noun": 5}
    torch.manual_seed(0)
    model = build_stage_model(TrainConfig(stage="student", preset="tiny", modalities=["V", "A"]), heads)
    path = tmp_path / "old.safetensors"
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(
        state, str(path), metadata={"karmma": "student", "config": json.dumps(config), "heads": json.dumps(heads)}
    )
    loaded, info = load_model(path)
    assert info.heads == heads and info.modalities == ["V", "A"] and info.classes is None
    assert torch.equal(
        loaded.state_dict()["head.classifiers.noun.weight"], model.state_dict()["head.classifiers.noun.weight"]
    )
