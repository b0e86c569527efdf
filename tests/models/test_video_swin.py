import dataclasses

import pytest
import torch
from torchvision.models.video import SwinTransformer3d

from karmma.models.video_swin import VideoSwinConfig, swin3d_b_config, swin3d_t_config

SMALL = VideoSwinConfig(embed_dim=8, depths=(1, 1), num_heads=(1, 2), window_size=(2, 4, 4))


@pytest.mark.parametrize("frames,channels", [(8, 3), (8, 2), (7, 1)])
def test_tokens_shape(frames, channels):
    shape = (frames, channels, 32, 32)
    extractor = SMALL.build(shape)
    tokens = extractor(SMALL.example_input(shape, 2))
    assert tokens.shape == (2, SMALL.num_tokens(shape), SMALL.token_dim)
    assert SMALL.num_tokens(shape) == (frames + 1) // 2 and SMALL.token_dim == 16


def test_paper_configs_match_torchvision_builders():
    assert swin3d_t_config().token_dim == 768 and swin3d_b_config().token_dim == 1024
    assert swin3d_b_config().num_tokens((32, 3, 224, 224)) == 16


def test_flow_first_layer_initialised_from_averaged_rgb_filters(tmp_path):
    torchvision_model = SwinTransformer3d(
        patch_size=[2, 4, 4], embed_dim=8, depths=[1, 1], num_heads=[1, 2], window_size=[2, 4, 4], num_classes=400
    )
    path = tmp_path / "swin_rgb.pth"
    torch.save(torchvision_model.state_dict(), path)
    config = VideoSwinConfig(embed_dim=8, depths=(1, 1), num_heads=(1, 2), window_size=(2, 4, 4), weights=str(path))
    flow = config.build((8, 2, 32, 32))
    rgb_filter = torchvision_model.patch_embed.proj.weight
    assert flow.swin.patch_embed.proj.weight.shape[1] == 2
    expected = rgb_filter.mean(dim=1, keepdim=True).expand(-1, 2, -1, -1, -1)
    assert torch.equal(flow.swin.patch_embed.proj.weight, expected)
    # every other weight is the pretrained one
    name = "features.0.0.attn.qkv.weight"
    assert torch.equal(flow.swin.state_dict()[name], torchvision_model.state_dict()[name])
    rgb = config.build((8, 3, 32, 32))
    assert torch.equal(rgb.swin.patch_embed.proj.weight, rgb_filter)


def test_mismatched_weights_are_a_clear_error(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"something.else": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="do not match"):
        VideoSwinConfig(embed_dim=8, depths=(1, 1), num_heads=(1, 2), weights=str(path)).build((8, 3, 32, 32))


def test_max_pooling_keeps_a_small_moving_patch_that_the_mean_dilutes():
    """Token pooling (docs/method.md): with ``spatial_pool="max"`` a change confined to one
    corner of the frame moves the token as much as the strongest location responds; the mean
    spreads it over every location."""
    torch.manual_seed(0)
    mean_pooled = (
        VideoSwinConfig(embed_dim=8, depths=(1, 1), num_heads=(1, 2), window_size=(2, 4, 4), stochastic_depth_prob=0.0)
        .build((4, 2, 64, 64))
        .eval()
    )
    max_pooled = (
        VideoSwinConfig(
            embed_dim=8,
            depths=(1, 1),
            num_heads=(1, 2),
            window_size=(2, 4, 4),
            stochastic_depth_prob=0.0,
            spatial_pool="max",
        )
        .build((4, 2, 64, 64))
        .eval()
    )
    max_pooled.load_state_dict(mean_pooled.state_dict())  # same weights, only the pooling differs
    still = torch.zeros(1, 4, 2, 64, 64)
    moving = still.clone()
    moving[..., :8, :8] = 3.0  # a small object's flow in one corner
    with torch.no_grad():
        features = mean_pooled.swin.norm(
            mean_pooled.swin.features(mean_pooled.swin.patch_embed(moving.transpose(1, 2)))
        )
        assert torch.allclose(max_pooled(moving), features.amax(dim=(2, 3)))
        assert torch.allclose(mean_pooled(moving), features.mean(dim=(2, 3)))
        mean_change = (mean_pooled(moving) - mean_pooled(still)).abs().mean()
        max_change = (max_pooled(moving) - max_pooled(still)).abs().mean()
    assert max_change > 2 * mean_change


def test_unknown_spatial_pool_is_a_clear_error():
    with pytest.raises(ValueError, match="spatial_pool must be one of mean, max"):
        VideoSwinConfig(spatial_pool="median")


def test_input_norm_takes_away_the_constant_offset_of_log_mel_images():
    """A log-mel image sits at a large constant offset (log of a small power, about -5 on
    SynthKitchen); after the patch embedding's LayerNorm that offset outweighs the content, so
    different clips give nearly the same tokens. ``input_norm`` (the teacher's audio) removes it."""
    torch.manual_seed(0)
    shape = (4, 1, 32, 32)
    config = VideoSwinConfig(
        embed_dim=8, depths=(1, 1), num_heads=(1, 2), window_size=(2, 4, 4), stochastic_depth_prob=0.0, input_norm=True
    )
    clips = torch.randn(6, *shape)
    normed = config.build(shape).train()  # batch statistics, as in training
    torch.testing.assert_close(normed(clips - 5.0), normed(clips), atol=1e-4, rtol=1e-4)

    def similarity_between_clips(extractor) -> float:
        with torch.no_grad():
            tokens = torch.nn.functional.normalize(extractor(clips - 5.0).flatten(1), dim=1)
        pairs = tokens @ tokens.T
        return pairs[~torch.eye(len(pairs), dtype=torch.bool)].mean().item()

    torch.manual_seed(0)
    plain = dataclasses.replace(config, input_norm=False).build(shape).train()
    assert similarity_between_clips(plain) > 0.95 > similarity_between_clips(normed) + 0.1
