"""One table row per matrix point: its repeats (`<point>-r<k>`) grouped, its steady throughput with the spread,
and the verdict of each row against the study's reference row (rules in `statistics`).

A row's numbers are the medians over the point's finished repeats; its steady samples/s is the median of the
runs' median-step figures (summary.json `throughput`) with a 95 % CI for one run or min-max for repeats.
Records without per-step statistics (no steps.csv) keep the launcher's steady figure, without an interval
for one run. The reference row is the table's first finished row (the table order puts the no-DeepSpeed
baseline first, then ZeRO stages ascending, without offload before offload, unpinned before pinned).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

from ... import records as f
from ...plan.repeats import split_repeat
from ...steady import MIN_STEPS
from ..run_summary.gpu_busy import HOST_BOUND_BELOW, host_bound
from ..run_summary.run_peak import PEAK_LABELS, Source, peak_from, shared_peak_source
from ..run_summary.throughput import LAUNCHER_MEAN, MEDIAN_STEP, RUN_VALUES, run_throughput
from ..statistics import (
    ALPHA,
    StepStatistics,
    Verdict,
    aggregate_repeats,
    compare_rows,
    row_throughput,
    verdict_from_runs,
)
from . import derived
from .table_fields import IDENTITY, record_fields, row_status

if TYPE_CHECKING:
    import pandas as pd

REFERENCE = "reference"
MEMORY_WORDS = ("more memory", "less memory")
VERDICT_FIELDS = {
    "throughput": (f.THROUGHPUT_VERDICT, f.THROUGHPUT_RATIO, f.THROUGHPUT_RATIO_LOW, f.THROUGHPUT_RATIO_HIGH,
                   f.THROUGHPUT_P),
    "memory": (f.MEMORY_VERDICT, f.MEMORY_RATIO, f.MEMORY_RATIO_LOW, f.MEMORY_RATIO_HIGH, f.MEMORY_P),
}


@dataclass
class PointRuns:
    """A matrix point's runs (its repeats) and the finished ones the row's numbers come from."""

    point_id: str
    runs: list[f.RunRecord]

    @property
    def finished(self) -> list[f.RunRecord]:
        return [run for run in self.runs if row_status(run) == "ok"]

    def statistics(self) -> list[StepStatistics]:
        return [StepStatistics.from_record(section) for run in self.finished if (section := run.get("throughput"))]


def group_repeats(runs: Sequence[f.RunRecord]) -> list[PointRuns]:
    """The runs grouped by matrix point, in the order each point first appears."""
    groups: dict[str, PointRuns] = {}
    for run in runs:
        point_id, _repeat = split_repeat(run["run_id"])
        groups.setdefault(point_id, PointRuns(point_id, [])).runs.append(run)
    return list(groups.values())


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _median(values: list[Any]) -> Any:
    import numpy as np

    numbers = [value for value in values if _number(value)]
    if not numbers:
        return None
    if len(numbers) == 1:
        return numbers[0]  # keep 21658 an int in the CSV
    return float(np.median(numbers))


def point_row(group: PointRuns, label: str, peak_tflops: float | None) -> dict[str, Any]:
    """The row of one matrix point: identity from its first run, numbers the medians over its finished runs."""
    per_run = [record_fields(run, label, peak_tflops) for run in group.runs]
    finished = [fields for fields in per_run if fields[f.STATUS] == "ok"]
    row = dict((finished or per_run)[0])
    row[f.RUN_ID] = group.point_id
    row[f.RUNS] = " ".join(run["run_id"] for run in group.runs)
    row[f.REPEATS] = len(finished)
    for name in row:
        if name not in IDENTITY and name not in (f.RUNS, f.REPEATS) and len(finished) > 1:
            values = [fields[name] for fields in finished]
            row[name] = _median(values) if any(_number(value) for value in values) else values[0]
    row.update(_throughput(group, finished))
    row[f.HOST_BOUND] = host_bound(row[f.GPU_BUSY_FRACTION])  # of the row's busy fraction (median of its runs')
    row[f.WARMUP_NEVER_SETTLED] = warmup_never_settled(group)
    estimator, rates = run_rates(group)
    row[f.RUN_SAMPLES_PER_SECOND], row[f.RUN_SAMPLES_ESTIMATOR] = _run_values(rates), estimator if rates else None
    row.update(_run_peaks(group, shared_peak_source(group.finished)))
    return row


def _run_peaks(group: PointRuns, source: Source | None) -> dict[str, Any]:
    peaks = _peaks(group, source)
    return {f.RUN_PEAK_MIB: _run_values(peaks), f.RUN_PEAK_SOURCE: PEAK_LABELS[source] if peaks and source else None}


def warmup_never_settled(group: PointRuns) -> bool | None:
    """True when a finished run's step times never settled (its steady window starts at the minimum warm-up and
    holds the unsettled steps); None when no finished run has a per-step record."""
    sections = [section for run in group.finished if (section := run.get("throughput"))]
    return any(section.get("warmup_settled") is False for section in sections) if sections else None


def run_rates(group: PointRuns) -> tuple[str, list[float]]:
    """Each finished run's steady samples/s, by the estimator the row's figure and verdict use (named): the
    median step of the per-step statistics where the row has them, else the launcher's steady-window mean."""
    statistics = group.statistics()
    if statistics:
        return MEDIAN_STEP, [float(run.samples_per_second) for run in statistics if run.samples_per_second is not None]
    return LAUNCHER_MEAN, [v for run in group.finished
                           if (v := run_throughput(run, None, LAUNCHER_MEAN).samples_per_second) is not None]


def _run_values(values: Sequence[float] | None) -> str | None:
    """Run-level values as one CSV cell, space-separated ('%.6g': enough for a test, short enough to read)."""
    return " ".join(f"{value:.6g}" for value in values) if values else None


def _throughput(group: PointRuns, finished: list[dict[str, Any]]) -> dict[str, Any]:
    empty = {f.STEADY_SAMPLES_PER_SECOND_LOW: None, f.STEADY_SAMPLES_PER_SECOND_HIGH: None, f.STEADY_SPREAD: None,
             f.HIT_CAP: None}
    if not finished:
        return empty
    figure = row_throughput(group.statistics())
    if figure is not None:
        return {f.STEADY_SAMPLES_PER_SECOND: figure.median, f.STEADY_SAMPLES_PER_SECOND_LOW: figure.low,
                f.STEADY_SAMPLES_PER_SECOND_HIGH: figure.high,
                f.STEADY_SPREAD: figure.spread if figure.low is not None else None,
                f.HIT_CAP: any(bool((run.get("throughput") or {}).get("hit_cap")) for run in group.finished)}
    # Older records: the launcher's steady figure per run; repeats still give min-max.
    values = [fields[f.STEADY_SAMPLES_PER_SECOND] for fields in finished if _number(fields[f.STEADY_SAMPLES_PER_SECOND])]
    if len(values) < 2:
        return empty
    repeats = aggregate_repeats(values)
    return {**empty, f.STEADY_SAMPLES_PER_SECOND: repeats.median, f.STEADY_SAMPLES_PER_SECOND_LOW: repeats.low,
            f.STEADY_SAMPLES_PER_SECOND_HIGH: repeats.high, f.STEADY_SPREAD: "min-max"}


# --- verdicts ---------------------------------------------------------------------------------------------


def _peaks(group: PointRuns, source: Source | None) -> list[float] | None:
    """Every finished run's peak from `source` (report/run_summary/run_peak); None unless each has one."""
    peaks = [peak for run in group.finished if (peak := peak_from(run, source)) is not None] if source else []
    return peaks if peaks and len(peaks) == len(group.finished) else None


def throughput_verdict(group: PointRuns, reference: PointRuns) -> Verdict:
    """compare_rows on the per-step statistics; runs without them: Welch on the launcher's steady figures."""
    mine, theirs = group.statistics(), reference.statistics()
    if mine and theirs:
        return compare_rows(mine, theirs)

    def steady(runs: PointRuns) -> list[float]:  # the same estimator on both sides: the launcher's mean
        return [v for run in runs.finished
                if (v := run_throughput(run, None, LAUNCHER_MEAN).samples_per_second) is not None]

    return verdict_from_runs(steady(group), steady(reference), values=RUN_VALUES[LAUNCHER_MEAN])


def memory_verdict(group: PointRuns, reference: PointRuns, source: Source | None) -> Verdict | None:
    mine, theirs = _peaks(group, source), _peaks(reference, source)
    if mine is None or theirs is None:
        return None
    return verdict_from_runs(mine, theirs, words=MEMORY_WORDS, values="run peaks")


def _verdict_fields(kind: str, verdict: Verdict | None) -> dict[str, Any]:
    names = VERDICT_FIELDS[kind]
    if verdict is None:
        return dict.fromkeys(names)
    return dict(zip(names, (verdict.verdict, verdict.ratio, verdict.ratio_low, verdict.ratio_high, verdict.p_value)))


def add_verdicts(rows: list[dict[str, Any]], groups: list[PointRuns]) -> list[str]:
    """Verdict fields on every row, in place, against the first finished row; returns the notes naming the
    reference, the tests and the memory source."""
    for row in rows:
        row.update(_verdict_fields("throughput", None))
        row.update(_verdict_fields("memory", None))
    index = next((i for i, group in enumerate(groups) if group.finished), None)
    if index is None:
        return []
    reference = groups[index]
    everyone = [group for group in groups if group.finished]
    source = shared_peak_source(run for group in everyone for run in group.finished)
    tests: set[str] = set()
    estimators: set[str] = set()
    for row, group in zip(rows, groups):
        row.update(_run_peaks(group, source))  # the peaks this table's memory verdict compares
        if group is reference:
            row[f.THROUGHPUT_VERDICT] = row[f.MEMORY_VERDICT] = REFERENCE
            continue
        if not group.finished:
            continue
        speed, memory = throughput_verdict(group, reference), memory_verdict(group, reference, source)
        tests.update(verdict.test for verdict in (speed, memory) if verdict is not None)
        estimators.update(verdict.estimator for verdict in (speed, memory) if verdict is not None)
        row.update(_verdict_fields("throughput", speed))
        row.update(_verdict_fields("memory", memory))
    peak = PEAK_LABELS[source] if source else "GPU memory (no GPU monitor that every run has)"
    return [
        f"Verdicts against the reference row {rows[index][f.CONFIG]} (`{reference.point_id}`, the table's first "
        f"finished row): steady throughput and {peak}, two-sided at alpha {ALPHA:g}. Throughput: Welch's t on the "
        "log run medians when both rows have >= 2 runs, else untested (a single run cannot show run-to-run "
        "drift; the ratio of medians is given with a within-run bootstrap 95 % interval); memory: Welch's t on "
        "the log run peaks (>= 2 runs each, else untested); runs with no spread on either side are not tested. "
        "A row differs only when p < alpha and the ratio's 95 % interval excludes 1; otherwise it is within noise. "
        "Tests used here: " + ("; ".join(sorted(tests)) or "none") + ". "
        "The change a verdict cell shows (none where within noise) is row / reference - 1 by the "
        + (" / ".join(sorted(estimators)) or "ratio") + _estimator_caveat(estimators) + ". Each ratio's 95 % interval "
        f"and p-value are in the CSV ({f.THROUGHPUT_RATIO}_low/_high, {f.THROUGHPUT_P}; {f.MEMORY_RATIO}_low/_high, "
        f"{f.MEMORY_P})."
    ]


def _estimator_caveat(estimators: set[str]) -> str:
    """Why a ratio may differ from the ratio of the two figures shown (both are medians of run medians)."""
    if not any(name.startswith("ratio of geometric means") for name in estimators):
        return ""
    return (": a Welch ratio is of geometric means, so it can differ from the ratio of the row figures shown, "
            "which are medians of the run medians")


def add_efficiency_intervals(frame: pd.DataFrame, groups: list[PointRuns]) -> list[str]:
    """The steady weak-scaling efficiency's 95 % interval, in place, on every row of a scaling frame (one row per
    group, in order) that has >= 2 runs, as has the reference (derived.finished_by_size's first). Efficiency =
    throughput ratio x GPUs_ref / GPUs, so its interval is the ratio's (compare_rows: Welch on log run medians)
    scaled alike. Single runs get none: their within-run interval leaves out the run-to-run drift."""
    frame[f.STEADY_WEAK_SCALING_EFFICIENCY_LOW] = frame[f.STEADY_WEAK_SCALING_EFFICIENCY_HIGH] = None
    finished = derived.finished_by_size(frame, f.STEADY_SAMPLES_PER_SECOND)
    if finished.empty:
        return []
    reference = finished.index[0]
    for index in finished.index[1:]:
        verdict = throughput_verdict(groups[index], groups[reference])
        if verdict.ratio_low is None or verdict.ratio_high is None or min(verdict.n_row, verdict.n_reference) < 2:
            continue  # single runs: their within-run interval is no interval for this
        scale = finished.at[reference, f.WORLD_SIZE] / finished.at[index, f.WORLD_SIZE]
        frame.at[index, f.STEADY_WEAK_SCALING_EFFICIENCY_LOW] = verdict.ratio_low * scale
        frame.at[index, f.STEADY_WEAK_SCALING_EFFICIENCY_HIGH] = verdict.ratio_high * scale
    if frame[f.STEADY_WEAK_SCALING_EFFICIENCY_LOW].isna().all():
        return []
    return [("Steady weak-scaling efficiency [low, high]: the 95 % interval of the throughput ratio to the "
             "reference (Welch's t on the log run medians, >= 2 runs each) times the GPU ratio; rows with a single "
             f"run have none (CSV: {f.STEADY_WEAK_SCALING_EFFICIENCY_LOW}/_high).")]


def warmup_never_settled_note(rows: list[dict[str, Any]]) -> list[str]:
    """The note behind the ‡ mark: rows with a run whose warm-up was never detected as over."""
    unsettled = [row[f.RUN_ID] for row in rows if row.get(f.WARMUP_NEVER_SETTLED)]
    if not unsettled:
        return []
    return [("‡ a run's step times never settled within ±10 % of their median (warm-up rule in "
             "zerosweep.steady): its steady figure starts after training.warmup_steps and may hold warm-up or a "
             f"drift, and it could not stop by width (CSV: {f.WARMUP_NEVER_SETTLED}): {', '.join(unsettled)}.")]


def host_bound_note(rows: list[dict[str, Any]]) -> list[str]:
    """The note behind the § mark: rows whose GPUs were busy less than HOST_BOUND_BELOW of the steady steps."""
    marked = [row[f.RUN_ID] for row in rows if row.get(f.HOST_BOUND)]
    if not marked:
        return []
    return [(f"§ host-bound: the run's GPUs ran a kernel in less than {100 * HOST_BOUND_BELOW:.0f} % of its steady "
             "steps' time (busy fraction: the mean of NVML's utilisation samples inside the steady steps, "
             "zerosweep.report.run_summary.gpu_busy; median over repeats), so its step times wait on the host (data, "
             "Python and kernel-launch overhead, CPU work) and carry its noise (CSV: "
             f"{f.GPU_BUSY_FRACTION}, {f.HOST_BOUND}): {', '.join(marked)}.")]


def hit_cap_note(rows: list[dict[str, Any]]) -> list[str]:
    capped = [row[f.RUN_ID] for row in rows if row.get(f.HIT_CAP)]
    if not capped:
        return []
    return [(f"† stopped at the step or time cap before the throughput interval reached the configured width: "
            f"{', '.join(capped)}.")]


def spread_note(rows: list[dict[str, Any]]) -> list[str]:
    if not any(row.get(f.RUN_SAMPLES_ESTIMATOR) == MEDIAN_STEP for row in rows):
        return ["Steady samples/s: the launcher's steady-window figure (no per-step record: no interval)."]
    return [
        ("Steady samples/s: median step time's throughput, with [low, high] where a row has one: one run's 95 % "
         f"interval of its median (batch medians, zerosweep.steady; none under {MIN_STEPS} steady steps), or the "
         "min-max over a point's repeats (N runs: the median of their medians). CSV: "
         f"{f.STEADY_SAMPLES_PER_SECOND}_low/_high, {f.STEADY_SPREAD}, {f.REPEATS}.")
    ]
