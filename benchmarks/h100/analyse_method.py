"""The issue-12 targets from the device session's files, as Markdown (statistics: zerosweep.report.statistics).

    python benchmarks/h100/analyse_method.py --pipeline DIR/results --fidelity DIR/fidelity --overhead DIR/overhead

--pipeline: a results/ directory of run_pipeline.sh with EXTRA_CONFIG=benchmarks/h100/method_overrides.yaml
  (records.tgz unpacked): each configuration's runs, median steady samples/s with its 95 % interval per run,
  the median of the run medians, min-max, CV of the run medians (target <= 3 % for ZeRO 0-3 without offload),
  and how each run stopped.
--fidelity / --overhead: run_method.sh's <kind>.tgz unpacked: per configuration, condition against reference
  (bare Trainer; plain), the ratio with its 95 % interval and the verdict.
Any of the three may be left out.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from zerosweep.report.compare import load_runs
from zerosweep.report.statistics import StepStatistics, aggregate_repeats, compare_rows
from zerosweep.report.throughput import step_statistics

GPU_BOUND = ("base-g1n1", "z0-offnone-nopin-g1n1", "z1-offnone-nopin-g1n1", "z2-offnone-nopin-g1n1",
             "z3-offnone-nopin-g1n1")
WARMUP_STEPS = 2  # the shipped training.warmup_steps, the minimum warm-up


def _rate(stats: StepStatistics | None) -> str:
    if stats is None or stats.samples_per_second is None:
        return "-"
    if stats.samples_per_second_ci_low is None or stats.samples_per_second_ci_high is None:
        return f"{stats.samples_per_second:.2f} (no CI)"
    return f"{stats.samples_per_second:.2f} [{stats.samples_per_second_ci_low:.2f}, {stats.samples_per_second_ci_high:.2f}]"


def repeats_table(results: Path) -> list[str]:
    lines = ["## Repeats through the pipeline", "",
             ("| configuration | N | run medians, samples/s [95 % CI] | median of medians | min-max | CV of medians "
             "| steady steps | warm-up detected | stop reasons |"), "|" + "---|" * 9]
    for run_id, runs in sorted(load_runs(results).items()):
        stats = [s for _, s in runs if s is not None and s.samples_per_second is not None]
        if not stats:
            lines.append(f"| {run_id} | {len(runs)} | no steps.csv | | | | | | |")
            continue
        aggregate = aggregate_repeats([s.samples_per_second for s in stats])  # type: ignore[misc]
        cv = "-" if aggregate.cv is None else f"{aggregate.cv:.1%}"
        target = " (target <= 3 %)" if run_id in GPU_BOUND else ""
        reasons = ", ".join(str((summary.get("throughput") or {}).get("stop_reason")) for summary, _ in runs)
        lines.append(f"| {run_id} | {aggregate.n} | {'; '.join(_rate(s) for s in stats)} | {aggregate.median:.2f} | "
                     f"{aggregate.low:.2f}-{aggregate.high:.2f} | {cv}{target} | "
                     f"{', '.join(str(s.steady_steps) for s in stats)} | "
                     f"{', '.join(str(s.warmup_steps_detected) for s in stats)} | {reasons} |")
    return lines


def load_conditions(directory: Path) -> dict[str, dict[str, list[StepStatistics]]]:
    """condition -> config -> [StepStatistics of each repeat]."""
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
    lines = [f"## {title}", "", f"Reference: `{reference}`. Ratio = condition / reference (samples/s).", "",
             ("| configuration | condition | N | run medians [95 % CI] | reference run medians | ratio [95 % CI] "
             "| verdict | test, p |"), "|" + "---|" * 8]
    for condition in sorted(c for c in found if c != reference):
        for config, runs in sorted(found[condition].items()):
            base = found.get(reference, {}).get(config, [])
            verdict = compare_rows(runs, base)
            ratio = "-" if verdict.ratio is None else (
                f"{verdict.ratio:.3f}" + ("" if verdict.ratio_low is None or verdict.ratio_high is None
                                          else f" [{verdict.ratio_low:.3f}, {verdict.ratio_high:.3f}]"))
            p = "" if verdict.p_value is None else f", p = {verdict.p_value:.3g}"
            lines.append(f"| {config} | {condition} | {len(runs)} | {'; '.join(_rate(s) for s in runs)} | "
                         f"{'; '.join(_rate(s) for s in base)} | {ratio} | {verdict.verdict} | {verdict.test}{p} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", type=Path)
    parser.add_argument("--fidelity", type=Path)
    parser.add_argument("--overhead", type=Path)
    args = parser.parse_args()
    lines: list[str] = []
    if args.pipeline:
        lines += repeats_table(args.pipeline) + [""]
    if args.fidelity:
        lines += ab_table(args.fidelity, "Pipeline vs bare Trainer", "bare") + [""]
    if args.overhead:
        lines += ab_table(args.overhead, "Monitors and logging_steps (bare Trainer)", "plain") + [""]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
