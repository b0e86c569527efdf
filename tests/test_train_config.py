"""The typed training config: its choices are checked Literals (the stage: a name of the stage table),
its dead keys are refused."""

import dataclasses
import json
import typing

import pytest

from karmma import train_config
from karmma.artifacts import ModelInfo
from karmma.checkpoints import upgrade_config
from karmma.configuration import ConfigError, from_dict, load_config, to_dict
from karmma.train_config import STAGE_SPECS, AudioConfig, StageSpec, TrainConfig, stage_names


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


def test_the_loader_checks_the_stage_against_the_stage_table(tmp_path, monkeypatch):
    for name in stage_names():
        assert load_config(TrainConfig, None, [f"stage={name}"]).stage == name
    known = ", ".join(spec.name for spec in STAGE_SPECS)
    with pytest.raises(ConfigError, match=rf"^config: stage must be one of {known}, got 'bogus'$"):
        load_config(TrainConfig, None, ["stage=bogus"])
    path = tmp_path / "c.yaml"
    path.write_text("stage: studnet\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: stage must be one of .*student.*, got 'studnet'$"):
        load_config(TrainConfig, path)
    # the table is read when a config is checked: a stage added to it is known at once
    toy = StageSpec("toy", "student", "zeros", False, False, False, "val/action_top1", False)
    monkeypatch.setattr(train_config, "STAGE_SPECS", (*STAGE_SPECS, toy))
    config = load_config(TrainConfig, None, ["stage=toy"])
    assert config.stage == "toy" and config.missing_strategy == "zeros"


def test_each_stage_has_its_default_missing_strategy():
    defaults = {name: TrainConfig(stage=name).missing_strategy for name in stage_names()}
    assert defaults == {
        "unimodal": "learned",
        "teacher": "learned",
        "baseline": "zeros",
        "baseline_masked": "mask",
        "baseline_delta": "learned",
        "student": "learned",
    }
    assert TrainConfig(stage="baseline", missing_modality="mask").missing_strategy == "mask"


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("model", "huge", "model must be one of extractor, teacher, student, got 'huge'"),
        ("missing", "noise", "missing must be one of learned, zeros, mask, got 'noise'"),
        ("monitor", "val/loss", "monitor must be one of val/action_top1, val/ce, got 'val/loss'"),
    ],
)
def test_a_stage_record_with_an_unknown_choice_is_refused(field, value, message):
    with pytest.raises(ValueError, match=f"^stage toy: {message}$"):
        dataclasses.replace(STAGE_SPECS[0], name="toy", **{field: value})


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
