"""The lever tune's state from its records (benchmarks/levers/tune/data/records.tgz, extracted): every probe,
the screen's ranking, each searched point's boundary (or how far its search got), the device seconds.

    mkdir -p /tmp/levertune && tar xzf benchmarks/levers/tune/data/records.tgz -C /tmp/levertune
    PYTHONPATH=scripts python benchmarks/levers/tune/analyse.py --results /tmp/levertune/results \
        --timing benchmarks/levers/tune/data/timing_call*.txt --out benchmarks/levers/tune/h200/analysis.md

Probe figures come from the package's own outcome (report/tune/tune_records.run_outcome over each run's
summary.json) and the search from its replay (plan/tune/search), as the workflow computes them.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from zerosweep.jsonio import read_json
from zerosweep.plan.matrix import build_plan, deep_merge
from zerosweep.plan.tune.search import replay, screen
from zerosweep.plan.tune.studies import build_tune_studies
from zerosweep.report.run_summary.memory import summarise_run
from zerosweep.report.tune.tune_records import run_outcome
from zerosweep.run.modeling import model_size

CONFIGS = ("workflow_config.yaml", "studies/tune_levers.yaml", "benchmarks/levers/tune/h200_tune_levers.yaml")


def outcomes(results: Path) -> dict[str, dict[str, Any]]:
    """Each finished probe's outcome, re-derived from its run's records with this checkout's code."""
    found = {}
    for probe in sorted((results / "tune" / "probes").glob("*.json")):
        run_dir = results / "runs" / probe.stem
        outcome = run_outcome(summarise_run(run_dir))
        outcome["duration_s"] = read_json(run_dir / "status.json")["duration_s"]
        outcome["steady_steps"] = read_json(run_dir / "metrics.json").get("steady_steps")
        found[probe.stem] = outcome
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--timing", type=Path, nargs="+", default=[])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    config: dict[str, Any] = {}
    for path in CONFIGS:
        config = deep_merge(config, yaml.safe_load(Path(path).read_text(encoding="utf-8")))
    study = build_tune_studies(config, build_plan(config))["tune_levers"]
    probes = outcomes(args.results)
    size = lambda: model_size(study.to_dict()["settings"]["model"])  # noqa: E731
    lines = ["# Lever tune on one H200: the state of the search", ""]

    rows = [{"probe": run_id, "configuration": p["label"], "micro-batch": p["micro_batch"], "outcome": p["status"],
             "peak (MiB)": p["peak_mib"], "steady steps": p["steady_steps"],
             "samples/s (probe)": p["samples_per_second"], "MFU (%)": None if p["mfu"] is None else 100 * p["mfu"],
             "job (s)": p["duration_s"]} for run_id, p in probes.items()]
    lines += ["## Every finished probe", "", pd.DataFrame(rows).to_markdown(index=False, floatfmt=".1f"), ""]

    screened = screen(study, probes.__getitem__)
    lines += ["## Screen at micro-batch " + str(screened.micro_batch), "",
              f"ranking: {', '.join(screened.ranking)}; searched: {', '.join(screened.kept)}", ""]
    for point in screened.kept:
        try:
            found = replay(study, point, probes.__getitem__, size)
            lines.append(f"- {point}: started at {found.start} ({'memory model guess' if found.gallop else 'study'}), "
                         f"probes {found.outcomes}: largest fit {found.boundary.max_fit}, first OOM "
                         f"{found.boundary.first_oom}")
        except KeyError as missing:
            lines.append(f"- {point}: unfinished, waiting for probe {missing}")
    seconds = [dict(re.findall(r"(\w+)=([\d.]+)", path.read_text(encoding="utf-8"))) for path in args.timing]
    device_s = sum(float(t["setup_s"]) + float(t["pipeline_s"]) for t in seconds)
    jobs_s = sum(float(p["duration_s"]) for p in probes.values())
    lines += ["", f"Device calls: {len(seconds)}, setup + pipeline {device_s:.0f} s; finished probe jobs "
              f"{jobs_s:.0f} s ({len(probes)} probes).", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
