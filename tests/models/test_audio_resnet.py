import pytest
from torchvision.models import resnet18

from karmma.models.audio_resnet import AudioResNetConfig, resnet18_config


def test_resnet18_config_has_torchvision_parameter_names():
    ours = resnet18_config().build((1, 128, 400)).state_dict()
    theirs = {k: v for k, v in resnet18().state_dict().items() if not k.startswith("fc.")}
    assert set(ours) == set(theirs)
    assert all(ours[k].shape == theirs[k].shape for k in ours if k != "conv1.weight")
    assert ours["conv1.weight"].shape == (64, 1, 7, 7)


@pytest.mark.parametrize("shape", [(1, 128, 400), (1, 64, 200), (1, 64, 37)])
def test_tokens_shape(shape):
    config = AudioResNetConfig(widths=(8, 16, 32, 64), blocks=(1, 1, 1, 1))
    tokens = config.build(shape)(config.example_input(shape, 2))
    assert tokens.shape == (2, config.num_tokens(shape), 64)


def test_paper_token_count():
    assert resnet18_config().num_tokens((1, 128, 400)) == 13


def test_mismatched_widths_and_blocks():
    with pytest.raises(ValueError, match="same length"):
        AudioResNetConfig(widths=(8, 16), blocks=(1,)).build((1, 64, 64))
