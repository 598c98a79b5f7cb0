"""Issue 23's comparison from one results/ tree (benchmarks/tune/run_in_process.sh writes $OUT/compare.md with
it): each configuration's boundary and cost by both search modes, and the in-process peaks beside the ordinary
runs' NVML peaks at the same micro-batches (the two measures the budget searches and the memory model mix).
Usage: python benchmarks/tune/compare_modes.py [results_dir]"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def searches(results: Path, study: str) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted((results / "tune" / study / "search").glob("*.json"))}


def main(results: Path) -> None:
    fast, reference = searches(results, "tune_cmp_in_process"), searches(results, "tune_cmp_separate")
    print("| point | in-process boundary | found by | probes (in-process + ordinary) | device-s | "
          "separate-process boundary | probes | device-s | same |")
    print("|---|---|---|---|---|---|---|---|---|")
    for point in sorted(set(fast) | set(reference)):
        a, b = fast.get(point, {}), reference.get(point, {})
        print(f"| {point} | {a.get('max_fit')} (OOM {a.get('first_oom')}) | {a.get('boundary_found_by')} | "
              f"{a.get('probes_in_process')} + {a.get('probes_separate_process')} | {a.get('device_seconds')} | "
              f"{b.get('max_fit')} (OOM {b.get('first_oom')}) | {b.get('probes_separate_process')} | "
              f"{b.get('device_seconds')} | {bool(a and b and a['max_fit'] == b['max_fit'])} |")
    for name, found in (("in-process", fast), ("separate-process", reference)):
        seconds = [search["device_seconds"] for search in found.values()]
        if seconds and None not in seconds:
            print(f"\n{name}: {sum(seconds):.0f} device-s over {len(seconds)} configurations, "
                  f"{sum(seconds) / len(seconds) / 60:.2f} GPU-min each (measurements apart)")
    # the same micro-batch fit in process and in an ordinary run: how far apart the two peaks are
    ordinary = {(probe["point_id"], probe["micro_batch"]): probe for search in [*fast.values(), *reference.values()]
                for probe in search["probes"] if probe["search_mode"] == "separate_process" and probe["status"] == "ok"}
    rows = [(probe, ordinary[(probe["point_id"], probe["micro_batch"])]) for search in fast.values()
            for probe in search["probes"] if probe["search_mode"] == "in_process"
            and (probe["point_id"], probe["micro_batch"]) in ordinary]
    print("\n| point | micro-batch | in-process peak MiB | ordinary run's peak MiB (source) | in-process / ordinary |")
    print("|---|---|---|---|---|")
    for fit, run in rows:
        ratio = fit["peak_mib"] / run["peak_mib"] if fit["peak_mib"] and run["peak_mib"] else None
        print(f"| {fit['point_id']} | {fit['micro_batch']} | {fit['peak_mib']:.0f} | {run['peak_mib']:.0f} "
              f"({run.get('peak_source')}) | {'' if ratio is None else f'{ratio:.3f}'} |")
    if not rows:
        print("| (no micro-batch fit both in process and in an ordinary run) | | | | |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "results"))
