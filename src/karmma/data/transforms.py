"""Spatial transforms applied consistently across a sample's visual modalities.

Crops are chosen in relative coordinates, so RGB and flow of different
resolutions get the same region; a horizontal flip mirrors both and negates
the horizontal flow component. Resizing flow rescales its vectors.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class CropParams:
    """A crop box in relative coordinates ``[0, 1]`` and whether to flip horizontally."""

    top: float
    left: float
    height: float
    width: float
    flip: bool = False


def random_crop_params(
    aspect: float, rng: random.Random, scale: tuple[float, float] = (0.4, 1.0), flip: bool = True
) -> CropParams:
    """Random-resized-crop box (square in pixels) for a frame of ``aspect = width / height``."""
    area = rng.uniform(*scale)  # fraction of the largest centred square
    short = math.sqrt(area)  # square side relative to the frame's short side
    # a square of s pixels in a W x H frame is (s/H, s/W) in relative units
    height, width = (short, short / aspect) if aspect >= 1 else (short * aspect, short)
    top, left = rng.uniform(0, 1 - height), rng.uniform(0, 1 - width)
    return CropParams(top, left, height, width, flip and rng.random() < 0.5)


def eval_crop_params(aspect: float, crop: int = 0, num_crops: int = 1) -> CropParams:
    """Square crops of the full short side; with 3 crops: left/centre/right (or top/centre/bottom)."""
    height, width = (1.0, 1.0 / aspect) if aspect >= 1 else (aspect, 1.0)
    position = 0.5 if num_crops == 1 else crop / (num_crops - 1)
    return CropParams((1 - height) * position if aspect < 1 else 0.0, (1 - width) * position if aspect >= 1 else 0.0, height, width)


def crop_resize(frames: torch.Tensor, params: CropParams, size: int, flow: bool = False) -> torch.Tensor:
    """Crop ``[T, C, H, W]`` (float) to ``params``, resize to ``size x size``, flip.

    For flow (``C == 2``, pixels), vectors are rescaled with the image and a
    flip negates ``u``.
    """
    _, _, h, w = frames.shape
    y0, x0 = int(round(params.top * h)), int(round(params.left * w))
    ch, cw = max(1, int(round(params.height * h))), max(1, int(round(params.width * w)))
    crop = frames[:, :, y0 : y0 + ch, x0 : x0 + cw]
    out = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    if flow:
        out = out * torch.tensor([size / cw, size / ch], dtype=out.dtype).view(1, 2, 1, 1)
    if params.flip:
        out = out.flip(-1)
        if flow:
            out[:, 0] = -out[:, 0]
    return out


def normalise_rgb(frames: torch.Tensor) -> torch.Tensor:
    """uint8/float ``[T, 3, H, W]`` in 0..255 -> ImageNet-normalised float."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (frames.float() / 255.0 - mean) / std


def normalise_flow(flow: torch.Tensor, scale: float = 9.04) -> torch.Tensor:
    """Flow in pixels divided by ``scale`` (default: TSN's normalisation of quantised flow)."""
    return flow / scale
