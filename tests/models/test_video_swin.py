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
