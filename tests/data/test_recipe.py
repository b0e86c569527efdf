"""The frame recipe (karmma.data.recipe): the stride rules, the record, the one-line mismatch errors."""

import json
import logging

import pytest

from karmma.data.config import DatasetConfig, dataset_recipe
from karmma.data.recipe import PUBLISHED_EPIC, PrepareSettings, check_same_recipe, marker_path, read_recipe


def test_the_stride_rules():
    epic, fps = PrepareSettings(flow_stride="epic-id"), PrepareSettings(flow_stride="fps")
    # the published EPIC rule: 2018-style ids have flow at half the RGB rate, whatever the rate
    assert [epic.stride(v, 59.94) for v in ("P01_01", "P01_101", "P12_1", "my clip", "")] == [2, 1, 1, 1, 1]
    assert epic.stride("P01_01", None) == 2  # needs no frame rate
    # from the frame rate: pairs about 1/30 s apart, whatever the name
    assert [fps.stride("P01_01", rate) for rate in (24, 25, 30, 50, 59.94, 120)] == [1, 1, 1, 2, 2, 4]
    assert PrepareSettings(flow_stride="fps", flow_pair_seconds=1 / 12).stride("x", 60) == 5
    with pytest.raises(ValueError, match="the flow stride rule 'fps' needs the frame rate of video P01_01"):
        fps.stride("P01_01", None)
    with pytest.raises(ValueError, match="flow stride rule must be one of epic-id, fps, got 'name'"):
        PrepareSettings(flow_stride="name")
    with pytest.raises(ValueError, match="flow method must be one of tvl1, dis"):
        PrepareSettings(flow="farneback")
    assert PUBLISHED_EPIC == PrepareSettings(flow="tvl1", short_side=256, fps=None, flow_bound=20.0)


def test_a_recipe_recorded_before_the_stride_rule_reads_as_the_rule_of_that_time():
    old = {"flow": "dis", "fps": None, "short_side": 64, "jpeg_quality": 90}  # a karmma prepare marker of then
    assert PrepareSettings.from_record(old) == PrepareSettings(flow="dis", short_side=64, flow_stride="epic-id")
    recipe = PrepareSettings(flow="dis", short_side=64, flow_stride="fps", fps=30.0)
    assert PrepareSettings.from_record(json.loads(json.dumps(recipe.to_record()))) == recipe
    with pytest.raises(ValueError, match="m.json: unreadable recipe"):
        PrepareSettings.from_record({"flow": "dis", "short_side": -1}, "m.json")


def _marker(root, video_id, settings: dict) -> None:
    path = marker_path(root, video_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"settings": settings, "summary": {}}))


def test_the_data_root_records_one_recipe(tmp_path):
    assert read_recipe(tmp_path) is None
    (tmp_path / "annotations").mkdir()
    assert dataset_recipe(DatasetConfig(format="epic", root=str(tmp_path))) == PUBLISHED_EPIC  # official frames
    assert dataset_recipe(DatasetConfig(format="manifest", root=str(tmp_path))) is None  # unknown
    assert dataset_recipe(DatasetConfig(format="epic", root=str(tmp_path / "gone"))) is None
    dis = PrepareSettings(flow="dis", short_side=64)
    _marker(tmp_path, "P01_01", dis.to_record())
    _marker(tmp_path, "P01_102", {"flow": "dis", "fps": None, "short_side": 64, "jpeg_quality": 90})  # older marker
    assert read_recipe(tmp_path) == dis == dataset_recipe(DatasetConfig(format="epic", root=str(tmp_path)))
    _marker(tmp_path, "P02_01", PrepareSettings(flow="dis", short_side=64, flow_stride="fps").to_record())
    with pytest.raises(ValueError, match=r"videos prepared with different frame recipes \(P01_01 vs P02_01: "):
        read_recipe(tmp_path)


def test_different_recipes_are_a_one_line_error(caplog):
    teacher, data = PrepareSettings(flow="tvl1", short_side=256), PrepareSettings(flow="dis", short_side=64)
    with pytest.raises(ValueError) as error:
        check_same_recipe(teacher, data, "teacher t.ckpt", "the training data (/d)")
    message = str(error.value)
    assert "\n" not in message and message.startswith(
        "teacher t.ckpt and the training data (/d) have different frame recipes (flow tvl1 vs dis; short_side 256 vs 64)"
    )
    check_same_recipe(data, PrepareSettings(flow="dis", short_side=64), "a", "b")  # the same: fine
    with caplog.at_level(logging.WARNING, logger="karmma.data"):
        check_same_recipe(None, data, "old.ckpt", "the training data")  # unknown: cannot be checked, said so
    assert "old.ckpt records no frame recipe" in caplog.text
