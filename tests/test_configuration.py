import pytest

from karmma.configuration import ConfigError, load_config, save_config
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
