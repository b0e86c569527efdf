"""The torch-free half of the spatial transforms: crop geometry, and the model inputs in NumPy.

The crop boxes (:class:`CropParams`, chosen in relative coordinates so RGB and
flow of different resolutions get the same region) are shared with
:mod:`karmma.data.transforms`, which builds the training inputs with torch's
uint8 resize kernel. :func:`rgb_input` and :func:`flow_input` here build the
same inputs with NumPy, for deployment without torch (``karmma predict`` on an
ONNX export). They reproduce torch's kernel step by step: the antialiased
bilinear weights (PIL's), quantised to 16-bit integers with torch's precision,
a horizontal then a vertical pass, each rounded to uint8. Training keeps
torch's kernel because it is several times faster (docs/deploy.md, "Light
install"); ``tests/data/test_numpy_transforms.py`` checks the two agree
(at most one grey level anywhere, equal almost everywhere).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from karmma.data.media import FLOW_BOUND

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
    return CropParams(
        (1 - height) * position if aspect < 1 else 0.0, (1 - width) * position if aspect >= 1 else 0.0, height, width
    )


def crop_box(params: CropParams, height: int, width: int) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` in pixels of ``params`` on a ``height x width`` frame."""
    top, left = int(round(params.top * height)), int(round(params.left * width))
    return top, left, max(1, int(round(params.height * height))), max(1, int(round(params.width * width)))


@lru_cache(maxsize=32)
def _resize_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Source indices ``[out, taps]``, integer weights ``[out, taps]`` and their precision (bits) of
    torch's antialiased bilinear resize (``align_corners=False``) along one axis, as its uint8 kernel
    computes them (``aten/src/ATen/native/UpSample.h``, ``_compute_int16_weights_aa``)."""
    scale = in_size / out_size
    support = scale if scale >= 1.0 else 1.0  # the triangle's half-width, widened when shrinking (antialias)
    inverse = 1.0 / scale if scale >= 1.0 else 1.0
    centres = scale * (np.arange(out_size) + 0.5)
    low = np.maximum((centres - support + 0.5).astype(np.int64), 0)  # C++ truncation, as torch
    high = np.minimum((centres + support + 0.5).astype(np.int64), in_size)
    taps = int((high - low).max())
    index = low[:, None] + np.arange(taps)
    weights = np.clip(1.0 - np.abs((index - centres[:, None] + 0.5) * inverse), 0.0, None)
    weights[index >= high[:, None]] = 0.0
    weights /= weights.sum(axis=1, keepdims=True)
    precision = 0  # the most bits that keep every weight inside int16
    while precision < 22 and int(0.5 + weights.max() * (1 << (precision + 1))) < (1 << 15):
        precision += 1
    fixed = np.where(weights < 0, -0.5, 0.5) + weights * (1 << precision)
    return np.minimum(index, in_size - 1), fixed.astype(np.int64).astype(np.int32), precision


def _resize_axis(frames: np.ndarray, axis: int, size: int) -> np.ndarray:
    """Resize uint8 ``frames`` along ``axis`` to ``size`` in fixed point, rounded to uint8."""
    if frames.shape[axis] == size:
        return frames
    index, weights, precision = _resize_taps(frames.shape[axis], size)
    shape = [1] * frames.ndim
    shape[axis] = size
    total = np.full(frames.shape[:axis] + (size,) + frames.shape[axis + 1 :], 1 << (precision - 1), np.int32)
    for tap in range(index.shape[1]):
        total += np.take(frames, index[:, tap], axis=axis).astype(np.int32) * weights[:, tap].reshape(shape)
    return np.clip(total >> precision, 0, 255).astype(np.uint8)


def crop_resize(frames: np.ndarray, params: CropParams, size: int) -> np.ndarray:
    """Crop uint8 channels-last ``[T, H, W, C]`` to ``params``, resize to ``size x size``
    (antialiased bilinear, as :func:`karmma.data.transforms.crop_resize`), flip -> uint8 ``[T, size, size, C]``."""
    if frames.dtype != np.uint8 or frames.ndim != 4:
        raise ValueError(f"crop_resize expects uint8 frames [T, H, W, C], got {frames.dtype} {list(frames.shape)}")
    _, h, w, _ = frames.shape
    top, left, ch, cw = crop_box(params, h, w)
    out = _resize_axis(_resize_axis(frames[:, top : top + ch, left : left + cw], 2, size), 1, size)
    return out[:, :, ::-1] if params.flip else out


def _affine(frames: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """uint8 ``[T, S, S, C]`` -> float32 ``[T, C, S, S]``: ``frames * scale + shift`` per channel
    (float32 ``[C]``; the same float32 operations as torch's, so the same numbers)."""
    out = frames.transpose(0, 3, 1, 2).astype(np.float32)
    out *= scale[:, None, None]
    out += shift[:, None, None]
    return out


def rgb_input(frames: np.ndarray, params: CropParams, size: int) -> np.ndarray:
    """RGB frames uint8 ``[T, H, W, 3]`` -> the model's V input float32 ``[T, 3, size, size]``:
    cropped, resized, flipped, ImageNet-normalised."""
    mean, std = np.array(IMAGENET_MEAN, np.float32), np.array(IMAGENET_STD, np.float32)
    scale = np.float32(1.0) / (np.float32(255.0) * std)
    return _affine(crop_resize(frames, params, size), scale, -mean / std)


def flow_input(
    quantised: np.ndarray, params: CropParams, size: int, scale: float = 9.04, bound: float = FLOW_BOUND
) -> np.ndarray:
    """Quantised flow uint8 ``[T, H, W, 2]`` (``u, v``; grey ``q`` is ``q / 255 * 2 bound - bound``
    pixels) -> the model's F input float32 ``[T, 2, size, size]``: cropped, resized, flipped (``u``
    negated), in pixels of the resized crop (``u`` times ``size / crop width``, ``v`` times
    ``size / crop height``), divided by ``scale``."""
    _, h, w, _ = quantised.shape
    _, _, ch, cw = crop_box(params, h, w)
    gain = np.array([size / cw * (-1.0 if params.flip else 1.0), size / ch], np.float32) / np.float32(scale)
    return _affine(
        crop_resize(quantised, params, size), gain * np.float32(2 * bound / 255.0), np.float32(-bound) * gain
    )
