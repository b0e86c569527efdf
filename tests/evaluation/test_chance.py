import pytest

from karmma.evaluation.chance import chance_levels, chance_rate, row_clips
from one_seed_results import one_seed_results, with_per_class


def test_chance_levels_uniform_and_most_frequent_class():
    levels = chance_levels(with_per_class(one_seed_results(1.0)))
    assert levels["verb_top1"] == (20.0, 60.0)
    assert levels["noun_top1"] == pytest.approx((100 / 6, 70.0))
    assert levels["action_top1"] == pytest.approx((100 / 30, 70.0))
    assert levels["verb_top5"] == (100.0, 100.0)


def test_the_chance_rate_is_the_larger_level_and_unknown_without_heads():
    assert chance_rate(with_per_class(one_seed_results(1.0))) == pytest.approx(70.0)
    assert chance_rate(one_seed_results(1.0)) == pytest.approx(100 / 30)  # no class counts: the uniform guess
    headless = one_seed_results(1.0)
    for model in headless["models"].values():
        del model["heads"]
    assert chance_rate(headless) is None


def test_a_row_counts_its_own_clips_else_the_models():
    assert row_clips({"samples": 7}, {"clips": 10}) == 7
    assert row_clips({}, {"clips": 10}) == 10
