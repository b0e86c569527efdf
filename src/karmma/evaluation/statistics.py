"""Statistics over seeds and clips: confidence intervals and paired tests for the paper's claims.

Two sources of noise matter when two models are compared: which clips are
scored (a few points of accuracy on 120 clips is noise) and how training went
(seed: data, initialisation, dropout draws). Both enter here:

* :func:`seed_interval`: mean and 95 % Student-t interval of a metric over
  seeds (e.g. the action top-1 of one model on one subset).
* :func:`paired_bootstrap`: the effect of model A over model B, as the mean
  over seeds of the per-clip difference of correctness on the *same* clips,
  with a two-stage bootstrap interval (seeds resampled, then clips within each
  drawn seed), so both noise sources widen it.
* :func:`verdict`: ``holds`` when the interval lies above zero, ``does not
  hold`` when it lies below, ``inconclusive`` otherwise.
* :func:`wilson_interval`: the 95 % interval of one accuracy on the clips it
  scored; :func:`at_chance`: whether that interval reaches what a model that
  learned nothing scores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom (t_{0.975, df})
T975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)
BOOTSTRAP_RESAMPLES = 2000
Z95 = 1.96  # two-sided 95 % quantile of the standard normal


def wilson_interval(accuracy: float, clips: int) -> tuple[float, float]:
    """``(low, high)`` in percent: the 95 % Wilson score interval of ``accuracy`` (%) measured on
    ``clips`` clips (a binomial proportion; never below 0 or above 100, not empty at 0 %)."""
    if clips <= 0:
        return math.nan, math.nan
    p, n = accuracy / 100, clips
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 / (1 + Z95**2 / n) * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n))
    return 100 * (centre - half), 100 * (centre + half)


def at_chance(accuracy: float, clips: int, chance: float) -> bool:
    """Whether ``accuracy`` (%) on ``clips`` clips is no evidence of learning: its 95 % Wilson
    interval reaches ``chance`` (%), the best that a model that learned nothing scores (the larger
    of the uniform guess and always answering the split's most frequent class)."""
    return wilson_interval(accuracy, clips)[0] <= chance


def seed_interval(values: Sequence[float]) -> tuple[float, float]:
    """``(mean, half-width of the 95 % t interval)`` over seeds; half-width 0 for one seed."""
    values = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if len(values) == 0:
        return math.nan, math.nan
    if len(values) == 1:
        return float(values[0]), 0.0
    df = len(values) - 1
    t = T975[df - 1] if df <= len(T975) else 1.96
    return float(values.mean()), float(t * values.std(ddof=1) / math.sqrt(len(values)))


@dataclass(frozen=True)
class Effect:
    """A paired difference in percentage points, with its 95 % bootstrap interval."""

    effect: float
    low: float
    high: float
    clips: int  # clips per seed, summed over seeds
    seeds: int

    @property
    def verdict(self) -> str:
        return verdict(self.low, self.high)


def verdict(low: float, high: float) -> str:
    if low > 0:
        return "holds"
    if high < 0:
        return "does not hold"
    return "inconclusive"


def paired_bootstrap(differences: Sequence[np.ndarray], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> Effect:
    """Mean paired difference over seeds and clips, with a two-stage bootstrap 95 % interval.

    Args:
        differences: one array per seed of per-clip differences (e.g. ``correct_A - correct_B``
            in {-1, 0, 1}, or differences of drops), for the clips both models were scored on.
        resamples: bootstrap draws.
    Returns:
        the effect in percentage points (100 x the mean difference).
    """
    per_seed = [np.asarray(d, dtype=np.float64) for d in differences if len(d)]
    if not per_seed:
        return Effect(math.nan, math.nan, math.nan, 0, 0)
    rng = np.random.default_rng(seed)
    effect = float(np.mean([d.mean() for d in per_seed]))
    positions = len(per_seed)
    draws = np.zeros(resamples)
    for _ in range(positions):  # stage 1: a seed drawn (with replacement) for each position...
        drawn = rng.integers(0, positions, resamples) if positions > 1 else np.zeros(resamples, dtype=int)
        for s, d in enumerate(per_seed):  # ...stage 2: its clips resampled, independently per draw
            rows = drawn == s
            if rows.any():
                draws[rows] += d[rng.integers(0, len(d), (int(rows.sum()), len(d)))].mean(axis=1)
    draws /= positions
    low, high = np.percentile(draws, [2.5, 97.5])
    return Effect(100 * effect, 100 * float(low), 100 * float(high), sum(len(d) for d in per_seed), len(per_seed))
