"""Throughput with its spread, repeats aggregated, and a verdict on each difference (scipy.stats throughout).

Rules (the tables and summary.md state them as given here):

- Steady steps (zerosweep.steady.steady_steps): full optimizer steps without an evaluation or save in their
  interval, after warm-up. Warm-up is detected from the step times settling: with M the median of the last
  half of the candidate steps, warm-up ends at the first step that is itself within ±10 % of M and after
  which every 5-step rolling median stays within ±10 % of M; never fewer than `training.warmup_steps`. A series that never settles keeps the minimum
  and is flagged (`warmup_settled: false`).
- A run's figure: the median step time with its interval (zerosweep.steady.median_interval, the one the stop
  rule judges: a t-interval over the medians of sqrt(n) batches of sqrt(n) consecutive steps, which counts
  autocorrelation and drift, at the level of its look so that it holds at 95 % however often the rule looked;
  needs >= 20 steady steps), and the coefficient of variation of the steady step times (`scipy.stats.variation`,
  ddof=1). Throughput = samples per step / step time: the median throughput is samples / median step time and
  its interval is samples / the step-time interval's ends (a monotone map keeps the coverage; no upper end when
  the step-time interval reaches 0).
- Repeats: a row's figure is the median of its runs' medians, with min-max and N.
- Verdict of a row against the study's reference row (two-sided, alpha 0.05), ratio = row / reference:
  * both rows with >= 2 runs: Welch's t-test on the logarithms of the run medians (`scipy.stats.ttest_ind`,
    equal_var=False); the ratio's interval is exp of the t interval of the mean log difference. This counts
    run-to-run drift, which single runs cannot see.
  * otherwise (a single run on either side): no verdict ("untested"). The ratio of medians is still given,
    with a two-sample percentile bootstrap interval over the steady steps' throughputs (`scipy.stats.bootstrap`,
    2000 resamples, fixed seed), labelled as within-run. Steps of one run only know the within-run noise, and
    on the H100 runs of one configuration moved by up to 45 % from run to run, far outside their own intervals
    (benchmarks/h100/README.md): a per-step test between two single runs called ZeRO-1 0.64x ZeRO-0 where
    three repeats each give 0.88x [0.79, 0.97]. `verdict_from_steps` computes that ratio and interval; its
    Mann-Whitney U p-value is not used for a verdict between rows.
  A row is "faster"/"slower" (or "more"/"less" for memory) only when p < alpha AND the ratio's interval
  excludes 1; otherwise "within noise". Too little data gives "untested".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from ..steady import CONFIDENCE, Warmup, detect_warmup, median_interval, steady_steps
from .interval_text import change_interval_text, interval_text

ALPHA = 0.05
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
VERDICTS = ("faster", "slower", "within noise", "untested")

__all__ = [
    "ALPHA",
    "CONFIDENCE",
    "RepeatAggregate",
    "StepStatistics",
    "Verdict",
    "Warmup",
    "aggregate_repeats",
    "compare_rows",
    "detect_warmup",
    "summarise_step_times",
    "verdict_from_runs",
    "verdict_from_steps",
]


# What a table says where a row or its reference has one run (the module's rules say why).
SINGLE_RUN_TEST = ("one run on a side: no verdict without >= 2 runs per row (run-to-run drift); ratio of medians "
                   "with a within-run bootstrap interval of the per-step throughputs")
# Values with no spread on either side (e.g. the same peak every run): nothing varies, so nothing to test.
NO_SPREAD_TEST = "no spread: deterministic values, no test"
PER_STEP_RATIO = "ratio of medians of per-step throughputs"


def geometric_mean_ratio(values: str) -> str:
    """What the Welch verdict's ratio is: exp(mean log row - mean log reference)."""
    return f"ratio of geometric means of {values}"


def median_ratio(values: str) -> str:
    return f"ratio of medians of {values}"


@dataclass(frozen=True)
class StepStatistics:
    """One run's steady state from its per-step record."""

    steady_steps: int
    warmup_steps_detected: int  # recorded steps before the first steady one (candidates only)
    warmup_settled: bool
    samples_per_step: int | None
    step_seconds_median: float | None
    step_seconds_ci_low: float | None
    step_seconds_ci_high: float | None
    step_seconds_cv: float | None
    samples_per_second: float | None  # samples_per_step / median step time
    samples_per_second_ci_low: float | None
    samples_per_second_ci_high: float | None
    confidence: float
    step_throughputs: tuple[float, ...]  # samples / seconds of each steady step (for verdicts)

    def record(self) -> dict[str, Any]:
        """As stored in the per-run record (summary.json's `throughput` section); from_record reads it back."""
        values = asdict(self)
        values["step_throughputs"] = list(self.step_throughputs)
        return values

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> StepStatistics:
        """From a per-run record's `throughput` section (the tables' input: no steps.csv needed)."""
        missing = [name for name in cls.__dataclass_fields__ if name not in record]
        if missing:
            raise ValueError(f"throughput record lacks {missing}")
        values = {name: record[name] for name in cls.__dataclass_fields__}
        values["step_throughputs"] = tuple(float(x) for x in record["step_throughputs"] or ())
        return cls(**values)


def summarise_step_times(steps: Sequence[int], seconds: Sequence[float], samples: Sequence[int],
                         eval_gap: Sequence[bool], warmup_steps: int,
                         confidence: float = CONFIDENCE) -> StepStatistics:
    """The steady-state statistics of one run (see the module docstring for each rule)."""
    from scipy import stats

    seconds_a = np.asarray(seconds, dtype=float)
    samples_a = np.asarray(samples, dtype=int)
    chosen = steady_steps(steps, samples_a, eval_gap, seconds_a, warmup_steps)
    steady = seconds_a[chosen.indices]
    empty = StepStatistics(len(steady), chosen.warmup.steps, chosen.warmup.settled, None, None, None, None, None,
                           None, None, None, confidence, ())
    if len(steady) == 0:
        return empty
    per_step = int(samples_a[chosen.indices][0])
    interval = median_interval(steady, confidence)
    cv = float(stats.variation(steady, ddof=1)) if len(steady) >= 2 else None
    low = per_step / interval.high if interval.high is not None and interval.high > 0 else None
    high = per_step / interval.low if interval.low is not None and interval.low > 0 else None
    return StepStatistics(
        steady_steps=len(steady), warmup_steps_detected=chosen.warmup.steps, warmup_settled=chosen.warmup.settled,
        samples_per_step=per_step, step_seconds_median=interval.median, step_seconds_ci_low=interval.low,
        step_seconds_ci_high=interval.high, step_seconds_cv=cv, samples_per_second=per_step / interval.median,
        samples_per_second_ci_low=low, samples_per_second_ci_high=high, confidence=confidence,
        step_throughputs=tuple(float(x) for x in per_step / steady),
    )


@dataclass(frozen=True)
class RepeatAggregate:
    """A table row's figure from its repeats."""

    median: float
    low: float  # min over the runs
    high: float  # max over the runs
    n: int
    cv: float | None  # coefficient of variation of the run medians (ddof=1); None for one run


def aggregate_repeats(run_medians: Sequence[float]) -> RepeatAggregate:
    """Median of the run medians, min-max and N (None values, e.g. OOM runs, must be left out by the caller)."""
    from scipy import stats

    values = np.asarray(run_medians, dtype=float)
    if len(values) == 0 or not np.all(np.isfinite(values)):
        raise ValueError(f"aggregate_repeats: needs finite run medians, got {list(run_medians)}")
    cv = float(stats.variation(values, ddof=1)) if len(values) >= 2 else None
    return RepeatAggregate(float(np.median(values)), float(values.min()), float(values.max()), len(values), cv)


@dataclass(frozen=True)
class RowThroughput:
    """A table row's steady samples/s: one run's median with its 95 % interval, or, with repeats, the median
    of the run medians with min-max (`spread` says which)."""

    median: float
    low: float | None
    high: float | None
    n: int
    spread: str  # "95 % CI" | "min-max"
    cv: float | None  # of the run medians (repeats only)

    def text(self, digits: int = 1) -> str:
        """'54.1 [53.3, 58.4]': the interval's own ends (a min-max is rarely symmetric about the median)."""
        return interval_text(self.median, self.low, self.high, digits)


def row_throughput(runs: Sequence[StepStatistics]) -> RowThroughput | None:
    """The row figure from its runs' statistics (runs without steady steps are left out); None when none has."""
    measured = [run for run in runs if run.samples_per_second is not None]
    if not measured:
        return None
    if len(measured) == 1:
        only = measured[0]
        return RowThroughput(float(only.samples_per_second or 0), only.samples_per_second_ci_low,
                             only.samples_per_second_ci_high, 1, "95 % CI", None)
    aggregate = aggregate_repeats([float(run.samples_per_second or 0) for run in measured])
    return RowThroughput(aggregate.median, aggregate.low, aggregate.high, aggregate.n, "min-max", aggregate.cv)


@dataclass(frozen=True)
class Verdict:
    """A row against the reference row: ratio = row / reference, with its interval."""

    verdict: str  # one of VERDICTS, with the caller's words for faster/slower
    ratio: float | None
    ratio_low: float | None
    ratio_high: float | None
    p_value: float | None
    test: str
    n_row: int
    n_reference: int
    # What `ratio` is, e.g. "ratio of geometric means of run medians": beside row figures that are medians, a
    # Welch ratio (geometric means) differs from the ratio of the figures shown, so a table names it.
    estimator: str

    @property
    def difference(self) -> float | None:
        """Relative difference (ratio - 1): +0.05 = 5 % higher than the reference."""
        return None if self.ratio is None else self.ratio - 1

    def text(self) -> str:
        """E.g. 'faster: +12.3 % [+8.0 %, +16.9 %] (ratio of geometric means of run medians; Welch t on log run
        medians, p = 0.003)': the change, its 95 % interval's ends, what the ratio is and how it was tested."""
        if self.ratio is None:
            return f"{self.verdict} ({self.test})"
        p = "" if self.p_value is None else f", p = {self.p_value:.3g}"
        change = change_interval_text(self.ratio, self.ratio_low, self.ratio_high)
        return f"{self.verdict}: {change} ({self.estimator}; {self.test}{p})"


def _decide(ratio: float, low: float | None, high: float | None, p: float | None,
            words: tuple[str, str]) -> str:
    significant = p is not None and p < ALPHA and low is not None and high is not None and (low > 1 or high < 1)
    if not significant:
        return "within noise"
    return words[0] if ratio > 1 else words[1]


def _no_spread(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.ptp(a) == 0 and np.ptp(b) == 0)


def verdict_from_runs(row: Sequence[float], reference: Sequence[float],
                      words: tuple[str, str] = ("faster", "slower"), values: str = "run medians") -> Verdict:
    """Welch's t-test on log run-level values (>= 2 runs each side): throughput medians or peak memory (`values`
    names them). Its ratio is the ratio of geometric means (named in `estimator`); with too few runs, or no spread
    on either side (nothing to test), no verdict and the ratio of medians, as the rows show them."""
    from scipy import stats

    a, b = np.asarray(row, dtype=float), np.asarray(reference, dtype=float)
    test = f"Welch t on log {values}"
    as_shown = median_ratio(values)
    if len(a) < 2 or len(b) < 2 or np.any(a <= 0) or np.any(b <= 0):
        ratio = float(np.median(a) / np.median(b)) if len(a) and len(b) and np.median(b) > 0 else None
        return Verdict("untested", ratio, None, None, None, f"{test}: needs >= 2 positive runs each", len(a), len(b),
                       as_shown)
    if _no_spread(a, b):  # the t statistic is undefined and a p-value would only restate the values
        return Verdict("untested", float(a[0] / b[0]), None, None, None, NO_SPREAD_TEST, len(a), len(b), as_shown)
    la, lb = np.log(a), np.log(b)
    result = stats.ttest_ind(la, lb, equal_var=False)
    interval = result.confidence_interval(CONFIDENCE)
    ratio, low, high = float(np.exp(la.mean() - lb.mean())), float(np.exp(interval.low)), float(np.exp(interval.high))
    p = float(result.pvalue)
    return Verdict(_decide(ratio, low, high, p, words), ratio, low, high, p, test, len(a), len(b),
                   geometric_mean_ratio(values))


def verdict_from_steps(row: Sequence[float], reference: Sequence[float],
                       words: tuple[str, str] = ("faster", "slower")) -> Verdict:
    """Mann-Whitney U on per-step throughputs, ratio of medians with a bootstrap interval (single runs)."""
    from scipy import stats

    a, b = np.asarray(row, dtype=float), np.asarray(reference, dtype=float)
    test = "Mann-Whitney U on per-step throughput"
    if len(a) < 3 or len(b) < 3:
        return Verdict("untested", None, None, None, None, f"{test}: needs >= 3 steady steps each", len(a), len(b),
                       PER_STEP_RATIO)
    ratio = float(np.median(a) / np.median(b))
    if _no_spread(a, b):  # identical steps: a bootstrap interval of width 0 and a p-value would claim a test
        return Verdict("untested", ratio, None, None, None, NO_SPREAD_TEST, len(a), len(b), PER_STEP_RATIO)
    p = float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)

    def ratio_of_medians(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.median(x, axis=axis) / np.median(y, axis=axis)

    boot = stats.bootstrap((a, b), ratio_of_medians, n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=CONFIDENCE,
                           method="percentile", vectorized=True, rng=np.random.default_rng(BOOTSTRAP_SEED))
    low, high = float(boot.confidence_interval.low), float(boot.confidence_interval.high)
    return Verdict(_decide(ratio, low, high, p, words), ratio, low, high, p, test, len(a), len(b), PER_STEP_RATIO)


def compare_rows(row_runs: Sequence[StepStatistics], reference_runs: Sequence[StepStatistics],
                 words: tuple[str, str] = ("faster", "slower")) -> Verdict:
    """The throughput verdict of a table row against the reference row, from their runs' StepStatistics:
    run medians (Welch) when both have >= 2 runs; else "untested", with the ratio of medians and its
    within-run interval from the pooled per-step throughputs (see the module's rules for why)."""
    row = [run for run in row_runs if run.samples_per_second is not None]
    reference = [run for run in reference_runs if run.samples_per_second is not None]
    if len(row) >= 2 and len(reference) >= 2:
        return verdict_from_runs([float(run.samples_per_second or 0) for run in row],
                                 [float(run.samples_per_second or 0) for run in reference], words)
    steps = verdict_from_steps([x for run in row for x in run.step_throughputs],
                               [x for run in reference for x in run.step_throughputs], words)
    return replace(steps, verdict="untested", p_value=None, n_row=len(row), n_reference=len(reference),
                   test=SINGLE_RUN_TEST)
