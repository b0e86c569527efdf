"""Checkpoints: atomic saves, non-finite and mismatched weights refused with one-line errors."""

import pytest
import torch

from karmma.checkpoints import CheckpointError, load_model_state, read_checkpoint
from karmma.training.checkpoints import SafeCheckpointIO


def test_a_failed_checkpoint_save_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.ckpt"
    io = SafeCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(2)}}, path)

    def full_disk(obj, f, *args, **kwargs):
        with open(f, "wb") as out:
            out.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(2)}}, path)
    monkeypatch.undo()
    assert torch.equal(read_checkpoint(path)["state_dict"]["w"], torch.ones(2))
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temporary checkpoint left behind


def test_nan_weights_are_refused(tmp_path):
    path = tmp_path / "nan.ckpt"
    torch.save({"state_dict": {"model.w": torch.tensor([1.0, float("nan")])}}, path)
    with pytest.raises(CheckpointError, match="nan.ckpt: weight 'model.w' holds NaN"):
        read_checkpoint(path)


def test_mismatched_weights_are_one_line(tmp_path):
    model = torch.nn.Linear(2, 3)
    with pytest.raises(CheckpointError, match="x.safetensors: weights do not match the model .*Missing key"):
        load_model_state(model, {"weight": torch.zeros(3, 2)}, tmp_path / "x.safetensors")
    with pytest.raises(CheckpointError, match="holds NaN or infinite"):
        load_model_state(model, {"weight": torch.full((3, 2), float("inf")), "bias": torch.zeros(3)}, "x")
