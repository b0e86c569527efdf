"""Spatial transforms applied consistently across a sample's visual modalities.

Crops are chosen in relative coordinates, so RGB and flow of different
resolutions get the same region; a horizontal flip mirrors both and negates
the horizontal flow component. Resizing flow rescales its vectors.

Frames stay uint8 until they are cropped and resized. The model's float input
is one affine map per channel of the uint8 crop (ImageNet normalisation for
RGB; de-quantisation, vector rescaling, flip sign and ``flow_scale`` for flow):
:func:`rgb_affine`, :func:`flow_affine`. The loader hands the uint8 crops and
their maps over, and :func:`finish_inputs` applies the maps where the model
runs (on its GPU): a quarter of the memory per clip to fill and to copy, and no
float pass on the loader's cores. :func:`rgb_input` and :func:`flow_input`
apply them at once (deployment).
:mod:`karmma.data.numpy_transforms` builds the same deployment inputs without torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
import torch.nn.functional as F

from karmma.data.media import FLOW_BOUND
from karmma.data.numpy_transforms import (  # the crop geometry (torch-free, shared with the NumPy inputs)
    IMAGENET_MEAN,
    IMAGENET_STD,
    CropParams,
    crop_box,
    eval_crop_params,
    random_crop_params,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CropParams",
    "crop_box",
    "crop_resize",
    "dequantise_flow",
    "eval_crop_params",
    "finish_inputs",
    "flow_affine",
    "flow_input",
    "normalise_rgb",
    "random_crop_params",
    "rgb_affine",
    "rgb_input",
]


def crop_resize(frames: torch.Tensor, params: CropParams, size: int) -> torch.Tensor:
    """Crop uint8 ``[T, C, H, W]`` to ``params``, resize to ``size x size`` (bilinear, antialiased), flip.

    Stays in uint8 (fixed-point weights, rounded): several times faster than
    in float, at most one grey level away from it.
    """
    if frames.dtype != torch.uint8:
        raise ValueError(f"crop_resize expects uint8 frames, got {frames.dtype}")
    _, _, h, w = frames.shape
    top, left, ch, cw = crop_box(params, h, w)
    crop = frames[:, :, top : top + ch, left : left + cw]
    # torch's fast uint8 kernel wants 3 or 4 channels last (a view of decoded [T, H, W, C] frames is fine);
    # other inputs resize ~1.5x faster from a contiguous copy of the crop than from a view
    if not frames.is_contiguous(memory_format=torch.channels_last):
        crop = crop.contiguous(
            memory_format=torch.channels_last if frames.shape[1] in (3, 4) else torch.contiguous_format
        )
    out = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out.flip(-1) if params.flip else out


def _affine(
    frames: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, out: torch.Tensor | None = None
) -> torch.Tensor:
    """``frames * scale + shift`` per channel as float, in ``out`` (contiguous) or a new tensor.

    ``frames``: ``[..., T, C, H, W]``; ``scale``, ``shift``: ``[C]``, or ``[B, C]`` per sample of a batch.
    """
    out = torch.empty(frames.shape, dtype=torch.float32, device=frames.device) if out is None else out
    out.copy_(frames)  # uint8 -> float (and any layout -> contiguous); then in place: 2x faster than a uint8 * float op
    return out.mul_(scale[..., None, :, None, None]).add_(shift[..., None, :, None, None])


def rgb_affine() -> torch.Tensor:
    """``[2, 3]``: per-channel ``scale`` and ``shift`` taking uint8 RGB (0..255) to ImageNet-normalised float."""
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    return torch.stack([1.0 / (255.0 * std), -mean / std])


def flow_affine(
    params: CropParams, frame_size: tuple[int, int], size: int, scale: float = 9.04, bound: float = FLOW_BOUND
) -> torch.Tensor:
    """``[2, 2]``: per-channel (``u``, ``v``) ``scale`` and ``shift`` taking quantised flow cropped
    with ``params`` from a ``frame_size = (H, W)`` frame and resized to ``size`` (uint8) to flow in
    pixels of the resized crop divided by ``scale``.

    Grey ``q`` is ``q / 255 * 2 bound - bound`` pixels of the frame; vectors are
    rescaled with the crop (``size / crop width`` for ``u``, ``size / crop height``
    for ``v``) and ``u`` is negated by a flip. It commutes with the resampling
    (whose weights sum to 1), so it is applied after the uint8 resize.
    """
    _, _, ch, cw = crop_box(params, *frame_size)
    gain = torch.tensor([size / cw * (-1.0 if params.flip else 1.0), size / ch]) / scale  # per channel (u, v)
    return torch.stack([gain * (2 * bound / 255.0), -bound * gain])


def normalise_rgb(frames: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 ``[T, 3, H, W]`` in 0..255 -> ImageNet-normalised float (in ``out`` when given)."""
    scale, shift = rgb_affine()
    return _affine(frames, scale, shift, out)


def dequantise_flow(
    resized: torch.Tensor,
    params: CropParams,
    frame_size: tuple[int, int],
    scale: float = 9.04,
    bound: float = FLOW_BOUND,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Quantised flow already cropped, resized and flipped by :func:`crop_resize` (uint8 ``[T, 2, S, S]``)
    -> flow in pixels of the resized crop divided by ``scale`` (float, in ``out`` when given);
    the map is :func:`flow_affine`'s."""
    gain, shift = flow_affine(params, frame_size, resized.shape[-1], scale, bound)
    return _affine(resized, gain, shift, out)


def finish_inputs(
    batch: Mapping, device: torch.device | str | None = None, keys: Iterable[str] | None = None
) -> dict[str, torch.Tensor]:
    """The model's float inputs of a batch (``collate_clips``) or of one dataset item, on ``device``
    (None: where they are).

    The loader hands V and F over as uint8 crops (``inputs[key]``: ``[B, T, C, S, S]``,
    or ``[T, C, S, S]`` for one item; V channels last in memory) with their per-sample maps (``affine[key]``:
    ``[B, 2, C]`` or ``[2, C]``, see :func:`rgb_affine`, :func:`flow_affine`); they
    are moved first (4x fewer bytes than float) and finished there into
    contiguous float tensors, with the same float operations as
    :func:`rgb_input` / :func:`flow_input` (the same numbers). Other inputs (A, D: float already) are only moved. ``keys``: only
    these inputs (None: all). Every consumer of batches (training step,
    evaluation, feature extraction, benchmarks) calls this.
    """
    affine = batch.get("affine", {})
    finished = {}
    for key, tensor in batch["inputs"].items():
        if keys is not None and key not in keys:
            continue
        tensor = tensor.to(device, non_blocking=True) if device is not None else tensor
        if tensor.dtype == torch.uint8:
            if key not in affine:
                raise ValueError(f"input {key!r} is uint8 but the batch has no affine map for it (batch['affine'])")
            scale, shift = affine[key].to(tensor.device, non_blocking=True).unbind(-2)  # [B, C] or [C]
            tensor = _affine(tensor, scale, shift)  # the float pipeline's operations: bit for bit its numbers
        finished[key] = tensor
    return finished


def rgb_input(frames: torch.Tensor, params: CropParams, size: int) -> torch.Tensor:
    """RGB frames uint8 ``[T, 3, H, W]`` -> the model's V input ``[T, 3, size, size]``:
    cropped, resized, flipped, ImageNet-normalised float."""
    return normalise_rgb(crop_resize(frames, params, size))


def flow_input(
    quantised: torch.Tensor, params: CropParams, size: int, scale: float = 9.04, bound: float = FLOW_BOUND
) -> torch.Tensor:
    """Quantised flow uint8 ``[T, 2, H, W]`` (``u, v``) -> the model's F input ``[T, 2, size, size]``:
    cropped, resized, flipped, in pixels of the resized crop, divided by ``scale``."""
    return dequantise_flow(crop_resize(quantised, params, size), params, tuple(quantised.shape[-2:]), scale, bound)
