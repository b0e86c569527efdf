import numpy as np
import pytest

from karmma.evaluation.statistics import at_chance, paired_bootstrap, seed_interval, verdict, wilson_interval


def test_seed_interval_is_the_t_interval():
    mean, half = seed_interval([10.0, 12.0, 14.0])
    assert mean == 12.0
    assert half == pytest.approx(4.303 * 2.0 / np.sqrt(3))  # t_{0.975, 2} * sd / sqrt(n)
    assert seed_interval([7.0]) == (7.0, 0.0)


def test_a_clear_difference_holds_and_its_opposite_does_not():
    rng = np.random.default_rng(0)
    a = [(rng.random(600) < 0.6).astype(float) for _ in range(3)]
    b = [(rng.random(600) < 0.4).astype(float) for _ in range(3)]
    better = paired_bootstrap([x - y for x, y in zip(a, b)])
    assert better.verdict == "holds" and 15 < better.effect < 25 and better.low > 0
    worse = paired_bootstrap([y - x for x, y in zip(a, b)])
    assert worse.verdict == "does not hold" and worse.high < 0
    assert better.clips == 1800 and better.seeds == 3


def test_noise_is_inconclusive_and_small_samples_are_wide():
    rng = np.random.default_rng(1)
    same = [(rng.random(100) < 0.5).astype(float) - (rng.random(100) < 0.5).astype(float) for _ in range(3)]
    effect = paired_bootstrap(same)
    assert effect.verdict == "inconclusive" and effect.low < 0 < effect.high
    # one point of accuracy on 120 clips decides nothing; on many clips and seeds it can
    few = paired_bootstrap([np.r_[np.ones(2), np.zeros(118)] - np.r_[np.ones(1), np.zeros(119)]])
    assert few.verdict == "inconclusive"


def test_seeds_widen_the_interval():
    """Seeds that disagree must not be hidden by many clips."""
    clips = 2000
    disagree = [np.full(clips, 0.3), np.full(clips, -0.3), np.full(clips, 0.3)]
    effect = paired_bootstrap(disagree)
    assert effect.verdict == "inconclusive"


def test_verdict():
    assert verdict(0.1, 3) == "holds" and verdict(-3, -0.1) == "does not hold" and verdict(-1, 1) == "inconclusive"


def test_wilson_interval_and_at_chance():
    low, high = wilson_interval(50, 100)
    assert (low, high) == pytest.approx((40.38, 59.62), abs=0.01)  # the textbook 95 % interval
    assert wilson_interval(0, 32)[0] == pytest.approx(0.0, abs=1e-9) and wilson_interval(0, 32)[1] > 5
    # the quick demo's 3.12 % (1 of 32 clips) with 30 actions: the interval reaches the uniform 3.33 %
    assert at_chance(3.12, 32, 100 / 30)
    assert not at_chance(40.0, 600, 100 / 30)
    # 20 % on 30 clips clears a 3.3 % uniform rate but not a split whose most frequent action is 12 %
    assert not at_chance(20.0, 30, 100 / 30) and at_chance(20.0, 30, 12.0)
