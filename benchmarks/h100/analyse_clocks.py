"""Is the GPU's clock what moves the throughput? Every run with a clocks log (monitor/gpu_clocks_<host>.csv,
written by the NVML sampler since 2026-11-25) and a steps.csv, as Markdown.

    python benchmarks/h100/analyse_clocks.py RUN_DIR_OR_RESULTS [...] [--out FILE]

Each argument is a run directory or a directory holding run directories (results/runs, a fidelity/pipeline
folder). Per run: steady samples/s (median, with the run's own minimum warm-up, as the tables take it), the SM clock over the training steps
(median, min), power, temperature, NVML's clock event reasons (share of samples), and the Spearman rank
correlation between each step's time and its nearest SM clock sample (scipy), which is undefined when the
clock never moved.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from zerosweep.jsonio import read_json
from zerosweep.report.interval_text import interval_text
from zerosweep.report.run_summary.gpu_clocks import step_clocks, summarise_clocks
from zerosweep.report.run_summary.logs import CLOCKS_LOG, matching_logs
from zerosweep.report.run_summary.throughput import step_statistics


def run_dirs(paths: list[Path]) -> list[Path]:
    found = []
    for path in paths:
        candidates = [path] if (path / "steps.csv").is_file() else sorted(p for p in path.iterdir() if p.is_dir())
        found += [run for run in candidates
                  if (run / "steps.csv").is_file() and matching_logs(run / "monitor", CLOCKS_LOG)]
    return found


def row(run: Path) -> str:
    from scipy import stats as scipy_stats

    warnings: list[str] = []
    clocks = summarise_clocks(run, warnings)
    spec = read_json(run / "run_spec.json")  # the run's own minimum warm-up, as the tables take it
    steps = step_statistics(run, int(spec["training"]["warmup_steps"]))
    if clocks is None or steps is None:
        return f"| {run.name} | - | no clock samples in the training window | | | | | |"
    gpu = clocks["gpus"][0]
    per_step = step_clocks(run)
    if per_step["sm_clock_mhz"].nunique() > 1:
        rho, p = scipy_stats.spearmanr(per_step["seconds"], per_step["sm_clock_mhz"])
        correlation = f"{rho:+.2f} (p = {p:.2g})"
    else:
        correlation = "undefined: one clock value"
    reasons = ", ".join(f"{name} {share:.0%}" for name, share in gpu["clock_event_reasons"].items()) or "none"
    return (f"| {run.parent.name}/{run.name} | {steps.samples_per_second:.2f} | "
            f"{interval_text(gpu['sm_clock_mhz_median'], gpu['sm_clock_mhz_min'], gpu['sm_clock_mhz_max'], 0)} | "
            f"{gpu['samples']} | "
            f"{gpu['power_w_median']:.0f} | {gpu['temperature_c_max']:.0f} | {reasons} | {correlation} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", type=Path, nargs="+")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    runs = run_dirs(args.paths)
    lines = [("| run | steady samples/s | SM clock MHz, median [min, max] | clock samples | power W, median | "
              "max °C | clock event reasons (share of samples) | Spearman: step time vs SM clock |"),
             "|" + "---|" * 8]
    lines += [row(run) for run in runs]
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
