"""Every shipped config loads, and the real-dataset ones build their paper-preset models."""

import pytest
import torch

from karmma.configs import CONFIGS, config_path
from karmma.configuration import load_config
from karmma.data.config import dataset_heads
from karmma.stages import build_stage_model
from karmma.train_config import TrainConfig

SHIPPED = sorted(CONFIGS.glob("*/*.yaml"))


def test_every_dataset_has_every_stage():
    stages = {"teacher", "student", "baseline", "baseline_masked", "baseline_delta"}
    for dataset in ("synthkitchen", "epic100", "epic_star", "ssv2"):
        assert stages <= {p.stem for p in (CONFIGS / dataset).glob("*.yaml")}, dataset


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_shipped_config_loads(path):
    config = load_config(TrainConfig, path)
    assert config.stage == path.stem


@pytest.mark.parametrize("dataset", ["epic100", "epic_star", "ssv2"])
@pytest.mark.parametrize("stage", ["student", "baseline", "teacher"])
def test_real_dataset_configs_build_paper_models(dataset, stage, shared_data):
    folder = shared_data / ("something-something-v2" if dataset == "ssv2" else "epic-kitchens-100")
    config = load_config(TrainConfig, config_path(dataset, stage), [f"data.annotations={folder}"])
    assert config.preset == "paper"
    heads = dataset_heads(config.data)
    assert heads == ({"action": 174} if dataset == "ssv2" else {"verb": 97, "noun": 300})
    with torch.device("meta"):
        model = build_stage_model(config, heads, restore=True)
    assert model.modalities == (["V", "F", "D"] if dataset == "ssv2" else ["V", "F", "A"])


def test_unknown_shipped_config_is_named():
    with pytest.raises(FileNotFoundError, match="synthkitchen/student"):
        config_path("nowhere", "student")


def test_token_pooling_reaches_every_swin_extractor_and_is_checked():
    from karmma.models.video_swin import VideoSwinConfig
    from karmma.presets import get_preset
    from karmma.train_config import TrainConfig

    preset = get_preset("tiny", spatial_pool="max")
    pools = {
        spec.extractor.spatial_pool
        for specs in (preset.teacher, preset.student)
        for spec in specs.values()
        if isinstance(spec.extractor, VideoSwinConfig)
    }
    assert pools == {"max"}
    assert {
        s.extractor.spatial_pool
        for s in get_preset("paper").student.values()
        if isinstance(s.extractor, VideoSwinConfig)
    } == {"mean"}  # the paper preset keeps the mean
    with pytest.raises(ValueError, match="token_pooling must be one of '', mean, max, got 'median'"):
        load_config(TrainConfig, None, ["token_pooling=median"])
