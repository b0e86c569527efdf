"""Reading checkpoints (karmma/checkpoints.py): non-finite, mismatched and garbage weights refused with one-line errors."""

import pytest
import torch

from karmma.checkpoints import CheckpointError, load_model_state, read_checkpoint


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


def test_a_garbage_checkpoint_is_unreadable_without_torchs_advice_to_load_it_unsafely(tmp_path):
    path = tmp_path / "garbage.ckpt"
    path.write_bytes(bytes(range(256)) * 12)  # a pickle opcode torch's weights-only unpickler does not know
    with pytest.raises(
        CheckpointError, match=r"garbage.ckpt: unreadable or truncated checkpoint \(UnpicklingError: "
    ) as error:
        read_checkpoint(path)
    assert "weights_only" not in str(error.value) and "\n" not in str(error.value)
