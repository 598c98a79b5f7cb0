"""`tune-probe` (one probe run's outcome, the checkpoint the search reads), `tune-search` (one point's boundary),
`tune-screen` (every point's probe at the screen micro-batch, ranked) and `tune-budget` (the largest micro-batch of
one configuration within a memory budget).

The outcome of a run is its status (ok / oom), its per-device peak (report/run_summary/run_peak.run_peak: on a GPU the exact
NVML peak of the fullest GPU, else nvidia-smi's, else torch's reserved peak; on CPU ranks the largest rank's
resident peak), its throughput (report/run_summary/throughput.run_throughput: samples/s, TFLOP/s and MFU from one
estimator, named) and its GPU energy per sample (report/run_summary/energy.run_energy), from the run's summary.json.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...jsonio import read_json, write_json
from ...plan.matrix import MatrixPoint
from ...plan.tune.search import BudgetSearch, Screen, screen_reference
from ...plan.tune.studies import boundary
from ..run_summary.energy import run_energy
from ..run_summary.run_peak import run_peak
from ..run_summary.throughput import run_throughput


def point_id(point: Mapping[str, Any]) -> str:
    return MatrixPoint.from_dict(point).point_id


def gpu_total_mib(summary: Mapping[str, Any]) -> float | None:
    """The memory of the run's smallest GPU (nvidia-smi's memory.total of its own GPUs); None without a GPU log."""
    totals = [float(gpu["total_mib"]) for gpu in (summary.get("gpu") or {}).get("gpus", [])
              if gpu.get("total_mib") is not None]
    return min(totals) if totals else None


def run_outcome(summary: Mapping[str, Any]) -> dict[str, Any]:
    setup = summary["setup"]
    peak = run_peak(summary)
    rate = run_throughput(summary, None)  # the peak looked up from the GPU's model name and the run's precision
    energy = run_energy(summary)
    point = summary["point"]
    micro_batch = int(setup["per_device_batch_size"])
    return {
        "run_id": summary["run_id"],
        "point_id": point_id(point),
        "label": summary["label"],
        "status": summary["status"],
        "device": setup["device"],
        "micro_batch": micro_batch,
        "gradient_accumulation_steps": setup["gradient_accumulation_steps"],
        "global_batch_size": micro_batch * int(setup["gradient_accumulation_steps"]) * int(point["world_size"]),
        "world_size": point["world_size"],
        "peak_mib": None if peak is None else peak.mib,
        "peak_source": None if peak is None else peak.name,
        "samples_per_second": rate.samples_per_second,
        "samples_per_second_low": rate.samples_per_second_low,
        "samples_per_second_high": rate.samples_per_second_high,
        "throughput_estimator": rate.estimator,
        "tflops_per_gpu": rate.tflops_per_gpu,
        "mfu": rate.mfu,
        "gpu_total_mib": gpu_total_mib(summary),
        "gpu_j_per_sample": energy.gpu_j_per_sample,  # over the steady steps (report/run_summary/energy)
        "gpu_mean_power_w": energy.gpu_mean_power_w,
        "gpu_energy_problem": energy.problem,
    }


def search_record(study: Mapping[str, Any], point: str, probes: Sequence[Mapping[str, Any]],
                  start: int | None = None, gallop: bool = False) -> dict[str, Any]:
    """The finished search of one point: every probe's outcome and the exact boundary. `start`/`gallop`: where
    and how the search began (the study's start and doubling unless the memory model guessed a start)."""
    tune = study["tune"]
    start = int(tune["start_micro_batch"]) if start is None else start
    foreign = [probe["run_id"] for probe in probes if probe["point_id"] != point]
    if foreign:
        raise ValueError(f"search {point}: probes of another point given: {foreign}")
    outcomes = {int(probe["micro_batch"]): str(probe["status"]) for probe in probes}
    found = boundary(outcomes, start, int(tune["max_micro_batch"]), gallop)
    if found.max_fit is None:
        raise ValueError(f"search {point}: probes {outcomes} do not finish the search; the workflow gives them all")
    return {
        "study": study["name"], "point_id": point, "label": study["points"][point]["label"],
        "start_micro_batch": start, "started_from_model": gallop, "max_micro_batch": tune["max_micro_batch"],
        "max_fit": found.max_fit, "first_oom": found.first_oom, "capped": found.capped,
        "consistent": found.consistent,
        "probes": sorted(probes, key=lambda probe: probe["micro_batch"]),
    }


def screen_record(study: Mapping[str, Any], probes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The screen: each point's probe at the screen micro-batch, the ranking and the points searched."""
    tune = study["tune"]
    wrong = [probe["run_id"] for probe in probes if int(probe["micro_batch"]) != int(tune["screen_micro_batch"])]
    if wrong:
        raise ValueError(f"screen of {study['name']}: probes not at micro-batch {tune['screen_micro_batch']}: {wrong}")
    found = Screen.of(int(tune["screen_micro_batch"]), probes, int(tune["screen_keep"]), screen_reference(study))
    return {"study": study["name"], "micro_batch": found.micro_batch, "keep": tune["screen_keep"],
            "reference": screen_reference(study),
            "ranking": list(found.ranking), "kept": list(found.kept),
            "probes": sorted(probes, key=lambda probe: found.ranking.index(probe["point_id"]))}


def budget_record(study: Mapping[str, Any], search: Mapping[str, Any],
                  probes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One budget's search (plan/tune/search.budget_search decides the configuration and the start)."""
    found = BudgetSearch(float(search["budget_gib"]), str(search["mode"]), search["point_id"], search["start"],
                         search["upper"], str(search["basis"]), tuple(probes))
    foreign = [probe["run_id"] for probe in probes if probe["point_id"] != found.point_id]
    if foreign:
        raise ValueError(f"budget {found.budget_gib:g} GiB: probes of another point than {found.point_id}: {foreign}")
    point = study["points"].get(found.point_id or "", {})
    return {"study": study["name"], **found.to_dict(), "label": point.get("label"),
            "max_within": found.max_within if found.point_id else None, "exact": found.exact,
            "probes": sorted(probes, key=lambda probe: probe["micro_batch"])}


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--out", type=Path, required=True, help="JSON to write")
    if command == "tune-probe":
        parser.add_argument("--summary", type=Path, required=True, help="the probe run's summary.json")
        return
    parser.add_argument("--study-json", required=True, help="the tune study (rules/common.smk: tune_study_json)")
    if command == "tune-screen":
        parser.add_argument("probes", nargs="+", type=Path, help="the screen probes' outcome files (tune-probe)")
    elif command == "tune-budget":
        parser.add_argument("--search-json", required=True, help="the budget search (plan/tune/search.BudgetSearch)")
        parser.add_argument("probes", nargs="*", type=Path, help="its probes' outcome files (tune-probe)")
    else:
        parser.add_argument("--point", required=True, help="the matrix point searched")
        parser.add_argument("--start", type=int, default=None, help="first micro-batch (default: the study's)")
        parser.add_argument("--gallop", action="store_true", help="the start is the memory model's guess")
        parser.add_argument("probes", nargs="+", type=Path, help="probe outcome files (tune-probe)")


def run(args: argparse.Namespace) -> int:
    if args.command == "tune-probe":
        outcome = run_outcome(read_json(args.summary))
        write_json(args.out, outcome)
        print(f"{outcome['run_id']}: {outcome['status']} at micro-batch {outcome['micro_batch']}, "
              f"peak {outcome['peak_mib']} MiB ({outcome['peak_source']})")
        return 0
    study = json.loads(args.study_json)
    probes = [read_json(path) for path in args.probes]
    if args.command == "tune-screen":
        record = screen_record(study, probes)
        write_json(args.out, record)
        print(f"screen at micro-batch {record['micro_batch']}: ranking {record['ranking']}; searched {record['kept']}")
        return 0
    if args.command == "tune-budget":
        record = budget_record(study, json.loads(args.search_json), probes)
        write_json(args.out, record)
        print(f"budget {record['budget_gib']:g} GiB: {record['point_id']} up to micro-batch {record['max_within']}"
              f"{' (exact)' if record['exact'] else ''}: {record['basis']}")
        return 0
    record = search_record(study, args.point, probes, args.start, args.gallop)
    write_json(args.out, record)
    print(f"{args.point}: largest micro-batch that fits {record['max_fit']}"
          f"{' (search cap)' if record['capped'] else ''}; first OOM {record['first_oom']}")
    return 0
