import random

import pytest
import torch

from karmma.data.dataset import crop_boxes
from karmma.data.transforms import CropParams, crop_resize, eval_crop_params, random_crop_params


def test_flip_mirrors_rgb_and_flow_and_negates_u():
    flow = torch.zeros(1, 2, 8, 8)
    flow[:, 0, :, :4] = 3.0  # left half moves right
    flow[:, 1] = 1.0
    params = CropParams(0, 0, 1, 1, flip=True)
    out = crop_resize(flow, params, 8, flow=True)
    assert torch.allclose(out[0, 0, :, 4:], torch.full((8, 4), -3.0))  # now the right half, moving left
    assert torch.allclose(out[0, 0, :, :4], torch.zeros(8, 4))
    assert torch.allclose(out[0, 1], torch.ones(8, 8))  # vertical flow unchanged
    rgb = torch.arange(8.0).repeat(1, 3, 8, 1)
    assert torch.equal(crop_resize(rgb, params, 8)[0, 0, 0], torch.arange(7.0, -1, -1))


def test_resizing_flow_rescales_vectors():
    flow = torch.ones(1, 2, 16, 32)
    out = crop_resize(flow, CropParams(0, 0, 1, 0.5), 8, flow=True)  # 16x16 crop -> 8x8: half the pixels
    assert torch.allclose(out, torch.full_like(out, 0.5))


def test_crops_are_square_in_pixels_and_inside_the_frame():
    rng = random.Random(0)
    for aspect in (16 / 9, 1.0, 0.75):
        for _ in range(50):
            p = random_crop_params(aspect, rng)
            assert 0 <= p.top <= 1 - p.height + 1e-9 and 0 <= p.left <= 1 - p.width + 1e-9
            assert p.width * aspect == pytest.approx(p.height)  # square in pixels
        left, centre, right = (eval_crop_params(aspect, i, 3) for i in range(3))
        assert centre.width * aspect == pytest.approx(centre.height)
        if aspect > 1:
            assert left.left == 0 and right.left + right.width == pytest.approx(1.0)


def test_same_crop_for_rgb_and_flow_of_different_resolutions():
    params = CropParams(0.25, 0.25, 0.5, 0.5)
    rgb = torch.zeros(1, 3, 64, 64)
    rgb[..., 16:48, 16:48] = 1.0
    flow = torch.zeros(1, 2, 32, 32)
    flow[..., 8:24, 8:24] = 1.0
    assert crop_resize(rgb, params, 16).min() == 1.0
    assert crop_resize(flow, params, 16, flow=True).min() > 0


def test_boxes_follow_crop_and_flip():
    boxes = torch.tensor([[[0.5, 0.5, 0.75, 0.75, 1.0, 1.0], [0, 0, 0, 0, 0, 0]]])
    out = crop_boxes(boxes, CropParams(0.5, 0.5, 0.5, 0.5, flip=True))
    assert out[0, 0].tolist() == pytest.approx([0.5, 0.0, 1.0, 0.5, 1.0, 1.0])
    assert out[0, 1].abs().sum() == 0
