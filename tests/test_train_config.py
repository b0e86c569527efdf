"""The typed training config: its choices are checked Literals, its dead keys are refused."""

import dataclasses
import json
import typing

import pytest

from karmma.artifacts import ModelInfo
from karmma.checkpoints import upgrade_config
from karmma.configuration import ConfigError, from_dict, load_config, to_dict
from karmma.train_config import AudioConfig, TrainConfig


def _literal_keys(cls, prefix: str = "") -> dict[str, tuple]:
    """``{"optim.schedule": ("cosine", "linear"), ...}``: every Literal field of the tree under ``cls``."""
    found = {}
    for name, hint in typing.get_type_hints(cls).items():
        if typing.get_origin(hint) is typing.Literal:
            found[prefix + name] = typing.get_args(hint)
        elif dataclasses.is_dataclass(hint):
            found |= _literal_keys(hint, f"{prefix}{name}.")
    return found


def test_the_string_choices_are_literals():
    assert set(_literal_keys(TrainConfig)) == {
        "stage",
        "preset",
        "unimodal_size",
        "teacher_logits",
        "missing_modality",
        "token_pooling",
        "optim.schedule",
        "data.format",
        "data.audio",
        "data.split_by",
        "data.missing",
        "clip.num_crops",
    }


@pytest.mark.parametrize("key, allowed", sorted(_literal_keys(TrainConfig).items()))
def test_the_loader_refuses_a_value_a_literal_does_not_list(key, allowed):
    default = TrainConfig()
    for part in key.split("."):
        default = getattr(default, part)
    assert default in allowed
    for value in allowed:
        text = "''" if value == "" else str(value)
        assert load_config(TrainConfig, None, [f"{key}={text}"]) is not None
    with pytest.raises(ConfigError, match=rf"^config\.{key} must be one of .*, got 'bogus'$"):
        load_config(TrainConfig, None, [f"{key}=bogus"])


@pytest.mark.parametrize("key", ["n_mels", "frames"])
def test_the_spectrogram_shape_keys_are_refused_saying_why(key, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f"clip:\n  audio: {{sample_rate: 16000, {key}: 64}}\n")
    with pytest.raises(ConfigError, match=rf"c\.yaml\.clip\.audio\.{key}: not a setting: the model's A input"):
        load_config(TrainConfig, path)
    path.write_text("clip:\n  audio: {sample_rate: 16000}\n")
    assert load_config(TrainConfig, path).clip.audio == AudioConfig(sample_rate=16000)


def test_a_config_stored_with_the_old_audio_keys_still_loads():
    """Checkpoints, exports and caches written before the keys were refused hold them (never used)."""
    stored = to_dict(TrainConfig())
    stored["clip"]["audio"] |= {"n_mels": 128, "frames": 400}
    with pytest.raises(ConfigError, match="n_mels"):
        from_dict(TrainConfig, stored)
    assert from_dict(TrainConfig, upgrade_config(stored)) == TrainConfig()
    info = ModelInfo(config=stored, heads={"verb": 2}, input_shapes={"A": (1, 64, 100)})
    assert ModelInfo.from_json(info.to_json()).clip_config() == TrainConfig().clip
    assert json.loads(info.to_json())["config"]["clip"]["audio"]["frames"] == 400  # what an old export holds
