from dataclasses import dataclass
from typing import ClassVar, Literal

import pytest

from karmma.configuration import ConfigError, from_dict, load_config, save_config
from karmma.train_config import TrainConfig


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("stage: teacher\noptim: {lr: 0.01, epochs: 3}\ndata: {format: epic, root: /data}\n")
    config = load_config(
        TrainConfig, path, ["optim.lr=3e-4", "modalities=[V, F]", "trainer.name=x", "extractors.V=a.ckpt"]
    )
    assert config.stage == "teacher" and config.optim.lr == 3e-4 and config.optim.epochs == 3
    assert config.modalities == ["V", "F"] and config.extractors == {"V": "a.ckpt"} and config.data.root == "/data"
    save_config(config, tmp_path / "resolved.yaml")
    assert load_config(TrainConfig, tmp_path / "resolved.yaml") == config


def test_unknown_key_names_file_and_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("stage: teacher\noptim: {lrr: 0.01}\n")
    with pytest.raises(ConfigError, match=r"c.yaml.optim: unknown key\(s\) \['lrr'\]"):
        load_config(TrainConfig, path)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['nope'\]"):
        load_config(TrainConfig, None, ["nope=1"])


def test_bad_values(tmp_path):
    with pytest.raises(ConfigError, match="optim.epochs: expected int"):
        load_config(TrainConfig, None, ["optim.epochs=many"])
    with pytest.raises(ConfigError, match="stage must be one of"):
        load_config(TrainConfig, None, ["stage=teachr"])
    with pytest.raises(ConfigError, match="must look like"):
        load_config(TrainConfig, None, ["optim.lr"])
    with pytest.raises(FileNotFoundError):
        load_config(TrainConfig, tmp_path / "missing.yaml")


@dataclass
class _Choices:
    word: Literal["cosine", "linear"] = "cosine"
    count: Literal[1, 3] = 1
    optional: Literal["", "mean", "max"] = ""


def test_a_literal_field_takes_only_its_values_and_the_error_names_key_and_values():
    assert from_dict(_Choices, {"word": "linear", "count": 3, "optional": "max"}) == _Choices("linear", 3, "max")
    with pytest.raises(ConfigError) as error:
        from_dict(_Choices, {"word": "cosin"}, "c.yaml")
    assert str(error.value) == "c.yaml.word must be one of cosine, linear, got 'cosin'"
    with pytest.raises(ConfigError, match=r"c.yaml.optional must be one of '', mean, max, got 'median'"):
        from_dict(_Choices, {"optional": "median"}, "c.yaml")
    # YAML's true equals 1 in Python; it is still not the number 1
    for wrong in (2, True, "3", 3.0):
        with pytest.raises(ConfigError, match="count must be one of 1, 3"):
            from_dict(_Choices, {"count": wrong})


@dataclass(frozen=True)
class _WithRefusedKey:
    REFUSED_KEYS: ClassVar[dict[str, str]] = {"old": "not a setting any more"}
    kept: int = 0


def test_a_refused_key_is_an_error_saying_why():
    with pytest.raises(ConfigError, match=r"^section.old: not a setting any more; remove it$"):
        from_dict(_WithRefusedKey, {"kept": 1, "old": 2}, "section")
    assert from_dict(_WithRefusedKey, {"kept": 1}).kept == 1
