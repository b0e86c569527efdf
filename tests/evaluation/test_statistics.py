import numpy as np
import pytest

from karmma.evaluation.statistics import paired_bootstrap, seed_interval, verdict


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
