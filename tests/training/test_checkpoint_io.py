"""Lightning's checkpoint IO (training/checkpoint_io.py): atomic saves, pickled code refused."""

import os
from pathlib import Path

import pytest
import torch

from karmma.checkpoints import CheckpointError, read_checkpoint
from karmma.training.checkpoint_io import SafeCheckpointIO


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


class Payload:
    """A class a checkpoint should never hold: unpickling it would import and run code."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):  # unpickling calls Path.touch(path)
        return (Path.touch, (self.path,))


@pytest.mark.parametrize("payload", ["class", "blocked module"])
def test_pickled_code_is_refused_as_such_not_as_truncated(tmp_path, payload):
    ran = tmp_path / "ran"
    path = tmp_path / "evil.ckpt"
    held = Payload(ran) if payload == "class" else os.system  # torch: "unsupported GLOBAL posix.system ... blocked"
    torch.save({"state_dict": {"model.w": torch.ones(2)}, "extra": held}, path)
    with pytest.raises(CheckpointError) as error:
        SafeCheckpointIO().load_checkpoint(path)
    message = str(error.value)
    assert message.startswith(f"{path}: it holds pickled Python objects that can run code when loaded (")
    assert "must not be loaded unsafely" in message and "\n" not in message
    assert "truncated" not in message and "will likely succeed" not in message  # torch's advice is not passed on
    assert not ran.exists()
