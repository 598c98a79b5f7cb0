"""What a study table says about its statistics (issue 21): intervals as intervals, the verdict ratio's estimator
named, no test of values that do not vary, never-settled warm-ups marked, and the run-level values behind a row."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from test_aggregate import make_summary, point, repeat, study
from zerosweep import records as f
from zerosweep.report.statistics import (
    NO_SPREAD_TEST,
    RowThroughput,
    summarise_step_times,
    verdict_from_runs,
    verdict_from_steps,
)
from zerosweep.report.study import tables as aggregate
from zerosweep.report.study.table_rows import warmup_never_settled_note

# --- intervals as intervals ----------------------------------------------------------------------------------


def test_a_row_interval_is_written_with_its_ends_not_a_half_width() -> None:
    # issue 21: a min-max of 53.26-58.39 around 54.09 printed as '54.1 ± 2.6', which reads as 51.5-56.7
    figure = RowThroughput(54.09, 53.26, 58.39, 3, "min-max", None)
    assert figure.text() == "54.1 [53.3, 58.4]"
    assert "±" not in figure.text(2) and figure.text(2) == "54.09 [53.26, 58.39]"
    assert RowThroughput(54.09, None, None, 1, "95 % CI", None).text() == "54.1"


# --- the ratio's estimator -----------------------------------------------------------------------------------

# Run medians whose median ratio and geometric-mean ratio differ (issue 21: 0.910 printed beside 50.05 / 54.09)
SLOW = (50.05, 41.0, 52.0)
FAST = (54.09, 53.2, 58.4)


def test_the_welch_ratio_is_named_as_a_ratio_of_geometric_means() -> None:
    verdict = verdict_from_runs(SLOW, FAST)
    geometric = float(np.exp(np.mean(np.log(SLOW)) - np.mean(np.log(FAST))))
    assert verdict.ratio == pytest.approx(geometric)
    assert abs(verdict.ratio - np.median(SLOW) / np.median(FAST)) > 0.01  # not the ratio of the figures shown
    assert verdict.estimator == "ratio of geometric means of run medians"
    assert verdict_from_runs([1.0], FAST).estimator == "ratio of medians of run medians"  # untested: as shown
    peaks = verdict_from_runs([2000.0, 2010.0], [1000.0, 1005.0], ("more memory", "less memory"), "run peaks")
    assert peaks.estimator == "ratio of geometric means of run peaks" and peaks.test == "Welch t on log run peaks"
    assert peaks.text().startswith("more memory: +100.0 % [") and "ratio of geometric means of run peaks" in peaks.text()


def rate_runs(p: dict[str, Any], rates: tuple[float, ...]) -> list[dict[str, Any]]:
    return [repeat(p, k, rate, 20000.0 + k) for k, rate in enumerate(rates, 1)]


def test_a_table_names_the_estimator_where_its_ratio_is_not_the_ratio_of_its_figures() -> None:
    runs = rate_runs(point(0), FAST) + rate_runs(point(1), SLOW)
    table = aggregate.build_table(study("zero", "comparison", runs), runs)
    reference, row = table.rows
    shown = row[f.STEADY_SAMPLES_PER_SECOND] / reference[f.STEADY_SAMPLES_PER_SECOND]  # the figures printed
    if abs(row[f.THROUGHPUT_RATIO] - shown) > 1e-9:  # the printed ratio is another statistic: it must be named
        note = next(note for note in table.notes if note.startswith("Verdicts against"))
        assert "ratio of geometric means of run medians" in note and "medians of the run medians" in note
    assert row[f.THROUGHPUT_RATIO] != pytest.approx(shown, abs=1e-3)  # the case of the issue is the one tested


# --- no p-value for deterministic ties ------------------------------------------------------------------------


def test_values_without_spread_get_no_test_and_no_verdict() -> None:
    tie = verdict_from_runs([100.0, 100.0], [100.0, 100.0])  # was p = 1 here, and p = 0 with a verdict below
    assert (tie.verdict, tie.ratio, tie.p_value, tie.ratio_low) == ("untested", 1.0, None, None)
    assert tie.test == NO_SPREAD_TEST == "no spread: deterministic values, no test"
    apart = verdict_from_runs([2000.0, 2000.0], [1000.0, 1000.0], ("more memory", "less memory"))
    assert (apart.verdict, apart.ratio, apart.p_value) == ("untested", 2.0, None)
    steps = verdict_from_steps([30.0] * 10, [30.0] * 10)
    assert (steps.verdict, steps.ratio, steps.p_value, steps.test) == ("untested", 1.0, None, NO_SPREAD_TEST)
    # one side with spread is still a test
    assert verdict_from_runs([2000.0, 2000.0], [1000.0, 1010.0]).p_value is not None


def test_a_table_does_not_test_identical_peaks() -> None:
    runs = [repeat(point(0), k, rate, 20000.0) for k, rate in enumerate((40.0, 40.6, 39.5), 1)]
    runs += [repeat(point(1), k, rate, 20000.0) for k, rate in enumerate((46.0, 46.5, 45.6), 1)]
    table = aggregate.build_table(study("zero", "comparison", runs), runs)
    row = table.rows[1]
    assert row[f.MEMORY_VERDICT] == "untested" and row[f.MEMORY_P] is None and row[f.MEMORY_RATIO] == 1.0
    assert NO_SPREAD_TEST in next(note for note in table.notes if note.startswith("Verdicts against"))


# --- never-settled warm-ups -----------------------------------------------------------------------------------


def with_steps(p: dict[str, Any], seconds: np.ndarray, k: int = 1) -> dict[str, Any]:
    """A finished run whose `throughput` section the real statistics compute from `seconds` (16 samples a step)."""
    n = len(seconds)
    stats = summarise_step_times(np.arange(1, n + 1), seconds, [16] * n, [False] * n, 1)
    summary = make_summary(p, peak=20000.0, exact=20000.5, steady=16 / float(np.median(seconds)))
    summary["run_id"] = f"{summary['run_id']}-r{k}"
    summary["throughput"] = {**stats.record(), "hit_cap": False, "stop_reason": "epochs"}
    return summary


def test_a_row_whose_warm_up_never_settled_is_marked_with_a_note() -> None:
    rng = np.random.default_rng(0)
    settled = with_steps(point(0), np.concatenate([[3.0, 2.0], 0.5 + rng.normal(0, 0.005, 60)]))
    drifting = with_steps(point(1), np.linspace(0.5, 1.5, 62))  # slower every step: never settles
    assert settled["throughput"]["warmup_settled"] and not drifting["throughput"]["warmup_settled"]
    runs = [settled, drifting, with_steps(point(1), 0.5 + rng.normal(0, 0.005, 62), k=2)]
    table = aggregate.build_table(study("zero", "comparison", runs), runs)
    rows = {row[f.RUN_ID]: row for row in table.rows}
    assert rows["z0-offnone-nopin-g1n1"][f.WARMUP_NEVER_SETTLED] is False
    assert rows["z1-offnone-nopin-g1n1"][f.WARMUP_NEVER_SETTLED] is True  # one of its two runs never settled
    (note,) = warmup_never_settled_note(table.rows)
    assert note.startswith("‡ ") and "z1-offnone-nopin-g1n1" in note and "z0-offnone" not in note
    assert f.WARMUP_NEVER_SETTLED in aggregate.csv_frame(table).columns
    no_steps = [make_summary(point(0), peak=1.0, steady=10.0)]
    plain = aggregate.build_table(study("zero", "comparison", no_steps), no_steps)
    assert plain.rows[0][f.WARMUP_NEVER_SETTLED] is None and warmup_never_settled_note(plain.rows) == []


# --- the run-level values behind a row -------------------------------------------------------------------------


def test_a_row_carries_its_runs_values_for_tests_between_tables() -> None:
    runs = rate_runs(point(0), FAST) + rate_runs(point(1), SLOW)
    table = aggregate.build_table(study("zero", "comparison", runs), runs)
    frame = aggregate.csv_frame(table)
    for row, mine in zip(frame.to_dict("records"), (runs[:3], runs[3:])):
        rates = [float(v) for v in row[f.RUN_SAMPLES_PER_SECOND].split()]
        assert rates == pytest.approx([run["throughput"]["samples_per_second"] for run in mine], rel=1e-5)
        assert row[f.RUN_PEAK_MIB].split() == [f"{run['nvml']['peak_mib']:.6g}" for run in mine]  # NVML: all have it
    # the same values give the row's verdict back
    assert verdict_from_runs(*[[float(v) for v in row[f.RUN_SAMPLES_PER_SECOND].split()] for row in
                               reversed(table.rows)]).ratio == pytest.approx(table.rows[1][f.THROUGHPUT_RATIO])
    for kind in ("comparison", "scaling"):
        assert {f.RUN_SAMPLES_PER_SECOND, f.RUN_PEAK_MIB, f.WARMUP_NEVER_SETTLED} <= set(aggregate.COLUMNS[kind])
        assert {f.RUN_SAMPLES_PER_SECOND, f.RUN_PEAK_MIB, f.WARMUP_NEVER_SETTLED} <= aggregate.HIDDEN[kind]


def test_a_table_of_short_runs_says_why_it_has_no_interval_not_that_it_has_no_steps() -> None:
    rng = np.random.default_rng(3)
    short = [with_steps(point(0), 0.5 + rng.normal(0, 0.005, 15))]  # 15 steady steps: under MIN_STEPS
    table = aggregate.build_table(study("zero", "comparison", short), short)
    assert table.rows[0][f.STEADY_SAMPLES_PER_SECOND_LOW] is None
    note = next(note for note in table.notes if note.startswith("Steady samples/s"))
    assert "no per-step record" not in note and "none under 20 steady steps" in note, note
    plain = [make_summary(point(0), peak=1.0, steady=10.0)]  # no steps.csv behind it
    assert any("no per-step record" in note for note in aggregate.build_table(study("zero", "comparison", plain),
                                                                              plain).notes)
