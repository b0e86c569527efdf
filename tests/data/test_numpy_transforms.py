"""The NumPy model inputs (deployment without torch) against the dataset's torch transforms."""

import numpy as np
import pytest
import torch

from karmma.data import numpy_transforms, transforms
from karmma.data.numpy_transforms import CropParams, eval_crop_params

CROPS = [
    CropParams(0.0, 0.21875, 1.0, 0.5625),  # the centre view of 456 x 256
    CropParams(0.1, 0.2, 0.8, 0.45, flip=True),
    CropParams(0.3, 0.1, 0.5, 0.28),
]


def _frames(shape, seed=0) -> np.ndarray:
    """uint8 ``[T, H, W, C]`` noise: every pixel differs from its neighbours, the hardest case for a resize."""
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _channels_first(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2)  # a channels-last view, as the dataset's readers give


# Tolerance 0: the NumPy resize repeats torch's uint8 kernel (its int16 weights and precision, horizontal
# pass then vertical, each rounded), and the float steps are the same float32 operations.
@pytest.mark.parametrize("params", CROPS)
@pytest.mark.parametrize("size", [224, 56, 300])  # shrink, shrink a lot, enlarge
def test_rgb_input_equals_the_torch_transform(params, size):
    frames = _frames((3, 256, 456, 3))
    expected = transforms.rgb_input(_channels_first(frames), params, size).numpy()
    out = numpy_transforms.rgb_input(frames, params, size)
    assert out.shape == (3, 3, size, size) and out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("params", CROPS)
def test_flow_input_equals_the_torch_transform(params):
    quantised = _frames((3, 64, 114, 2), seed=1)
    expected = transforms.flow_input(_channels_first(quantised).contiguous(), params, 56, scale=2.0).numpy()
    out = numpy_transforms.flow_input(quantised, params, 56, scale=2.0)
    assert out.shape == (3, 2, 56, 56)
    np.testing.assert_array_equal(out, expected)


def test_the_comparison_sees_a_one_pixel_shift():
    frames = _frames((1, 64, 96, 3))
    params = eval_crop_params(96 / 64)
    shifted = CropParams(params.top, params.left + 1 / 96, params.height, params.width)
    assert not np.array_equal(
        numpy_transforms.rgb_input(frames, shifted, 56), transforms.rgb_input(_channels_first(frames), params, 56)
    )


def test_crop_resize_wants_uint8_frames_channels_last():
    with pytest.raises(ValueError, match=r"uint8 frames \[T, H, W, C\]"):
        numpy_transforms.crop_resize(np.zeros((1, 8, 8, 3), np.float32), CropParams(0, 0, 1, 1), 4)
