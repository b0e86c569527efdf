"""Modalities as data.

A :class:`ModalitySpec` says everything the rest of karmma needs to know about
one input stream: its key, the shape of one sample, and the extractor that
turns it into a token sequence ``[B, N_m, C_m]``. Fusion, losses, dropout and
training only ever iterate over specs, so a new sensor (IMU, hand pose, ...)
needs one new spec and one extractor config class, nothing else.

An extractor config is any dataclass with

* ``build(input_shape) -> nn.Module`` mapping ``[B, *input_shape]`` to
  ``[B, num_tokens(input_shape), token_dim]``,
* ``num_tokens(input_shape) -> int`` and ``token_dim: int``,
* ``example_input(input_shape, batch) -> Tensor``: a valid random input.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # annotations only: the names below are used by the torch-free deployment too
    import torch
    from torch import nn

#: Canonical order of the built-in modality keys; subsets are named in it.
MODALITY_ORDER = ("V", "F", "A", "D")

MODALITY_NAMES = {
    "V": "RGB video",
    "F": "optical flow",
    "A": "audio",
    "D": "object detections",
}
#: What a video with its sound track gives (EPIC-KITCHENS, SynthKitchen, a camera at deployment):
#: frames, the optical flow between them and the audio; D needs a detector.
VIDEO_MODALITIES = ("V", "F", "A")
#: Sampled at the same frame numbers (so they ask for as many frames).
FRAME_MODALITIES = ("V", "F", "D")
#: A frame is an image, RGB (V) or flow's two channels (F): handed over as uint8 crops plus an
#: affine map (see ``data/transforms.py::finish_inputs``).
IMAGE_MODALITIES = ("V", "F")


class ExtractorConfig(Protocol):
    token_dim: int

    def build(self, input_shape: tuple[int, ...]) -> nn.Module: ...

    def num_tokens(self, input_shape: tuple[int, ...]) -> int: ...

    def example_input(self, input_shape: tuple[int, ...], batch: int) -> torch.Tensor: ...


@dataclass(frozen=True)
class ModalitySpec:
    """One input modality of a model.

    Args:
        key: short name used everywhere (``"V"``, ``"F"``, ``"A"``, ``"D"``).
        input_shape: shape of one sample, without the batch dimension,
            e.g. ``(T, 3, H, W)`` for RGB video.
        extractor: the extractor config that builds the feature extractor.
    """

    key: str
    input_shape: tuple[int, ...]
    extractor: Any  # an ExtractorConfig; `Any` keeps dataclass comparisons simple

    @property
    def num_tokens(self) -> int:
        return self.extractor.num_tokens(self.input_shape)

    @property
    def token_dim(self) -> int:
        return self.extractor.token_dim

    def build_extractor(self) -> nn.Module:
        return self.extractor.build(self.input_shape)

    def example_input(self, batch: int = 1) -> torch.Tensor:
        return self.extractor.example_input(self.input_shape, batch)


def order_keys(keys: Iterable[str], order: Sequence[str] = MODALITY_ORDER) -> list[str]:
    """Sort modality keys: known keys in ``order`` first, unknown ones after, by name."""
    keys = list(dict.fromkeys(keys))
    rank = {k: i for i, k in enumerate(order)}
    return sorted(keys, key=lambda k: (rank.get(k, len(rank)), k))


def subset_name(keys: Iterable[str], order: Sequence[str] = MODALITY_ORDER) -> str:
    """``{"A", "V"}`` -> ``"V+A"``: present keys joined by ``+`` in canonical order."""
    keys = order_keys(keys, order)
    if not keys:
        raise ValueError("a modality subset must contain at least one modality")
    return "+".join(keys)


def parse_subset(name: str) -> list[str]:
    """``"V+A"`` -> ``["V", "A"]``."""
    keys = [k.strip() for k in name.replace(",", "+").split("+") if k.strip()]
    if not keys:
        raise ValueError(f"empty modality subset {name!r}")
    return keys


def largest_first(names: Iterable[str]) -> list[str]:
    """Subset names ordered as in the paper's tables: more modalities first, then by name."""
    return sorted(names, key=lambda name: (-len(parse_subset(name)), name))


def largest_subset(names: Iterable[str]) -> str:
    """The subset name with the most modalities (the first such): a model's full set."""
    return max(names, key=lambda name: len(parse_subset(name)))


def all_subsets(keys: Sequence[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset of ``keys``, largest first (``V+F+A``, ``V+F``, ..., ``A``)."""
    subsets = []
    for size in range(len(keys), 0, -1):
        subsets.extend(itertools.combinations(keys, size))
    return subsets
