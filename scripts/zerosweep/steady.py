"""The steady state of a series of optimizer-step times: where warm-up ends, and the median with its interval.

A base module because two layers need the same rule: the training callback (run/steps.py) decides online
when the figure is tight enough to stop, and the report (report/statistics.py) computes the published figure.
One rule for both, so a run stops exactly when the report would call its interval narrow enough.

Warm-up rule (documented in README of benchmarks/h100 and report/statistics.py):
    reference M = median of the series after the minimum warm-up (warm-up is short: it barely moves M);
    rolling median m_i = median of steps i .. i+window-1;
    warm-up ends at the first step i >= minimum whose window median m_i lies within ±tolerance of M and
    which itself lies within it (a window's median would hide up to window//2 slow steps at its start), in the
    first half of the series, and the window medians stay in the band for half of the steps left after i (a
    trend only passes through it). Warm-up is where the series settles first: drift later in a run (seen on
    the H100: ±14 % between thirds of a run) is part of the steady figure, visible in its spread, not warm-up.
    If no such step exists the series never settled: warm-up = minimum and `settled` is False.
Median interval: the distribution-free order-statistic interval of the median (binomial, via
`scipy.stats.quantile_test(...).confidence_interval`), which needs at least 6 values at 95 %.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
WARMUP_WINDOW = 5
WARMUP_TOLERANCE = 0.10  # a window's median within ±10 % of the reference median counts as settled


@dataclass(frozen=True)
class Warmup:
    steps: int  # leading steps that are warm-up (index of the first steady step)
    settled: bool  # False: the series never settled within the tolerance; `steps` is the minimum


@dataclass(frozen=True)
class MedianInterval:
    median: float
    low: float | None  # None: too few values for an interval at this confidence
    high: float | None
    n: int
    confidence: float

    @property
    def relative_halfwidth(self) -> float | None:
        """Half the interval's width as a fraction of the median (0.02 = ±2 %)."""
        if self.low is None or self.high is None or self.median <= 0:
            return None
        return (self.high - self.low) / 2 / self.median


def detect_warmup(seconds: Sequence[float] | np.ndarray, minimum: int = 0, window: int = WARMUP_WINDOW,
                  tolerance: float = WARMUP_TOLERANCE) -> Warmup:
    """Number of leading step times that are warm-up, by the rule in the module docstring."""
    if minimum < 0 or window < 1 or tolerance <= 0:
        raise ValueError(f"detect_warmup: minimum {minimum} >= 0, window {window} >= 1, tolerance {tolerance} > 0")
    values = np.asarray(seconds, dtype=float)
    if values.ndim != 1 or not np.all(np.isfinite(values)):
        raise ValueError("detect_warmup: step times must be a 1-D series of finite numbers")
    n = len(values)
    if n - minimum < window:
        return Warmup(steps=min(minimum, n), settled=False)
    reference = float(np.median(values[minimum:]))
    windows = np.lib.stride_tricks.sliding_window_view(values, window)
    medians = np.median(windows, axis=1)  # medians[i] covers steps i .. i+window-1
    band = tolerance * reference
    # the first i >= minimum whose window median and own step time are in the band, within the first half
    entered = np.flatnonzero((np.abs(medians - reference) <= band) & (np.abs(values[:len(medians)] - reference) <= band))
    in_band = np.abs(medians - reference) <= band
    for start in entered[(entered >= minimum) & (entered <= max(minimum, n // 2))]:
        # settled, not passing through: the band holds for half of what is left (a trend crosses it quickly)
        if np.all(in_band[start:start + max(window, (n - start) // 2)]):
            return Warmup(steps=int(start), settled=True)
    return Warmup(steps=minimum, settled=False)


def median_interval(values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> MedianInterval:
    """Median and its distribution-free order-statistic confidence interval (scipy.stats.quantile_test)."""
    from scipy import stats

    data = np.asarray(values, dtype=float)
    if data.ndim != 1 or len(data) == 0 or not np.all(np.isfinite(data)):
        raise ValueError("median_interval: needs a non-empty 1-D series of finite numbers")
    median = float(np.median(data))
    if len(data) < 2:
        return MedianInterval(median, None, None, len(data), confidence)
    interval = stats.quantile_test(data, q=median, p=0.5).confidence_interval(confidence)
    low, high = float(interval.low), float(interval.high)
    if not (np.isfinite(low) and np.isfinite(high)):
        return MedianInterval(median, None, None, len(data), confidence)
    return MedianInterval(median, low, high, len(data), confidence)


@dataclass(frozen=True)
class SteadySteps:
    indices: np.ndarray  # positions (in the step record) of the steady steps
    warmup: Warmup  # warm-up counted among the candidate steps (full steps without an evaluation/save)
    candidates: int


def steady_steps(steps: Sequence[int] | np.ndarray, samples: Sequence[int] | np.ndarray,
                 eval_gap: Sequence[bool] | np.ndarray, seconds: Sequence[float] | np.ndarray,
                 minimum_warmup: int) -> SteadySteps:
    """Which recorded steps are steady: full steps (the most samples) without an evaluation or save in their
    interval, after the detected warm-up, which is at least the steps numbered <= minimum_warmup."""
    steps_a, samples_a = np.asarray(steps), np.asarray(samples)
    gap_a, seconds_a = np.asarray(eval_gap, dtype=bool), np.asarray(seconds, dtype=float)
    if not len(steps_a) == len(samples_a) == len(gap_a) == len(seconds_a):
        raise ValueError("steady_steps: steps, samples, eval_gap and seconds differ in length")
    if len(steps_a) == 0:
        return SteadySteps(np.array([], dtype=int), Warmup(0, False), 0)
    candidates = np.flatnonzero(~gap_a & (samples_a == samples_a.max()))
    minimum = int(np.count_nonzero(steps_a[candidates] <= minimum_warmup))
    warmup = detect_warmup(seconds_a[candidates], minimum=minimum)
    return SteadySteps(candidates[warmup.steps:], warmup, len(candidates))
