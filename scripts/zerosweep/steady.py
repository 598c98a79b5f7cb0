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
Median interval (`median_interval`; the stop rule judges it and the report records it, so they are the same):
    the median of the n steady steps ± t(b-1) * S / sqrt(b), where the n steps are cut, in order, into
    b = n // m batches of m consecutive steps (`np.array_split`; m = floor(sqrt(n)) from 100 steps on, n // 10
    below, at least 2) and S is the spread of the
    b batch medians around the overall median ("sectioning", Asmussen & Glynn, Stochastic Simulation, III.5).
    Why batches: step times are autocorrelated (slow drift, ±14 % between thirds of an H100 run); the
    order-statistic interval used before treats n correlated steps as n independent ones and is too narrow
    (on AR(1) steps with phi 0.8 it covered the median about half the time). A batch median of many steps is
    nearly independent of the next, and both the batch size and the number of batches grow with n, so S stays
    a consistent estimate (Glynn & Whitt 1992: a stop rule needs that). A trend inside the window shows as
    spread of the batch medians, so a window that drifts by more than the target is not called tight.
    At least MIN_BATCHES batches (so n >= MIN_STEPS = 20): with fewer, S is too unsure of itself to trust. Below
    100 steps the batches are short (2-9 steps): valid where the steps' correlation dies out within n/10 steps,
    wider than the old interval, and honest about drift; the stop rule's first look is at 100 in any case.
Looks: the stop rule judges the interval only at FIRST_LOOK, 2 x FIRST_LOOK, 4 x FIRST_LOOK, ... steady steps
    (a look after every step would stop at whichever look happened to be narrow: optional stopping). Look k
    is at level 1 - alpha / 2**k (alpha = 1 - CONFIDENCE; alpha-spending: the levels' misses sum to alpha over
    any number of looks, a Bonferroni bound that needs no planned count), so the interval at the stop covers
    the median with at least CONFIDENCE however many looks came before. An interval between looks (a run that
    ended at a cap or with training) counts as the next look. The level depends on n only, so the report,
    reading steps.csv, recomputes exactly the interval the rule judged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95  # of the median interval at the stop, over all the looks before it
MIN_BATCHES = 10  # batch medians below which there is no interval (S would have under 9 degrees of freedom)
MIN_BATCH_SIZE = 2  # steps per batch at least: a median of one step is the step
MIN_STEPS = MIN_BATCHES * MIN_BATCH_SIZE  # steady steps below which a run has no interval
FIRST_LOOK = 100  # steady steps at the stop rule's first look (10 batches of 10); later looks double it
WARMUP_WINDOW = 5
WARMUP_TOLERANCE = 0.10  # a window's median within ±10 % of the reference median counts as settled


@dataclass(frozen=True)
class Warmup:
    steps: int  # leading steps that are warm-up (index of the first steady step)
    settled: bool  # False: the series never settled within the tolerance; `steps` is the minimum


@dataclass(frozen=True)
class MedianInterval:
    median: float
    low: float | None  # None: fewer than MIN_BATCHES batches (n < MIN_STEPS)
    high: float | None
    n: int
    confidence: float  # over the looks (CONFIDENCE); `level` is this interval's own
    level: float  # look_level(n): the per-look level this interval is computed at
    batches: int  # batch medians behind it; 0 without an interval

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


def is_look(steady: int) -> bool:
    """Whether the stop rule judges the interval at this many steady steps: FIRST_LOOK x 2**k."""
    ratio, rest = divmod(steady, FIRST_LOOK)
    return steady >= FIRST_LOOK and rest == 0 and ratio & (ratio - 1) == 0


def look_index(steady: int) -> int:
    """Which look (1-based) an interval over this many steps counts as: its own, or the next one after it."""
    index, point = 1, FIRST_LOOK
    while point < steady:
        index, point = index + 1, point * 2
    return index


def look_level(steady: int, confidence: float = CONFIDENCE) -> float:
    """The level of the interval at a look: look k spends (1 - confidence) / 2**k of the misses."""
    return 1 - (1 - confidence) / 2 ** look_index(steady)


def batch_size(steady: int) -> int:
    """Steps per batch: floor(sqrt(n)) from 100 steps on (batch size and count both grow with n); below, n // 10,
    so that every series of MIN_STEPS steps or more has MIN_BATCHES batches; never under MIN_BATCH_SIZE."""
    return max(MIN_BATCH_SIZE, min(math.isqrt(steady), steady // MIN_BATCHES))


def batch_count(steady: int) -> int:
    """Batches of batch_size(n) consecutive steps in n steps."""
    return steady // batch_size(steady)


def median_interval(values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> MedianInterval:
    """Median of a series of step times with the batch-median t-interval at its look's level (module docstring)."""
    from scipy import stats

    data = np.asarray(values, dtype=float)
    if data.ndim != 1 or len(data) == 0 or not np.all(np.isfinite(data)):
        raise ValueError("median_interval: needs a non-empty 1-D series of finite numbers")
    n, median = len(data), float(np.median(data))
    level, batches = look_level(n, confidence), batch_count(n)
    if batches < MIN_BATCHES:
        return MedianInterval(median, None, None, n, confidence, level, 0)
    batch_medians = np.array([np.median(batch) for batch in np.array_split(data, batches)])
    spread = math.sqrt(float(np.sum((batch_medians - median) ** 2)) / (batches - 1))
    half = float(stats.t.ppf(0.5 + level / 2, batches - 1)) * spread / math.sqrt(batches)
    return MedianInterval(median, median - half, median + half, n, confidence, level, batches)


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
