"""The issue-12 targets from the device session's files, as Markdown (statistics: zerosweep.report.statistics).

    python benchmarks/h100/analyse_method.py --pipeline DIR/results --overhead DIR/overhead [--fidelity DIR/fidelity]
        [--out FILE]

--pipeline: a results/ directory of run_pipeline.sh with EXTRA_CONFIG=benchmarks/h100/method_overrides.yaml
  (records.tgz unpacked): every run's median steady samples/s with its 95 % interval, step CV and stop reason;
  per configuration the median of the run medians, min-max, N and the CV of the run medians (target <= 3 % for
  ZeRO 0-3 without offload); verdicts between configurations; and the per-step diagnostics that show where the
  spread comes from (step-time distribution, drift within a run, what the warm-up rule kept, host CPU load).
--fidelity / --overhead: run_method.sh's <kind>.tgz unpacked: per configuration, condition against reference
  (bare Trainer; plain), the ratio with its 95 % interval and the verdict.
--blocks: run_method.sh blocks' blocks.tgz unpacked: each condition against `plain` within one run, paired by
  cycle (overhead_blocks.py).
Any of them may be left out. --out writes the Markdown to a file instead of stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from zerosweep.plan.repeats import split_repeat
from zerosweep.report.interval_text import interval_text
from zerosweep.report.run_summary.logs import CPU_LOG, matching_logs, psrecord_format, read_log
from zerosweep.report.run_summary.throughput import CAP_REASONS, read_steps, step_statistics
from zerosweep.report.statistics import StepStatistics, aggregate_repeats, compare_rows
from zerosweep.report.study.compare import load_runs
from zerosweep.steady import MIN_BATCHES, MIN_STEPS, median_interval

GPU_BOUND = ("base-g1n1", "z0-offnone-nopin-g1n1", "z1-offnone-nopin-g1n1", "z2-offnone-nopin-g1n1",
             "z3-offnone-nopin-g1n1")
WARMUP_STEPS = 2  # the shipped training.warmup_steps, the minimum warm-up
CV_TARGET = 0.03
MIN_BLOCK_STEPS = 5  # a block with fewer measured steps gives no figure
# why a run's figure has no interval: the rule is steady.median_interval's
NO_INTERVAL = (f"within-run 95 % interval: steady.median_interval (a t interval over batch medians, "
               f"{MIN_BATCHES} batches or more); none under {MIN_STEPS} steady steps")
# Configuration pairs for verdicts (row, reference): each against ZeRO-0, the plain Trainer against ZeRO-0,
# and each ZeRO stage against the one below it.
PAIRS = (("base-g1n1", "z0-offnone-nopin-g1n1"), ("z1-offnone-nopin-g1n1", "z0-offnone-nopin-g1n1"),
         ("z2-offnone-nopin-g1n1", "z0-offnone-nopin-g1n1"), ("z3-offnone-nopin-g1n1", "z0-offnone-nopin-g1n1"),
         ("z2-offnone-nopin-g1n1", "z1-offnone-nopin-g1n1"), ("z3-offnone-nopin-g1n1", "z2-offnone-nopin-g1n1"))


def _rate(stats: StepStatistics | None) -> str:
    if stats is None or stats.samples_per_second is None:
        return "-"
    return interval_text(stats.samples_per_second, stats.samples_per_second_ci_low, stats.samples_per_second_ci_high, 2)


def _spread(aggregate: Any) -> str:
    """Median of the run medians with their [min, max]; one run: its median alone (no spread to show)."""
    if aggregate.n < 2:
        return f"{aggregate.median:.2f}"
    return interval_text(aggregate.median, aggregate.low, aggregate.high, 2)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _ratio(verdict: Any) -> str:
    if verdict.ratio is None:
        return "-"
    return interval_text(verdict.ratio, verdict.ratio_low, verdict.ratio_high, 3)


def _session_start(results: Path) -> float:
    starts = [float(read_steps(path)["wall_start"].iloc[0]) for path in results.glob("runs/*/steps.csv")]
    return min(starts)


def runs_table(results: Path) -> list[str]:
    """One row per run, in the order they ran."""
    t0 = _session_start(results)
    rows = []
    for run_id, runs in load_runs(results).items():
        for summary, stats in runs:
            throughput = summary.get("throughput") or {}
            steps = read_steps(results / "runs" / summary["run_id"] / "steps.csv")
            rows.append((float(steps["wall_start"].iloc[0]) - t0, run_id, summary["run_id"], stats, throughput))
    lines = ["## Every run (in the order they ran)", "", f"Samples/s: the run's median, {NO_INTERVAL}.", "",
             ("| started (s into the session) | run | median samples/s [95 % CI] | step-time CV | steady steps "
              "(of recorded) | warm-up detected (settled) | stop reason | hit cap |"), "|" + "---|" * 8]
    for start, _, name, stats, throughput in sorted(rows, key=lambda row: row[0]):
        lines.append(
            f"| {start:.0f} | {name} | {_rate(stats)} | {_pct(stats.step_seconds_cv if stats else None)} | "
            f"{stats.steady_steps if stats else '-'} ({throughput.get('recorded_steps')}) | "
            f"{stats.warmup_steps_detected if stats else '-'} ({'yes' if stats and stats.warmup_settled else 'no'}) | "
            f"{throughput.get('stop_reason')} | {'yes' if throughput.get('stop_reason') in CAP_REASONS else 'no'} |")
    return lines


def repeats_table(results: Path) -> list[str]:
    lines = ["## Per configuration: repeats through the pipeline", "", f"Run medians: {NO_INTERVAL}.", "",
             ("| configuration | N | run medians, samples/s [95 % CI] | median of run medians [min, max] | CV of run "
              f"medians | target CV <= {CV_TARGET:.0%} | stop reasons | exact peaks, NVML 50 ms (MiB) |"), "|" + "---|" * 8]
    for run_id, runs in sorted(load_runs(results).items()):
        stats = [s for _, s in runs if s is not None and s.samples_per_second is not None]
        if not stats:
            lines.append(f"| {run_id} | {len(runs)} | no steps.csv | | | | | |")
            continue
        aggregate = aggregate_repeats([s.samples_per_second for s in stats])  # type: ignore[misc]
        target = "-" if run_id not in GPU_BOUND or aggregate.cv is None else (
            "met" if aggregate.cv <= CV_TARGET else "missed")
        reasons = ", ".join(str((summary.get("throughput") or {}).get("stop_reason")) for summary, _ in runs)
        peaks = ", ".join(f"{(summary.get('nvml') or {}).get('peak_mib') or float('nan'):.0f}" for summary, _ in runs)
        lines.append(f"| {run_id} | {aggregate.n} | {'; '.join(_rate(s) for s in stats)} | "
                     f"{_spread(aggregate)} | {_pct(aggregate.cv)} | {target} | {reasons} | {peaks} |")
    return lines


def verdict_table(results: Path) -> list[str]:
    runs = {run_id: [s for _, s in entries if s is not None] for run_id, entries in load_runs(results).items()}
    lines = ["## Verdicts between configurations", "",
             ("Ratio = row / reference of steady samples/s; test and decision rule: zerosweep.report.statistics "
              "(two-sided, alpha 0.05; with >= 2 runs each side: Welch's t-test on the log run medians, the ratio's "
              "interval from the t interval of the mean log difference; a difference counts only when p < 0.05 and "
              "the interval excludes 1)."), "",
             "| row | reference | N row / ref | ratio [95 % CI] | ratio of | verdict | test, p |", "|" + "---|" * 7]
    for row, reference in PAIRS:
        if row not in runs or reference not in runs:
            continue
        verdict = compare_rows(runs[row], runs[reference])
        p = "" if verdict.p_value is None else f", p = {verdict.p_value:.3g}"
        lines.append(f"| {row} | {reference} | {verdict.n_row} / {verdict.n_reference} | {_ratio(verdict)} | "
                     f"{verdict.estimator} | {verdict.verdict} | {verdict.test}{p} |")
    return lines


def _cpu_percent(run_dir: Path) -> float | None:
    """Mean CPU % of the training process tree (psrecord, 5 s samples, first and last left out: start/stop)."""
    logs = matching_logs(run_dir / "monitor", CPU_LOG)
    if not logs:
        return None
    path = logs[0][0]
    fmt, _ = psrecord_format(path)
    values = [float(row[1]) for _, row in read_log(path, fmt).rows][1:-1]
    return float(np.mean(values)) if values else None


def diagnostics(results: Path) -> list[str]:
    """Where the spread comes from, per run, from steps.csv: the published figure (steady steps after the
    detected warm-up) beside every full step after the minimum warm-up."""
    lines = ["## Why the spread: per-step diagnostics", "",
             ("Candidate steps = full optimizer steps without an evaluation in their interval, after the minimum "
              f"warm-up ({WARMUP_STEPS} steps). p10/p50/p90: step-time percentiles over them; thirds: median "
              "samples/s of the first, middle and last third of them (drift within a run); all-candidates median: "
              "the median over every candidate step (no warm-up detection) with its interval "
              f"({NO_INTERVAL}); mean: the training's own steady figure (samples / seconds over "
              "the same steps, metrics.json); CPU: mean psrecord CPU % of the trainer's process tree (100 % = one "
              "core busy)."), "",
             ("| run | candidates | p10 / p50 / p90 step s | CV | thirds, samples/s | warm-up detected | published "
              "median | all-candidates median [95 % CI] | mean | CPU % |"), "|" + "---|" * 10]
    by_config: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(results.glob("runs/*/steps.csv")):
        run_dir = path.parent
        frame = read_steps(path)
        full = (~frame["eval_gap"]) & (frame["samples"] == frame["samples"].max()) & (frame["step"] > WARMUP_STEPS)
        seconds = frame.loc[full, "seconds"].to_numpy(dtype=float)
        per_step = int(frame["samples"].max())
        whole = median_interval(seconds)
        thirds = [per_step / float(np.median(part)) for part in np.array_split(seconds, 3)]
        stats = step_statistics(run_dir, WARMUP_STEPS)
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        mean = metrics.get("steady_samples_per_second")
        cpu = _cpu_percent(run_dir)
        config = split_repeat(run_dir.name)[0]
        by_config[config]["published"].append(float(stats.samples_per_second or 0) if stats else float("nan"))
        by_config[config]["all candidates"].append(per_step / whole.median)
        by_config[config]["mean"].append(float(mean) if mean is not None else float("nan"))
        low, high = (None, None) if whole.low is None or whole.high is None else (per_step / whole.high,
                                                                                   per_step / whole.low)
        lines.append(
            f"| {run_dir.name} | {len(seconds)} | {' / '.join(f'{np.percentile(seconds, q):.3f}' for q in (10, 50, 90))}"
            f" | {_pct(float(np.std(seconds, ddof=1) / np.mean(seconds)))} | {' / '.join(f'{t:.1f}' for t in thirds)} | "
            f"{stats.warmup_steps_detected if stats else '-'} | {_rate(stats)} | {interval_text(per_step / whole.median, low, high, 2)} | "
            f"{'-' if mean is None else f'{mean:.2f}'} | {'-' if cpu is None else f'{cpu:.0f}'} |")
    lines += ["", ("CV of the three run medians per configuration, by which steps make the run's figure "
              "(the published one is the first; the others are a sensitivity check, not a different result):"), "",
              "| configuration | published (detected warm-up) | all candidates (median) | training's mean |",
              "|---|---|---|---|"]
    for config, figures in sorted(by_config.items()):
        cells = [_pct(aggregate_repeats(values).cv) if np.all(np.isfinite(values)) else "-"
                 for values in (figures["published"], figures["all candidates"], figures["mean"])]
        lines.append(f"| {config} | {' | '.join(cells)} |")
    return lines


def load_conditions(directory: Path) -> dict[str, dict[str, list[StepStatistics]]]:
    """condition -> config -> [StepStatistics of each repeat, in repeat order]."""
    found: dict[str, dict[str, list[StepStatistics]]] = defaultdict(lambda: defaultdict(list))
    for steps in sorted(directory.glob("*/*/steps.csv")):
        condition, name = steps.parts[-3], steps.parts[-2]
        config = name.rsplit("-r", 1)[0]
        stats = step_statistics(steps.parent, WARMUP_STEPS)
        if stats is not None:
            found[condition][config].append(stats)
    return found


def ab_table(directory: Path, title: str, reference: str) -> list[str]:
    found = load_conditions(directory)
    lines = [f"## {title}", "", (f"Reference: `{reference}`. Ratio = condition / reference (samples/s); verdict and "
             "test as in zerosweep.report.statistics. Per repeat: the ratio within each interleaved round "
             "(descriptive, no test)."), "",
             f"Run medians: {NO_INTERVAL}.", "",
             ("| configuration | condition | N | run medians [95 % CI] | reference run medians | ratio [95 % CI] "
              "| ratio of | verdict | test, p | ratio per repeat |"), "|" + "---|" * 10]
    for condition in sorted(c for c in found if c != reference):
        for config, runs in sorted(found[condition].items()):
            base = found.get(reference, {}).get(config, [])
            verdict = compare_rows(runs, base)
            p = "" if verdict.p_value is None else f", p = {verdict.p_value:.3g}"
            per_round = ", ".join(f"{float(a.samples_per_second or 0) / float(b.samples_per_second or 1):.3f}"
                                  for a, b in zip(runs, base))
            lines.append(f"| {config} | {condition} | {len(runs)} | {'; '.join(_rate(s) for s in runs)} | "
                         f"{'; '.join(_rate(s) for s in base)} | {_ratio(verdict)} | {verdict.estimator} | "
                         f"{verdict.verdict} | {verdict.test}{p} | {per_round} |")
    return lines


def blocks_table(directory: Path, settle_seconds: float) -> list[str]:
    """Per blocks run (overhead_blocks.py): each condition against `plain` of the same cycle.

    A block's figure is the median samples/s of its steps that start `settle_seconds` after it starts and end
    before it ends (no evaluation gap, past the minimum warm-up). Per cycle, log(condition / plain); over the
    cycles a one-sample t interval (scipy.stats.ttest_1samp) on those logs: drift slower than a cycle cancels.
    """
    import pandas as pd
    from scipy import stats

    lines = ["## Monitors and logging_steps inside one run (alternating blocks)", "",
             (f"Per block: median samples/s of its steps from {settle_seconds:g} s after the switch to its end. Per "
              "cycle: ratio condition / `plain` of the same cycle. Ratio = geometric mean over cycles, 95 % CI and "
              "p from a one-sample t-test on the log ratios (scipy.stats.ttest_1samp)."), "",
             "| run | condition | cycles | steps per block (median) | ratio vs plain [95 % CI] | p | verdict | per cycle |",
             "|" + "---|" * 8]
    for blocks_csv in sorted(directory.glob("blocks/*/blocks.csv")):
        run_dir = blocks_csv.parent
        steps = read_steps(run_dir / "steps.csv")
        steps = steps[~steps["eval_gap"].astype(bool) & (steps["step"] > WARMUP_STEPS)]
        rate = steps["samples"] / steps["seconds"]
        blocks = pd.read_csv(blocks_csv)
        figures: dict[str, dict[int, float]] = defaultdict(dict)
        counts: dict[str, list[int]] = defaultdict(list)
        for block in blocks.itertuples():
            inside = (steps["wall_start"] >= block.wall_start + settle_seconds) & (steps["wall_end"] <= block.wall_end)
            if inside.sum() >= MIN_BLOCK_STEPS:
                figures[block.condition][block.cycle] = float(rate[inside].median())
                counts[block.condition].append(int(inside.sum()))
        plain = figures.get("plain", {})
        for condition in sorted(c for c in figures if c != "plain"):
            cycles = sorted(set(figures[condition]) & set(plain))
            logs = np.log([figures[condition][c] / plain[c] for c in cycles])
            if len(logs) < 2:
                lines.append(f"| {run_dir.name} | {condition} | {len(logs)} | | too few cycles | | | |")
                continue
            test = stats.ttest_1samp(logs, 0.0)
            interval = test.confidence_interval(0.95)
            low, high = float(np.exp(interval.low)), float(np.exp(interval.high))
            verdict = "within noise" if low <= 1.0 <= high else ("slower" if high < 1.0 else "faster")
            lines.append(f"| {run_dir.name} | {condition} | {len(logs)} | {int(np.median(counts[condition]))} | "
                         f"{interval_text(float(np.exp(logs.mean())), low, high, 3)} | {test.pvalue:.3g} | {verdict} | "
                         f"{', '.join(f'{x:.3f}' for x in np.exp(logs))} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", type=Path)
    parser.add_argument("--fidelity", type=Path)
    parser.add_argument("--overhead", type=Path)
    parser.add_argument("--blocks", type=Path, help="run_method.sh blocks' blocks.tgz unpacked")
    parser.add_argument("--settle-seconds", type=float, default=2.0, help="--blocks: left out after each switch")
    parser.add_argument("--out", type=Path, help="Markdown file to write (default: stdout)")
    args = parser.parse_args()
    lines: list[str] = []
    if args.pipeline:
        lines += repeats_table(args.pipeline) + [""] + runs_table(args.pipeline) + [""]
        lines += verdict_table(args.pipeline) + [""] + diagnostics(args.pipeline) + [""]
    if args.fidelity:
        lines += ab_table(args.fidelity, "Pipeline vs bare Trainer", "bare") + [""]
    if args.overhead:
        lines += ab_table(args.overhead, "Monitors and logging_steps (bare Trainer)", "plain") + [""]
    if args.blocks:
        lines += blocks_table(args.blocks, args.settle_seconds) + [""]
    text = "\n".join(lines)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
