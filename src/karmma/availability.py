"""The availability mask and modality dropout.

``availability`` is a boolean tensor ``[B, M]``: ``availability[b, j]`` is True
when sample ``b`` has modality ``model.modalities[j]``. It travels with every
batch; every sample must have at least one modality.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # imported where needed: the ONNX runners check their NumPy masks here without torch
    import torch


def check_availability(availability: torch.Tensor | np.ndarray, modalities: Sequence[str]) -> None:
    """Raise ``ValueError`` unless ``availability`` is a valid ``[B, M]`` bool mask: a torch tensor
    (the model's input) or a NumPy array (what the ONNX runners feed)."""
    torch = sys.modules.get("torch")  # a tensor cannot exist without it; the ONNX runners run without it
    is_tensor = torch is not None and isinstance(availability, torch.Tensor)
    if not is_tensor and not isinstance(availability, np.ndarray):
        raise ValueError(f"availability must be a torch.Tensor or a NumPy array, got {type(availability).__name__}")
    if availability.dtype not in ((torch.bool,) if is_tensor else (np.bool_,)):
        raise ValueError(f"availability must be a bool tensor, got dtype {availability.dtype}")
    if availability.ndim != 2 or availability.shape[1] != len(modalities):
        raise ValueError(
            f"availability must have shape [B, {len(modalities)}] for modalities "
            f"{'/'.join(modalities)}, got {list(availability.shape)}"
        )
    if is_tensor and availability.device.type == "meta":
        return  # shape-only tracing (FLOP counting): values are unknown
    if is_tensor and (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()):
        return  # graph export: a value check would be frozen into the graph (runtimes check the mask themselves)
    empty = [i for i, present in enumerate(availability.any(1).tolist()) if not present]
    if empty:
        raise ValueError(
            f"availability has no modality for sample(s) {empty[:10]}: every sample needs at least one present modality"
        )


def availability_for_subset(present: Sequence[str], modalities: Sequence[str], batch: int = 1) -> torch.Tensor:
    """A ``[batch, M]`` mask with exactly the modalities in ``present`` available."""
    import torch

    unknown = [k for k in present if k not in modalities]
    if unknown:
        raise ValueError(f"unknown modalities {unknown}; the model has {list(modalities)}")
    row = torch.tensor([k in present for k in modalities], dtype=torch.bool)
    return row.expand(batch, -1).clone()


def modality_dropout(
    availability: torch.Tensor, p: float, generator: torch.Generator | None = None, noise: torch.Tensor | None = None
) -> torch.Tensor:
    """Drop each present modality of each sample independently with probability ``p``.

    A modality the sample never had stays missing, and if every present
    modality of a sample would be dropped, one of them (chosen uniformly) is
    kept, so no sample is ever emptied.

    Args:
        availability: ``[B, M]`` bool mask of the modalities each sample has.
        p: drop probability in ``[0, 1]``.
        noise: optional ``[B, 2, M]`` uniform numbers (the drop draws and the
            keep-one scores) so a sample's dropout depends only on its own
            seed, not on the batch it lands in (exact resume, DDP).
    Returns:
        ``[B, M]`` bool mask, a subset of ``availability`` with no empty row.
    """
    import torch

    if not 0.0 <= p <= 1.0:
        raise ValueError(f"modality dropout probability must be in [0, 1], got {p}")
    if p == 0.0:
        return availability.clone()
    if noise is not None:
        rand, scores = noise[:, 0].to(availability.device), noise[:, 1].to(availability.device)
    else:
        rand = torch.rand(availability.shape, generator=generator, device="cpu").to(availability.device)
        scores = None
    kept = availability & (rand >= p)
    emptied = ~kept.any(dim=1) & availability.any(dim=1)
    if emptied.any():
        # Keep one present modality at random: the present one with the highest score.
        if scores is None:
            scores = torch.rand(availability.shape, generator=generator, device="cpu").to(availability.device)
        scores = scores.masked_fill(~availability, -1.0)
        keep_one = torch.zeros_like(availability)
        keep_one.scatter_(1, scores.argmax(dim=1, keepdim=True), True)
        kept = torch.where(emptied[:, None], keep_one, kept)
    return kept
