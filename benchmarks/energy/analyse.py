"""Energy and busy fraction of the workshop's nine single-GPU configurations on one GPU (issue 25), from the
records that benchmarks/energy/run_h200.sh returns (records_energy.tgz, extracted), e.g. the H100's:

    mkdir -p /tmp/energy && tar xzf benchmarks/energy/data/records_energy_h100.tgz -C /tmp/energy
    PYTHONPATH=scripts python benchmarks/energy/analyse.py --results /tmp/energy/results \
        --out benchmarks/energy/h100/analysis.md

Every figure is the run's summary.json as the pipeline wrote it (report/run_summary: energy, gpu_busy,
throughput); this script only puts them side by side and adds the counter-vs-integral difference, which is the
issue's check (the power integral is a cross-check of the counter, never in its place).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd
from zerosweep.jsonio import read_json
from zerosweep.report.run_summary.energy import run_energy
from zerosweep.report.run_summary.throughput import run_throughput

MIN_WINDOW_S = 30.0  # the window for the counter-vs-integral check


def _difference(counter: float | None, integral: float | None) -> float | None:
    """(integral - counter) / counter, in %: how far the power samples' trapezoid lies from the counter."""
    if counter is None or integral is None or counter <= 0:
        return None
    return 100.0 * (integral - counter) / counter


def run_row(summary: dict[str, Any]) -> dict[str, Any]:
    energy = summary.get("energy") or {}
    steady, training = energy.get("steady") or {}, energy.get("training") or {}
    busy = summary.get("gpu_busy") or {}
    section = summary.get("throughput") or {}
    figures = run_energy(summary)
    rate = run_throughput(summary, None)
    return {
        "run": summary["run_id"],
        "configuration": summary["label"],
        "status": summary["status"],
        "steady samples/s": rate.samples_per_second,
        "step time CV (%)": None if section.get("step_seconds_cv") is None else 100.0 * section["step_seconds_cv"],
        "steady window (s)": steady.get("seconds"),
        "counter, steady (J)": steady.get("gpu_energy_j"),
        "integral, steady (J)": steady.get("power_integral_j"),
        "integral vs counter, steady (%)": _difference(steady.get("gpu_energy_j"), steady.get("power_integral_j")),
        "training window (s)": training.get("seconds"),
        "counter, training (J)": training.get("gpu_energy_j"),
        "integral, training (J)": training.get("power_integral_j"),
        "integral vs counter, training (%)": _difference(training.get("gpu_energy_j"),
                                                          training.get("power_integral_j")),
        "mean power (W)": figures.gpu_mean_power_w,
        "J/sample": figures.gpu_j_per_sample,
        "CPU package (J, steady)": figures.cpu_package_energy_j,
        "busy fraction": busy.get("busy_fraction"),
        "host-bound": busy.get("host_bound"),
        "energy problem": figures.problem,
        "busy problem": busy.get("busy_problem"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, required=True, help="an extracted records_energy.tgz's results/")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    summaries = [read_json(path) for path in sorted((args.results / "runs").glob("*/summary.json"))]
    gpus = sorted({str((summary.get("setup") or {}).get("gpu_name")) for summary in summaries})
    rows = [run_row(summary) for summary in summaries]
    frame = pd.DataFrame(rows)
    lines = [f"# Energy and busy fraction of the workshop's single-GPU configurations on one {', '.join(gpus)}", ""]
    lines.append(frame.to_markdown(index=False, floatfmt=".3g"))
    checked = frame[frame["training window (s)"] >= MIN_WINDOW_S]
    for window in ("steady", "training"):
        column = f"integral vs counter, {window} (%)"
        long_enough = frame[frame[f"{window} window (s)"] >= MIN_WINDOW_S][column].dropna()
        if len(long_enough):
            lines += ["", (f"- {window} windows of >= {MIN_WINDOW_S:.0f} s: {len(long_enough)} runs, integral vs counter "
                           f"from {long_enough.min():+.2f} % to {long_enough.max():+.2f} % "
                           f"(largest |difference| {long_enough.abs().max():.2f} %)")]
        every = frame[column].dropna()
        if len(every):
            lines += ["", (f"- {window} windows of any length: {len(every)} runs, integral vs counter from "
                           f"{every.min():+.2f} % to {every.max():+.2f} % (shortest window "
                           f"{frame[f'{window} window (s)'].min():.1f} s)")]
    lines += ["", f"Runs with a training window of >= {MIN_WINDOW_S:.0f} s: {len(checked)} of {len(frame)}."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
