import random

import pytest
import torch
import torch.nn.functional as F

from karmma.data.dataset import crop_boxes
from karmma.data.media import decode_flow
from karmma.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CropParams,
    crop_box,
    crop_resize,
    eval_crop_params,
    finish_inputs,
    flow_affine,
    flow_input,
    random_crop_params,
    rgb_affine,
    rgb_input,
)


def _float_reference(frames: torch.Tensor, params: CropParams, size: int, flow: bool = False) -> torch.Tensor:
    """The float pipeline the uint8 one replaced: crop and antialiased bilinear resize in float,
    flow vectors rescaled, flip (u negated)."""
    _, _, h, w = frames.shape
    y0, x0 = int(round(params.top * h)), int(round(params.left * w))
    ch, cw = max(1, int(round(params.height * h))), max(1, int(round(params.width * w)))
    out = F.interpolate(
        frames[:, :, y0 : y0 + ch, x0 : x0 + cw],
        size=(size, size),
        mode="bilinear",
        align_corners=False,
        antialias=True,
    )
    if flow:
        out = out * torch.tensor([size / cw, size / ch]).view(1, 2, 1, 1)
    if params.flip:
        out = out.flip(-1)
        if flow:
            out[:, 0] = -out[:, 0]
    return out


def _textured(shape, seed=0) -> torch.Tensor:
    """uint8 frames with smooth structure and fine detail, channels-last as the readers return them."""
    generator = torch.Generator().manual_seed(seed)
    t, c, h, w = shape
    coarse = torch.rand(t, c, h // 16, w // 16, generator=generator)
    smooth = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
    detail = torch.rand(t, c, h, w, generator=generator) * 0.3
    return (
        ((smooth * 0.7 + detail).clamp(0, 1) * 255)
        .round()
        .to(torch.uint8)
        .contiguous(memory_format=torch.channels_last)
    )


# Documented tolerance of the uint8 resize (docs/performance.md): at most one grey level from the float
# pipeline, so <= 1 / (255 * 0.224) after ImageNet normalisation, <= 40 / 255 px (times the resize
# factor, over the flow scale) for flow.
@pytest.mark.parametrize(
    "params",
    [
        CropParams(0.1, 0.2, 0.8, 0.45, flip=False),
        CropParams(0.0, 0.3, 1.0, 0.5625, flip=True),
        CropParams(0.3, 0.1, 0.5, 0.28, flip=True),
    ],
)  # 205 px, 256 px and 128 px crops of 456 x 256
def test_rgb_input_within_one_grey_level_of_the_float_pipeline(params):
    frames = _textured((4, 3, 256, 456))
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    reference = (_float_reference(frames.float(), params, 224) / 255.0 - mean) / std
    out = rgb_input(frames, params, 224)
    assert out.shape == (4, 3, 224, 224) and out.dtype == torch.float32 and out.is_contiguous()
    difference = (out - reference).abs() * std * 255  # in grey levels
    assert difference.max() <= 1.0 + 1e-3 and difference.mean() < 0.5


@pytest.mark.parametrize(
    "params", [CropParams(0.1, 0.2, 0.8, 0.45, flip=False), CropParams(0.3, 0.1, 0.5, 0.28, flip=True)]
)
def test_flow_input_within_one_quantisation_level_of_the_float_pipeline(params):
    quantised = _textured((4, 2, 256, 456), seed=1)
    reference = _float_reference(decode_flow(quantised[:, 0], quantised[:, 1]), params, 224, flow=True) / 9.04
    out = flow_input(quantised, params, 224, scale=9.04)
    assert out.shape == (4, 2, 224, 224) and out.is_contiguous()
    _, _, ch, cw = crop_box(params, 256, 456)
    level = 40 / 255 * torch.tensor([224 / cw, 224 / ch]).view(1, 2, 1, 1) / 9.04  # one grey level, in output units
    difference = (out - reference).abs() / level
    assert difference.max() <= 1.0 + 1e-3 and difference.mean() < 0.5


def test_finish_inputs_gives_the_float_pipelines_numbers_per_sample():
    """A batch of uint8 crops with per-sample maps, finished, equals rgb_input / flow_input of each
    sample bit for bit (other crops and flips per row); rows of a missing modality (zero map) stay zero."""
    rgb, flow = _textured((4, 3, 256, 456), seed=2), _textured((4, 2, 128, 228), seed=3)
    crops = [CropParams(0.1, 0.2, 0.8, 0.45), CropParams(0.3, 0.1, 0.5, 0.28, flip=True), CropParams(0, 0, 1, 1)]
    batch = {
        "inputs": {
            # laid out [B, T, H, W, C] as the loader hands RGB over (channels last)
            "V": torch.stack([crop_resize(rgb, c, 32) for c in crops]).movedim(2, -1).contiguous().movedim(-1, 2),
            "F": torch.stack([crop_resize(flow, c, 32) for c in crops]),
            "A": torch.randn(3, 1, 8, 10),
        },
        "affine": {
            "V": torch.stack([rgb_affine()] * 3),
            "F": torch.stack([flow_affine(c, (128, 228), 32, 2.5) for c in crops]),
        },
    }
    assert batch["inputs"]["V"].dtype == batch["inputs"]["F"].dtype == torch.uint8
    assert batch["inputs"]["V"].stride()[2] == 1
    batch["inputs"]["F"][2] = 0
    batch["affine"]["F"][2] = 0  # as collate_clips writes a missing row
    finished = finish_inputs(batch, "cpu")
    for row, crop in enumerate(crops):
        assert torch.equal(finished["V"][row], rgb_input(rgb, crop, 32))
        if row < 2:
            assert torch.equal(finished["F"][row], flow_input(flow, crop, 32, scale=2.5))
    assert finished["F"].dtype == torch.float32 and finished["F"][2].abs().sum() == 0
    assert finished["A"] is batch["inputs"]["A"]  # float inputs are only moved
    assert finished["V"].is_contiguous() and finished["V"].shape == (3, 4, 3, 32, 32)
    # one dataset item ([T, C, S, S], maps [2, C]) and a subset of keys
    item = {
        "inputs": {"V": batch["inputs"]["V"][1], "F": batch["inputs"]["F"][1]},
        "affine": {"F": batch["affine"]["F"][1]},
    }
    with pytest.raises(ValueError, match="'V' is uint8 but the batch has no affine map"):
        finish_inputs(item)
    assert list(finish_inputs(item, keys=["F"])) == ["F"]
    assert torch.equal(finish_inputs(item, keys=["F"])["F"], finished["F"][1])


def test_flip_mirrors_rgb_and_flow_and_negates_u():
    quantised = torch.full((1, 2, 8, 8), 128, dtype=torch.uint8)
    quantised[:, 0, :, :4] = 255  # left half moves right (+20 px)
    out = flow_input(quantised, CropParams(0, 0, 1, 1, flip=True), 8, scale=1.0)
    assert torch.allclose(out[0, 0, :, 4:], torch.full((8, 4), -20.0))  # now the right half, moving left
    assert torch.allclose(out[0, 0, :, :4], torch.full((8, 4), -(128 / 255 * 40 - 20)))  # +0.08 px (grey 128), negated
    assert torch.allclose(out[0, 1], torch.full((8, 8), 128 / 255 * 40 - 20))  # vertical flow unchanged
    rgb = torch.arange(8, dtype=torch.uint8).repeat(1, 3, 8, 1)
    assert torch.equal(
        crop_resize(rgb, CropParams(0, 0, 1, 1, flip=True), 8)[0, 0, 0], torch.arange(7, -1, -1, dtype=torch.uint8)
    )


def test_resizing_flow_rescales_vectors():
    quantised = torch.full((1, 2, 16, 32), 255, dtype=torch.uint8)  # +20 px everywhere
    out = flow_input(quantised, CropParams(0, 0, 1, 0.5), 8, scale=1.0)  # 16x16 crop -> 8x8: half the pixels
    assert torch.allclose(out, torch.full_like(out, 10.0))


def test_crop_resize_wants_uint8():
    with pytest.raises(ValueError, match="uint8"):
        crop_resize(torch.zeros(1, 3, 8, 8), CropParams(0, 0, 1, 1), 4)


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
    rgb = torch.zeros(1, 3, 64, 64, dtype=torch.uint8)
    rgb[..., 16:48, 16:48] = 255
    flow = torch.zeros(1, 2, 32, 32, dtype=torch.uint8)
    flow[..., 8:24, 8:24] = 255
    assert crop_resize(rgb, params, 16).min() == 255
    assert flow_input(flow, params, 16).min() > 0


def test_boxes_follow_crop_and_flip():
    boxes = torch.tensor([[[0.5, 0.5, 0.75, 0.75, 1.0, 1.0], [0, 0, 0, 0, 0, 0]]])
    out = crop_boxes(boxes, CropParams(0.5, 0.5, 0.5, 0.5, flip=True))
    assert out[0, 0].tolist() == pytest.approx([0.5, 0.0, 1.0, 0.5, 1.0, 1.0])
    assert out[0, 1].abs().sum() == 0
