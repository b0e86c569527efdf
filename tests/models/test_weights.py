import pytest
import torch
from safetensors.torch import save_file
from torchvision.models import ResNet18_Weights
from torchvision.models.video import Swin3D_T_Weights

from karmma.models.audio_resnet import resnet18_config
from karmma.models.video_swin import swin3d_t_config
from karmma.models.weights import MissingWeightsError, adapt_input_channels, load_state_dict, resolve_weights_file


def test_missing_torchvision_weights_name_the_cache_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / "swin3d_t-7615ae03.pth"
    with pytest.raises(MissingWeightsError, match=str(expected)):
        swin3d_t_config(weights="KINETICS400_V1").build((32, 3, 224, 224))


def test_missing_local_file_is_named(tmp_path):
    with pytest.raises(MissingWeightsError, match="nope.pth"):
        resolve_weights_file(str(tmp_path / "nope.pth"), ResNet18_Weights)


def test_cached_torchvision_weights_load_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    from torchvision.models import resnet18

    reference = resnet18()
    path = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    assert resolve_weights_file("IMAGENET1K_V1", ResNet18_Weights) == path
    audio = resnet18_config(weights="IMAGENET1K_V1").build((1, 128, 400))
    assert torch.equal(audio.conv1.weight, reference.conv1.weight.mean(1, keepdim=True))
    assert torch.equal(audio.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)


def test_safetensors_and_state_dict_wrappers(tmp_path):
    tensors = {"w": torch.randn(2, 3)}
    save_file(tensors, tmp_path / "w.safetensors")
    assert torch.equal(load_state_dict(tmp_path / "w.safetensors")["w"], tensors["w"])
    torch.save({"state_dict": tensors}, tmp_path / "w.pth")
    assert torch.equal(load_state_dict(tmp_path / "w.pth")["w"], tensors["w"])


def test_pickled_objects_are_refused(tmp_path):
    import argparse

    torch.save({"w": argparse.Namespace(payload=1)}, tmp_path / "evil.pth")
    with pytest.raises(
        ValueError,
        match=r"evil.pth: it holds pickled Python objects that can run code when loaded \(argparse.Namespace\)",
    ):
        load_state_dict(tmp_path / "evil.pth")


def test_adapt_input_channels():
    weight = torch.randn(4, 3, 7, 7)
    assert adapt_input_channels(weight, 3) is weight
    assert torch.allclose(adapt_input_channels(weight, 1)[:, 0], weight.mean(1))
    assert Swin3D_T_Weights.KINETICS400_V1.url.endswith("swin3d_t-7615ae03.pth")


def test_garbage_and_nan_weights_are_one_line_errors(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(ValueError, match="pretrained weights .*garbage.pth: unreadable") as error:
        load_state_dict(garbage)
    assert "weights_only" not in str(error.value)  # torch's advice to load it unsafely is not passed on
    torch.save({"w": torch.tensor([float("nan")])}, tmp_path / "nan.pth")
    with pytest.raises(ValueError, match="tensor 'w' holds NaN"):
        load_state_dict(tmp_path / "nan.pth")
