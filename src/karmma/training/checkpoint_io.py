"""Lightning's checkpoint IO made safe: written atomically, read with ``weights_only=True``.

Reading and resolving checkpoints without Lightning (evaluation and deployment) is :mod:`karmma.checkpoints`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from karmma.checkpoints import read_checkpoint
from karmma.io import atomic_path


class SafeCheckpointIO(TorchCheckpointIO):
    """Write to a temporary file then rename, so a crash never leaves a corrupt checkpoint;
    load with ``weights_only=True``."""

    def save_checkpoint(self, checkpoint: dict, path: str | Path, storage_options: Any = None) -> None:
        with atomic_path(path) as tmp:  # removed again if torch.save fails (e.g. a full disk)
            torch.save(checkpoint, tmp)

    def load_checkpoint(self, path: str | Path, map_location: Any = None, weights_only: bool | None = None) -> dict:
        return read_checkpoint(path, map_location or "cpu")
