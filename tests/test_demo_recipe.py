"""The demo's comparisons differ in one thing each: the resolved configs of each pair of models
differ only in the keys that define the pair (no training here)."""

import dataclasses
from pathlib import Path

import pytest

from karmma.demo import DISTILLATION_KEYS, PLANS, _stage_config, stage_overrides

# pair -> the keys allowed to differ (beyond the stage's name and run folder)
PAIRS = {
    # distillation, and nothing else: its teacher and cached logits, and the keys only a distilling stage reads
    ("baseline_delta", "student"): {"teacher", "teacher_logits", "cache.path", *DISTILLATION_KEYS},
    # the paper's Baseline and ours: how a missing modality reaches the fusion
    ("baseline", "baseline_masked"): {"missing_modality"},
    # the ablation's first step: modality dropout and learned tokens
    ("baseline", "baseline_delta"): {"missing_modality", "loss.modality_dropout"},
}


def _flat(value, prefix=""):
    if isinstance(value, dict):
        out = {}
        for key, inner in value.items():
            out.update(_flat(inner, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value}


@pytest.mark.parametrize("flavour", sorted(PLANS))
@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_each_comparison_differs_only_in_what_defines_it(tmp_path: Path, flavour, pair):
    configs = stage_overrides(tmp_path, PLANS[flavour], seed=3)
    first, second = (_flat(dataclasses.asdict(_stage_config(*configs[name]))) for name in pair)
    differing = {key for key in first.keys() | second.keys() if first.get(key) != second.get(key)}
    assert differing - {"stage", "trainer.name"} == PAIRS[pair]
    # and distillation is switched on where the pair says so
    if pair == ("baseline_delta", "student"):
        assert first["loss.distill_weight"] == 0 and second["loss.distill_weight"] > 0
        assert second["teacher_logits"] == "cache"


def test_student_sized_models_share_the_data_stream(tmp_path: Path):
    configs = stage_overrides(tmp_path, PLANS["default"], seed=0)
    for name in ("student", "baseline", "baseline_masked", "baseline_delta"):
        config = _stage_config(*configs[name])
        assert config.cache.decode_once and config.cache.train_views == PLANS["default"].train_views, name
