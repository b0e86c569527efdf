"""The torch device a command runs on: ``--device auto|cpu|cuda|cuda:N|mps``, checked against this machine."""

from __future__ import annotations


def resolve_device(device: str, option: str = "--device") -> str:
    """``auto`` -> cuda when a GPU is there, else cpu; an explicit device must exist here.

    ``option`` names the setting in the error (a ``ValueError``, one line)."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ValueError(f"{option} {device!r}: not a torch device (use auto, cpu, cuda or cuda:N)") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{option} {device}: no CUDA GPU is available on this machine; use {option} cpu (or auto)")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(
                f"{option} {device}: this machine has {torch.cuda.device_count()} GPU(s) (cuda:0 .. cuda:{torch.cuda.device_count() - 1})"
            )
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{option} {device}: MPS is not available on this machine; use {option} cpu")
    elif parsed.type not in ("cpu", "cuda", "mps"):
        raise ValueError(
            f"{option} {device!r}: unsupported device type {parsed.type!r} (use auto, cpu, cuda or cuda:N)"
        )
    return device
