"""`python -m zerosweep compare A B`: two results directories side by side, per matching run.

For two result sets (two GPU types, before/after a change): every run id in both `A/runs/*/summary.json` and
`B/runs/*/summary.json` (repeats `-r<k>` grouped under their run id; their `throughput` sections, see
report/run_summary/throughput.py) becomes one row with each side's status, A's and B's median
steady samples/s and interval, the ratio B / A with its interval, and the verdict of report/statistics.py
(Welch on log run medians with >= 2 runs each; with one run a side, untested, the ratio with a within-run
interval), and the same for the GPU memory peak (report/run_summary/run_peak: the first GPU monitor both sides' runs have; a
verdict only with >= 2 runs each), and each side's GPU energy per sample with the ratio where both sides have
it (report/run_summary/energy.run_energy). A run that did not finish (oom, crashed, unusable) keeps its row with its
status and empty numbers; a side's numbers come from its finished runs only. Written as CSV and Markdown.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd

from ...plan.repeats import split_repeat
from ..run_summary.energy import run_energy
from ..run_summary.run_peak import GPU_MONITORS, PEAK_LABELS, Source, peak_from, shared_peak_source
from ..statistics import StepStatistics, compare_rows, row_throughput, verdict_from_runs
from .table_fields import row_status

SUMMARY = "summary.json"
Runs = list[tuple[dict[str, Any], StepStatistics | None]]  # (summary.json, its throughput section or None)


class CompareError(ValueError):
    """Results directories that cannot be compared; the message names the culprit."""


def load_runs(results: Path) -> dict[str, Runs]:
    """Run id (repeats grouped) -> [(summary.json, its throughput section as StepStatistics or None), ...], every
    status (runs that did not finish have no statistics)."""
    runs_dir = results / "runs"
    if not runs_dir.is_dir():
        raise CompareError(f"{results}: no runs/ directory (expected a zerosweep results directory)")
    grouped: dict[str, Runs] = defaultdict(list)
    for path in sorted(runs_dir.glob(f"*/{SUMMARY}")):
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise CompareError(f"{path}: not valid JSON: {error.msg}") from None
        throughput = summary.get("throughput") if row_status(summary) == "ok" else None
        try:
            stats = StepStatistics.from_record(throughput) if throughput else None
        except ValueError as error:
            raise CompareError(f"{path}: {error}") from None
        grouped[split_repeat(summary["run_id"])[0]].append((summary, stats))
    return dict(grouped)


def _finished(runs: Runs) -> Runs:
    return [(summary, stats) for summary, stats in runs if row_status(summary) == "ok"]


def _status(runs: Runs) -> str:
    """'ok' when every run finished; else each status with its count ('ok 2, oom 1'), or the one status."""
    counts: dict[str, int] = defaultdict(int)
    for summary, _ in runs:
        counts[row_status(summary)] += 1
    if len(counts) == 1:
        return next(iter(counts))
    return ", ".join(f"{status} {count}" for status, count in sorted(counts.items()))


def _peaks(runs: Runs, source: Source | None) -> list[float]:
    return [] if source is None else [p for summary, _ in runs if (p := peak_from(summary, source)) is not None]


def j_per_sample(runs: Runs) -> float | None:
    """A side's GPU energy per sample: the median over its finished runs (report/run_summary/energy.run_energy);
    None unless every finished run has one."""
    values = [run_energy(summary).gpu_j_per_sample for summary, _ in _finished(runs)]
    numbers = [float(value) for value in values if value is not None]
    return float(statistics.median(numbers)) if numbers and len(numbers) == len(values) else None


def _side(runs: Runs, prefix: str, source: Source | None) -> dict[str, Any]:
    """A side's status over all its runs; its numbers from the finished ones (none finished: empty)."""
    figure = row_throughput([stats for _, stats in _finished(runs) if stats is not None])
    peaks = _peaks(_finished(runs), source)
    return {f"{prefix} status": _status(runs), f"{prefix} runs": len(runs),
            f"{prefix} samples/s": figure.median if figure else None,
            f"{prefix} low": figure.low if figure else None, f"{prefix} high": figure.high if figure else None,
            f"{prefix} peak MiB": sum(peaks) / len(peaks) if peaks else None,
            f"{prefix} J/sample": j_per_sample(runs)}


def compare_results(a: Path, b: Path) -> pd.DataFrame:
    """One row per run id present in both result sets; ratio and verdict are B relative to A."""
    runs_a, runs_b = load_runs(a), load_runs(b)
    common = [run_id for run_id in runs_a if run_id in runs_b]
    if not common:
        raise CompareError(f"{a} and {b} share no run id (A: {sorted(runs_a)}, B: {sorted(runs_b)})")
    rows = []
    for run_id in common:
        done_a, done_b = _finished(runs_a[run_id]), _finished(runs_b[run_id])
        source = shared_peak_source([summary for summary, _ in done_a + done_b], GPU_MONITORS)
        speed = compare_rows([s for _, s in done_b if s], [s for _, s in done_a if s]) if done_a and done_b else None
        peaks_a, peaks_b = _peaks(done_a, source), _peaks(done_b, source)
        memory = verdict_from_runs(peaks_b, peaks_a, words=("more memory", "less memory")) \
            if peaks_a and peaks_b else None
        rows.append({
            "run": run_id, "label": runs_a[run_id][0][0].get("label"),
            **_side(runs_a[run_id], "A", source), **_side(runs_b[run_id], "B", source),
            "ratio B/A": speed.ratio if speed else None, "ratio low": speed.ratio_low if speed else None,
            "ratio high": speed.ratio_high if speed else None, "verdict": speed.verdict if speed else None,
            "p": speed.p_value if speed else None, "test": speed.test if speed else None,
            "peak source": PEAK_LABELS[source] if source else None,
            "memory ratio B/A": memory.ratio if memory else None,
            "memory verdict": memory.verdict if memory else None,
        })
        energy_a, energy_b = rows[-1]["A J/sample"], rows[-1]["B J/sample"]
        rows[-1]["J/sample ratio B/A"] = energy_b / energy_a if energy_a and energy_b is not None else None
    return pd.DataFrame(rows)


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value).replace("|", "\\|")


def markdown(frame: pd.DataFrame, a: Path, b: Path) -> str:
    columns = [c for c in frame.columns if c not in ("test",)]
    lines = [f"# {b} compared with {a}", "",
             ("Samples/s: median steady throughput of the finished runs; low-high: its 95 % interval (one run) or "
              "min-max (repeats). Status: every run's (a run that did not finish keeps its row, numbers empty). "
              "Ratio B/A with its 95 % interval; verdict and test as in zerosweep.report.statistics "
              f"({', '.join(sorted(str(test) for test in set(frame['test']) if isinstance(test, str))) or 'none'}). "
              "J/sample: the GPUs' energy (NVML's total-energy counter) over the steady steps per sample, median of "
              "the finished runs; its ratio only where both sides have it (no test: a figure, not a verdict)."),
             "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row[c]) for c in columns) + " |" for _, row in frame.iterrows()]
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("a", type=Path, help="results directory A (the reference)")
    parser.add_argument("b", type=Path, help="results directory B (compared with A)")
    parser.add_argument("--out-csv", type=Path, default=Path("results/compare.csv"))
    parser.add_argument("--out-md", type=Path, default=Path("results/compare.md"))


def run(args: argparse.Namespace) -> int:
    try:
        frame = compare_results(args.a, args.b)
    except CompareError as error:
        raise SystemExit(f"compare: {error}") from None
    args.out_csv.parent.mkdir(parents=True, exist_ok=True)
    args.out_md.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out_csv, index=False)
    args.out_md.write_text(markdown(frame, args.a, args.b), encoding="utf-8")
    print(f"{len(frame)} runs compared -> {args.out_csv}, {args.out_md}")
    return 0
