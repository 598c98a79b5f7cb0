"""`python -m zerosweep compare A B`: two results directories side by side, per matching run.

For two result sets (two GPU types, before/after a change): every run id in both `A/runs/*/summary.json` and
`B/runs/*/summary.json` (repeats `-r<k>` grouped under their run id; their `throughput` sections, see
report/throughput.py) becomes one row with A's and B's median
steady samples/s and interval, the ratio B / A with its interval, and the verdict of report/statistics.py
(Welch on log run medians with >= 2 runs each; with one run a side, untested, the ratio with a within-run
interval), and the same for the exact GPU memory peak (a verdict only with >= 2 runs each). Written as CSV and Markdown.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd

from ..plan.repeats import split_repeat
from .statistics import StepStatistics, compare_rows, row_throughput, verdict_from_runs

SUMMARY = "summary.json"


class CompareError(ValueError):
    """Results directories that cannot be compared; the message names the culprit."""


def load_runs(results: Path) -> dict[str, list[tuple[dict[str, Any], StepStatistics | None]]]:
    """Run id (repeats grouped) -> [(summary.json, its throughput section as StepStatistics or None), ...]."""
    runs_dir = results / "runs"
    if not runs_dir.is_dir():
        raise CompareError(f"{results}: no runs/ directory (expected a zerosweep results directory)")
    grouped: dict[str, list[tuple[dict[str, Any], StepStatistics | None]]] = defaultdict(list)
    for path in sorted(runs_dir.glob(f"*/{SUMMARY}")):
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise CompareError(f"{path}: not valid JSON: {error.msg}") from None
        if summary.get("status") != "ok":
            continue
        throughput = summary.get("throughput")
        try:
            stats = StepStatistics.from_record(throughput) if throughput else None
        except ValueError as error:
            raise CompareError(f"{path}: {error}") from None
        grouped[split_repeat(summary["run_id"])[0]].append((summary, stats))
    return dict(grouped)


def _peak_mib(summary: dict[str, Any]) -> float | None:
    for section in ("nvml", "gpu"):
        value = (summary.get(section) or {}).get("peak_mib")
        if value is not None:
            return float(value)
    return None


def _side(runs: list[tuple[dict[str, Any], StepStatistics | None]], prefix: str) -> dict[str, Any]:
    figure = row_throughput([stats for _, stats in runs if stats is not None])
    return {f"{prefix} runs": len(runs), f"{prefix} samples/s": figure.median if figure else None,
            f"{prefix} low": figure.low if figure else None, f"{prefix} high": figure.high if figure else None}


def compare_results(a: Path, b: Path) -> pd.DataFrame:
    """One row per run id present in both result sets; ratio and verdict are B relative to A."""
    runs_a, runs_b = load_runs(a), load_runs(b)
    common = [run_id for run_id in runs_a if run_id in runs_b]
    if not common:
        raise CompareError(f"{a} and {b} share no successful run id (A: {sorted(runs_a)}, B: {sorted(runs_b)})")
    rows = []
    for run_id in common:
        side_a, side_b = runs_a[run_id], runs_b[run_id]
        speed = compare_rows([s for _, s in side_b if s], [s for _, s in side_a if s])
        peaks_a = [p for summary, _ in side_a if (p := _peak_mib(summary)) is not None]
        peaks_b = [p for summary, _ in side_b if (p := _peak_mib(summary)) is not None]
        memory = verdict_from_runs(peaks_b, peaks_a, words=("more memory", "less memory")) \
            if peaks_a and peaks_b else None
        rows.append({
            "run": run_id, "label": side_a[0][0].get("label"),
            **_side(side_a, "A"), **_side(side_b, "B"),
            "ratio B/A": speed.ratio, "ratio low": speed.ratio_low, "ratio high": speed.ratio_high,
            "verdict": speed.verdict, "p": speed.p_value, "test": speed.test,
            "A peak MiB": sum(peaks_a) / len(peaks_a) if peaks_a else None,
            "B peak MiB": sum(peaks_b) / len(peaks_b) if peaks_b else None,
            "memory ratio B/A": memory.ratio if memory else None,
            "memory verdict": memory.verdict if memory else None,
        })
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
             ("Samples/s: median steady throughput; low-high: its 95 % interval (one run) or min-max (repeats). "
              "Ratio B/A with its 95 % interval; verdict and test as in zerosweep.report.statistics "
              f"({', '.join(sorted(set(frame['test'])))})."), "",
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
