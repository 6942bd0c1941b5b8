"""Summaries and the paired significance test of a study's scores.

An arm and the baseline trained with the same seed saw the same labelled sample and the same
initial randomness, so their scores are paired: the gain of an arm is tested with the paired
t-test over seeds (Student 1908; e.g. Dror et al. 2018, "The Hitchhiker's Guide to Testing
Statistical Significance in Natural Language Processing", ACL), H0: mean gain = 0, two-sided.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Summary:
    """Mean, sample standard deviation (n - 1), min and max of one cell's scores over seeds."""

    n: int
    mean: float
    std: float
    min: float
    max: float


def summarize(values: list[float]) -> Summary:
    """Summary of ``values`` (std is 0 for a single value; NaN values are left out)."""
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        nan = float("nan")
        return Summary(0, nan, nan, nan, nan)
    n = len(vals)
    mean = sum(vals) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else 0.0
    return Summary(n, mean, std, min(vals), max(vals))


@dataclass
class PairedTest:
    """An arm's gain over the baseline at one budget, over the seeds both finished.

    Attributes:
        n: number of paired seeds.
        mean_gain: mean of (arm - baseline).
        std_gain: sample standard deviation of the gains.
        t: the paired t statistic (None when n < 2 or every gain is equal).
        p: the two-sided p-value (None likewise).
        wins: seeds where the arm scored higher than the baseline.
        note: why ``t``/``p`` are missing, when they are.
    """

    n: int
    mean_gain: float
    std_gain: float
    t: float | None
    p: float | None
    wins: int
    note: str = ""


def paired_test(arm: dict[int, float], baseline: dict[int, float]) -> PairedTest:
    """Paired t-test of ``arm`` against ``baseline`` over the seeds both have.

    Args:
        arm: seed -> score of the arm.
        baseline: seed -> score of the baseline.
    """
    from scipy import stats

    seeds = sorted(set(arm) & set(baseline))
    gains = [arm[s] - baseline[s] for s in seeds]
    n = len(gains)
    if n == 0:
        nan = float("nan")
        return PairedTest(0, nan, nan, None, None, 0, "no seed finished in both arms")
    s = summarize(gains)
    wins = sum(g > 0 for g in gains)
    if n < 2:
        return PairedTest(n, s.mean, s.std, None, None, wins, "n/a: fewer than 2 seeds")
    if s.std <= 1e-12 * max(1.0, abs(s.mean)):  # equal up to float noise (0.8-0.7 vs 0.7-0.6)
        return PairedTest(n, s.mean, s.std, None, None, wins, "n/a: every seed gives the same gain")
    result = stats.ttest_rel([arm[k] for k in seeds], [baseline[k] for k in seeds])
    return PairedTest(n, s.mean, s.std, float(result.statistic), float(result.pvalue), wins)
