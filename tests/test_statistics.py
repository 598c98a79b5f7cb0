"""Statistics of step times: known inputs give known intervals, warm-ups and verdicts."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from test_training_run import launch, make_spec, results_dir, torch_extensions_dir
from zerosweep.plan.matrix import MatrixPoint
from zerosweep.report.run_summary.throughput import read_steps, summarise_throughput
from zerosweep.report.statistics import (
    SINGLE_RUN_TEST,
    StepStatistics,
    aggregate_repeats,
    compare_rows,
    row_throughput,
    summarise_step_times,
    verdict_from_runs,
    verdict_from_steps,
)
from zerosweep.steady import (
    Warmup,
    batch_count,
    detect_warmup,
    is_look,
    look_level,
    median_interval,
    steady_steps,
)

__all__ = ["results_dir", "torch_extensions_dir"]  # session fixtures shared with test_training_run's real runs


# --- the median's batch-median interval and the looks ---------------------------------------------


def test_median_interval_is_the_t_interval_over_batch_medians() -> None:
    # 100 steps = 10 consecutive batches of 10, batch i all at 1 + 0.01 (i - 5.5): batch medians -0.045 .. +0.045
    # around the median 1.0, S = sqrt(sum of squares / 9) = 0.030277; look 1 is at 97.5 %: t(9, 0.9875) = 2.6850
    batch_values = 1 + 0.01 * (np.arange(1, 11) - 5.5)
    interval = median_interval(np.repeat(batch_values, 10))
    half = 2.6850 * math.sqrt(0.01**2 * 82.5 / 9) / math.sqrt(10)
    assert interval.median == pytest.approx(1.0) and interval.batches == 10 and interval.level == 0.975
    assert interval.low == pytest.approx(1 - half, abs=1e-5) and interval.high == pytest.approx(1 + half, abs=1e-5)
    assert interval.relative_halfwidth == pytest.approx(half, abs=1e-5) and interval.confidence == 0.95
    # the same values in a random order: the batches no longer follow a trend, and the interval is tighter
    shuffled = median_interval(np.random.default_rng(0).permutation(np.repeat(batch_values, 10)))
    assert shuffled.relative_halfwidth < 0.6 * interval.relative_halfwidth  # type: ignore[operator]


def test_batches_and_looks() -> None:
    assert [batch_count(n) for n in (19, 20, 29, 30, 80, 89, 90, 99, 100, 150, 400)] == \
        [9, 10, 14, 10, 10, 11, 10, 11, 10, 12, 20]
    assert all(batch_count(n) >= 10 for n in range(20, 1000))  # monotone: every series of >= 20 steps has one
    assert [n for n in range(1, 1700) if is_look(n)] == [100, 200, 400, 800, 1600]
    # look k spends 5 % / 2**k; an interval between looks counts as the next look
    assert [look_level(n) for n in (90, 100, 101, 200, 201, 400)] == pytest.approx(
        [0.975, 0.975, 0.9875, 0.9875, 0.99375, 0.99375])
    assert sum(1 - look_level(100 * 2**k) for k in range(30)) <= 0.05


def test_too_few_values_give_no_interval_and_bad_input_is_refused() -> None:
    assert median_interval(np.arange(19.0)).low is None  # 9 batches of 2 steps: fewer than MIN_BATCHES
    assert median_interval(np.arange(89.0)).low is not None  # 11 batches of 8 (floor(sqrt 89) = 9 gave 9)
    assert median_interval(np.arange(19.0)).relative_halfwidth is None
    assert median_interval(np.arange(20.0)).low is not None  # 10 batches of 2: the smallest series with one
    with pytest.raises(ValueError, match="finite"):
        median_interval([1.0, float("nan")])


def test_median_interval_covers_the_true_median_at_its_level() -> None:
    rng = np.random.default_rng(7)
    true_median = math.log(2)  # of an exponential with rate 1: skewed, like step times
    trials = 600
    hits = sum(interval.low <= true_median <= interval.high  # type: ignore[operator]
               for interval in (median_interval(rng.exponential(size=100)) for _ in range(trials)))
    # nominal 97.5 % at the first look; 600 trials: sd 0.6 %
    assert 0.95 <= hits / trials <= 1.0


# --- warm-up detection ----------------------------------------------------------------------------


def steps_with_warmup(slow: int, steady: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([np.linspace(3.0, 1.8, slow), 1.0 + rng.normal(0, 0.02, steady)])


@pytest.mark.parametrize("slow", [1, 3, 6, 11])
def test_warmup_ends_where_the_step_times_settle(slow: int) -> None:
    found = detect_warmup(steps_with_warmup(slow, 40))
    assert found.settled and found.steps == slow


def test_warmup_is_never_shorter_than_the_configured_minimum() -> None:
    assert detect_warmup(steps_with_warmup(3, 40), minimum=8).steps == 8


def test_a_lone_slow_step_after_warmup_does_not_restart_it() -> None:
    series = steps_with_warmup(4, 40)
    series[25] = 5.0  # e.g. a garbage collection
    assert detect_warmup(series).steps == 4


def test_a_series_that_never_settles_is_flagged() -> None:
    drifting = np.linspace(1.0, 3.0, 40)  # steadily slower: no plateau
    found = detect_warmup(drifting, minimum=2)
    assert not found.settled and found.steps == 2
    assert not detect_warmup([1.0, 1.0], minimum=0).settled  # shorter than a window


def test_steady_steps_leave_out_evaluation_gaps_and_short_steps() -> None:
    steps = np.arange(1, 13)
    seconds = np.array([3.0, 1.0, 1.0, 1.0, 1.0, 1.0, 4.0, 1.0, 1.0, 1.0, 1.0, 0.5])
    samples = np.array([16] * 11 + [8])  # the epoch's last step is short
    gap = np.array([False] * 6 + [True] + [False] * 5)  # step 7 holds an evaluation
    chosen = steady_steps(steps, samples, gap, seconds, minimum_warmup=1)
    assert list(steps[chosen.indices]) == [2, 3, 4, 5, 6, 8, 9, 10, 11]
    assert chosen.warmup.steps == 1 and chosen.candidates == 10


# --- one run's summary ----------------------------------------------------------------------------


def test_summary_of_known_step_times() -> None:
    # 2 warm-up steps, then 10 batches of 10 steps, batch i at 0.5 s + (i - 5.5) ms: median 0.5 s, batch medians
    # -4.5 .. +4.5 ms around it, S = 1 ms * sqrt(82.5 / 9); look 1 (97.5 %): half-width t(9, 0.9875) S / sqrt(10)
    steady = 0.5 + np.repeat(np.arange(1, 11) - 5.5, 10) * 0.001
    half = 2.6850 * 0.001 * math.sqrt(82.5 / 9) / math.sqrt(10)
    seconds = np.concatenate([[2.0, 1.5], steady])
    steps = np.arange(1, 103)
    stats = summarise_step_times(steps, seconds, [16] * 102, [False] * 102, warmup_steps=1)
    assert stats.warmup_steps_detected == 2 and stats.steady_steps == 100 and stats.warmup_settled
    assert stats.step_seconds_median == pytest.approx(0.5)
    assert stats.step_seconds_ci_low == pytest.approx(0.5 - half, abs=1e-6)
    assert stats.step_seconds_ci_high == pytest.approx(0.5 + half, abs=1e-6)
    assert stats.samples_per_second == pytest.approx(16 / 0.5)
    assert stats.samples_per_second_ci_low == pytest.approx(16 / (0.5 + half), rel=1e-5)
    assert stats.samples_per_second_ci_high == pytest.approx(16 / (0.5 - half), rel=1e-5)
    assert stats.step_seconds_cv == pytest.approx(np.std(steady, ddof=1) / np.mean(steady))
    assert len(stats.step_throughputs) == 100
    assert type(stats).from_record(json.loads(json.dumps(stats.record()))) == stats  # through summary.json
    with pytest.raises(ValueError, match="lacks"):
        type(stats).from_record({"steady_steps": 3})


def test_summary_without_steady_steps_is_empty_not_an_error() -> None:
    stats = summarise_step_times([1], [2.0], [16], [False], warmup_steps=2)
    assert stats.steady_steps == 0 and stats.samples_per_second is None


# --- repeats and verdicts -------------------------------------------------------------------------


def test_repeats_aggregate_to_the_median_of_run_medians() -> None:
    aggregate = aggregate_repeats([44.0, 40.0, 42.0])
    assert (aggregate.median, aggregate.low, aggregate.high, aggregate.n) == (42.0, 40.0, 44.0, 3)
    assert aggregate.cv == pytest.approx(2.0 / 42.0)
    assert aggregate_repeats([42.0]).cv is None
    with pytest.raises(ValueError, match="finite"):
        aggregate_repeats([])


def test_a_row_shows_one_runs_interval_or_its_repeats_min_max() -> None:
    def run(step_s: float) -> StepStatistics:
        seconds = np.concatenate([[9.0], step_s + np.arange(-50, 50) * 0.0002])  # median step_s - 0.1 ms
        return summarise_step_times(np.arange(1, 102), seconds, [16] * 101, [False] * 101, 1)

    single = row_throughput([run(0.5)])
    assert single is not None and single.spread == "95 % CI" and single.n == 1
    assert single.low is not None and single.high is not None
    assert single.text() == f"{16 / 0.4999:.1f} [{single.low:.1f}, {single.high:.1f}]"
    repeated = row_throughput([run(0.5), run(0.4), run(0.8)])
    assert repeated is not None and repeated.spread == "min-max" and repeated.n == 3
    assert (repeated.median, repeated.low, repeated.high) == pytest.approx((16 / 0.4999, 16 / 0.7999, 16 / 0.3999))
    assert repeated.text(2) == f"{16 / 0.4999:.2f} [{16 / 0.7999:.2f}, {16 / 0.3999:.2f}]"  # the ends, not ± half
    assert row_throughput([summarise_step_times([1], [2.0], [16], [False], 2)]) is None


def test_run_level_verdict_on_known_ratios() -> None:
    reference = [100.0, 102.0, 98.0]
    faster = verdict_from_runs([110.0, 112.2, 107.8], reference)  # every run exactly 10 % faster
    assert faster.verdict == "faster" and faster.ratio == pytest.approx(1.10)
    assert faster.ratio_low < 1.10 < faster.ratio_high and faster.ratio_low > 1  # type: ignore[operator]
    slower = verdict_from_runs([90.0, 91.8, 88.2], reference)
    assert slower.verdict == "slower" and slower.ratio == pytest.approx(0.90)
    noise = verdict_from_runs([101.0, 97.0, 103.0], reference)  # inside the runs' own spread
    assert noise.verdict == "within noise" and noise.ratio_low < 1 < noise.ratio_high  # type: ignore[operator]
    assert "Welch" in noise.test and noise.n_row == 3
    assert verdict_from_runs([100.0], reference).verdict == "untested"
    memory = verdict_from_runs([2000.0, 2010.0], [1000.0, 1005.0], words=("more memory", "less memory"))
    assert memory.verdict == "more memory" and memory.text().startswith("more memory: +100.0 % [")


def test_step_level_verdict_for_single_runs() -> None:
    rng = np.random.default_rng(3)
    reference = 30.0 + rng.normal(0, 0.6, 40)
    faster = verdict_from_steps(33.0 + rng.normal(0, 0.6, 40), reference)
    assert faster.verdict == "faster" and faster.ratio_low < 1.10 < faster.ratio_high  # type: ignore[operator]
    same = verdict_from_steps(30.0 + rng.normal(0, 0.6, 40), reference)
    assert same.verdict == "within noise" and "Mann-Whitney" in same.test
    assert verdict_from_steps([1.0, 2.0], reference).verdict == "untested"


def test_single_run_verdicts_rarely_call_noise_a_difference() -> None:
    rng = np.random.default_rng(11)
    calls = [verdict_from_steps(rng.lognormal(0, 0.05, 25), rng.lognormal(0, 0.05, 25)).verdict
             for _ in range(200)]
    assert sum(call != "within noise" for call in calls) / len(calls) <= 0.09  # nominal 5 %


def test_compare_rows_uses_run_medians_when_both_rows_have_repeats() -> None:
    def run(rate: float) -> object:
        seconds = 16 / rate + np.arange(-5, 5) * 1e-4
        return summarise_step_times(np.arange(1, 12), np.concatenate([[9.0], seconds]), [16] * 11, [False] * 11, 1)

    repeated = compare_rows([run(r) for r in (44.0, 45.0, 43.0)], [run(r) for r in (40.0, 41.0, 39.0)])  # type: ignore[misc]
    assert "Welch" in repeated.test and repeated.verdict == "faster" and repeated.n_row == 3
    # One run a side: 10 % apart with tight within-run intervals, yet no verdict (run-to-run drift is unseen);
    # the ratio and its within-run interval are kept.
    single = compare_rows([run(44.0)], [run(40.0)])  # type: ignore[list-item]
    assert single.verdict == "untested" and single.test == SINGLE_RUN_TEST and single.p_value is None
    assert single.ratio == pytest.approx(1.1, rel=1e-3) and single.ratio_low < 1.1 < single.ratio_high  # type: ignore[operator]
    assert (single.n_row, single.n_reference) == (1, 1)
    assert compare_rows([run(44.0)], [run(r) for r in (40.0, 41.0, 39.0)]).verdict == "untested"  # type: ignore[list-item]
    assert single.ratio == pytest.approx(1.1, rel=1e-3)


# --- real CPU runs: the per-step record and stop-when-tight ---------------------------------------


def parse_run(run_dir: Path) -> dict:  # type: ignore[type-arg]
    """The per-run record, through the real parse-memory command."""
    out = run_dir / "summary.json"
    subprocess.run([sys.executable, "-m", "zerosweep", "parse-memory", "--run-dir", str(run_dir), "--out", str(out)],
                   check=True, env={**os.environ, "PYTHONPATH": str(REPO / "scripts")}, capture_output=True)
    return json.loads(out.read_text())


@pytest.mark.slow
def test_a_real_run_records_every_optimizer_step(results_dir: Path, torch_extensions_dir: Path) -> None:
    spec = make_spec(MatrixPoint(False, None, "none", False, 1, 1), torch_extensions_dir,
                     {"training": {"max_steps": 6}})
    spec["run_id"] = "base-g1n1-r2"  # a repeat's id, as the plan names it
    result, run_dir = launch(spec, results_dir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    frame = read_steps(run_dir / "steps.csv")
    # 8 samples, batch 2 x accumulation 2: 2 steps per epoch, each epoch evaluated after its last step
    assert list(frame["step"]) == [1, 2, 3, 4, 5, 6] and (frame["samples"] == 4).all()
    assert (frame["tokens"] == 4 * 64).all() and (frame["seconds"] > 0).all()
    assert list(frame["eval_gap"]) == [False, False, True, False, True, False]
    # unix seconds near 1.8e9 are doubles 2.4e-7 s apart: the difference of two carries up to ~5e-7 s of rounding
    assert np.allclose(frame["wall_end"] - frame["wall_start"], frame["seconds"], rtol=0, atol=1e-6)
    assert (frame["wall_start"].iloc[1:].to_numpy() >= frame["wall_end"].iloc[:-1].to_numpy() - 1e-3).all()
    assert metrics["stop_reason"] == "max_steps" and metrics["recorded_steps"] == 6
    assert metrics.get("tflops_per_gpu") is None  # derived figures belong to the report
    assert metrics["steady_steps"] == 3  # steps 2, 4, 6: after warmup_steps 1, no evaluation in them
    summary = parse_run(run_dir)
    throughput = summary["throughput"]
    assert throughput["stop_reason"] == "max_steps" and throughput["hit_cap"] is False
    assert throughput["recorded_steps"] == 6 and 1 <= throughput["steady_steps"] <= 3
    assert throughput["samples_per_second"] > 0


@pytest.mark.slow
def test_training_stops_once_the_interval_is_tight(results_dir: Path, torch_extensions_dir: Path) -> None:
    # two ranks: rank 0's decision must reach the other rank, or its next collective hangs
    measure = {"enabled": True, "target_halfwidth": 0.5, "min_steady_steps": 20, "max_steady_steps": 400,
               "max_seconds": 300}
    spec = make_spec(MatrixPoint(False, None, "none", False, 2, 1), torch_extensions_dir,
                     {"data": {"samples_per_gpu": 480}, "training": {"max_steps": 240, "measure": measure}})
    result, run_dir = launch(spec, results_dir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    frame = read_steps(run_dir / "steps.csv")
    assert metrics["stop_reason"] == "width", (metrics["stop_reason"], list(frame["seconds"]))
    assert metrics["optimizer_steps"] == len(frame) < 240
    throughput = summarise_throughput(run_dir, metrics, warmup_steps=1)
    # it stopped at a look (100 steady steps, or 200 where a re-detected warm-up stepped over 100), and the
    # report recomputes the interval the rule judged from steps.csv
    assert throughput is not None and throughput["steady_steps"] in (100, 200)
    halfwidth = (throughput["step_seconds_ci_high"] - throughput["step_seconds_ci_low"]) / 2
    assert halfwidth <= 0.5 * throughput["step_seconds_median"]


def test_drift_later_in_a_run_is_not_warm_up() -> None:
    """Seen on the H100: a run that settles after 3 slow steps, then drifts by 14 % in its last third. The old
    rule (every later window in the band) called 60 steps warm-up; warm-up is where the series first settles."""
    rng = np.random.default_rng(7)
    seconds = np.concatenate([[2.0, 1.2, 0.8], 0.40 + rng.normal(0, 0.004, 57), 0.456 + rng.normal(0, 0.004, 30)])
    warmup = detect_warmup(seconds, minimum=2)
    assert warmup.settled and warmup.steps == 3
    # a series that gets into the band only in its second half never settled
    late = np.concatenate([np.linspace(2.0, 0.5, 60), np.full(30, 0.4)])
    assert detect_warmup(late, minimum=0) == Warmup(steps=0, settled=False)
