"""Reading karmma checkpoints without unpickling arbitrary objects, and finding them in run folders.

No Lightning here: evaluation and deployment read checkpoints too. Writing them
(atomically, through Lightning) is :mod:`karmma.training.checkpoint_io`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from karmma.train_config import without_refused_audio_keys

if TYPE_CHECKING:  # imported where used: the ONNX runners raise CheckpointError without torch
    import torch


#: the key of the frame recipe of the training data (a dict, or None when unknown) in a training checkpoint
CHECKPOINT_RECIPE = "preparation"


class CheckpointError(ValueError):
    """A checkpoint is unreadable, truncated, or of the wrong kind; the message names it."""


#: How torch's weights-only unpickler refuses a pickled class or function (torch 2.14's wordings):
#: "Unsupported global: GLOBAL m.C was not an allowed global", "unsupported GLOBAL posix.system whose
#: module posix is blocked", "reduce for unrecognized function f", "allowlisted ... but got <class>".
_PICKLED_OBJECT = re.compile(
    r"unsupported (?:global: )?GLOBAL (\S+)|unrecognized function (\S+)|allowlisted\b.*? but got (.+)", re.IGNORECASE
)


def load_error_cause(error: BaseException) -> str:
    """``"UnpicklingError: Unsupported operand 17"``: a failed ``torch.load``'s own cause in one line,
    without torch's advice to retry with ``weights_only=False`` (which would run what the file holds)."""
    lines = [
        line.strip()
        for line in str(error).splitlines()
        if line.strip() and "weights_only" not in line and not line.startswith("Check the documentation")
    ]
    return f"{type(error).__name__}: {' '.join(lines)[:200]}"


def refused_pickle(error: BaseException) -> str | None:
    """Why a weights-only ``torch.load`` refused a file holding pickled Python objects, naming the
    object; None when ``error`` is something else (garbage, truncation). torch's own message
    advises ``weights_only=False``, which would run whatever the file holds: it is not passed on."""
    match = _PICKLED_OBJECT.search(str(error))
    if match is None:
        return None
    name = next(group for group in match.groups() if group).rstrip(".")
    return (
        f"it holds pickled Python objects that can run code when loaded ({name[:100]}); "
        "refused, and it must not be loaded unsafely (torch.load with weights_only=False)"
    )


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict:
    """``torch.load(weights_only=True)`` with errors that name the file."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises RuntimeError/UnpicklingError/EOFError/zipfile errors
        pickled = refused_pickle(error)
        if pickled:
            raise CheckpointError(f"{path}: {pickled}; a karmma checkpoint holds only tensors and plain data") from None
        raise CheckpointError(f"{path}: unreadable or truncated checkpoint ({load_error_cause(error)})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path}: not a karmma training checkpoint (no state_dict)")
    check_finite(checkpoint["state_dict"], path)
    return checkpoint


def check_finite(state: dict, path: str | Path) -> None:
    """Refuse weights holding NaN or infinity: they would give NaN predictions, silently."""
    import torch

    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(
                f"{path}: weight {key!r} holds NaN or infinite values (a diverged or corrupted model); use another checkpoint"
            )


def load_model_state(model: torch.nn.Module, state: dict, path: str | Path) -> None:
    """``model.load_state_dict(state)`` with one-line errors naming ``path`` (missing or
    unexpected tensors, wrong shapes e.g. other heads, non-finite values)."""
    check_finite(state, path)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        detail = " ".join(str(error).split())
        raise CheckpointError(f"{path}: weights do not match the model its config describes ({detail[:240]})") from None


def checkpoint_config(checkpoint: dict, path: str | Path) -> dict:
    try:
        config = checkpoint["hyper_parameters"]["config"]
    except (KeyError, TypeError):
        raise CheckpointError(f"{path}: not a karmma training checkpoint (no config)") from None
    return upgrade_config(config)


def upgrade_config(config: dict) -> dict:
    """A stored training config as today's code reads it: a ``baseline`` saved before
    ``missing_modality`` existed was the masked Baseline, and is restored as one; the
    ``clip.audio`` keys earlier versions wrote and never used are dropped."""
    if isinstance(config, dict) and config.get("stage") == "baseline" and "missing_modality" not in config:
        config = {**config, "missing_modality": "mask"}
    return without_refused_audio_keys(config)


def model_state(checkpoint: dict, prefix: str = "model.") -> dict:
    """The weights under ``prefix`` in a Lightning checkpoint's ``state_dict``, with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}


def expect_checkpoint(path: str | Path, stages: tuple[str, ...], preset: str) -> tuple[dict, dict]:
    """Read a checkpoint and check it comes from one of ``stages`` with ``preset``; returns (checkpoint, config)."""
    checkpoint = read_checkpoint(path)
    config = checkpoint_config(checkpoint, path)
    if config.get("stage") not in stages:
        wanted = " or ".join(repr(stage) for stage in stages)
        raise CheckpointError(f"{path}: a {config.get('stage')!r} checkpoint, but a {wanted} checkpoint is needed here")
    if config.get("preset") != preset:
        raise CheckpointError(f"{path}: trained with preset {config.get('preset')!r}, this run uses {preset!r}")
    return checkpoint, config


def resolve_checkpoint(path: str | Path, which: str = "best") -> Path:
    """A run folder (its ``checkpoints/best.ckpt``, or ``last.ckpt`` with ``which="last"``;
    best falls back to last when no epoch was validated), a ``.ckpt`` or an exported ``.safetensors``."""
    if which not in ("best", "last"):
        raise ValueError(f"checkpoint must be best or last, got {which!r}")
    path = Path(path)
    if path.is_dir():
        for name in ("best.ckpt", "last.ckpt") if which == "best" else ("last.ckpt",):
            if (path / "checkpoints" / name).is_file():
                return path / "checkpoints" / name
        raise CheckpointError(f"{path}: a folder without checkpoints/{which}.ckpt (not a karmma run folder?)")
    if not path.is_file():
        raise CheckpointError(f"model not found: {path}")
    return path
