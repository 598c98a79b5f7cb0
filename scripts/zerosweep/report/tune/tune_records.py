"""`tune-probe` (one probe run's outcome, the checkpoint the search reads), `tune-in-process` (a point's in-process
search job: its probes, tune.search_mode in_process), `tune-search` (one point's boundary), `tune-screen` (every
point's probe at the screen micro-batch, ranked) and `tune-budget` (the largest micro-batch of one configuration
within a memory budget).

The outcome of a run is its status (ok / oom), its per-device peak (report/run_summary/run_peak.run_peak: on a GPU the exact
NVML peak of the fullest GPU, else nvidia-smi's, else torch's reserved peak; on CPU ranks the largest rank's
resident peak), its throughput (report/run_summary/throughput.run_throughput: samples/s, TFLOP/s and MFU from one
estimator, named) and its GPU energy per sample (report/run_summary/energy.run_energy), from the run's summary.json;
its cost is the job's wall time x its devices (`device_seconds`). An in-process probe has the same fields, with
its own peak (run/in_process.DeviceMemory), its median step's samples/s (by the ordinary run's rule), its evidence
(exception, the allocator's state before and after) and `search_mode` in_process; its job's cost is the point's.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...jsonio import read_json, write_json
from ...plan.matrix import MatrixPoint
from ...plan.tune.search import BudgetSearch, Screen, in_process_doubts, in_process_trusted, screen_reference
from ...plan.tune.studies import IN_PROCESS, IN_PROCESS_SEARCH, SEPARATE_PROCESS, boundary
from ..run_summary.energy import run_energy
from ..run_summary.run_peak import run_peak
from ..run_summary.throughput import MEDIAN_STEP, run_throughput
from ..statistics import StepStatistics, summarise_step_times


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
        "search_mode": SEPARATE_PROCESS,
        "job_seconds": summary.get("job_seconds"),
        "device_seconds": device_seconds(summary.get("job_seconds"), int(point["world_size"])),
    }


def device_seconds(job_seconds: float | None, world_size: int) -> float | None:
    """What a job costs: its wall time x its devices (GPUs; ranks on CPU)."""
    return None if job_seconds is None else float(job_seconds) * world_size


def in_process_throughput(step_seconds: list[float], samples_per_step: int, warmup_steps: int) -> StepStatistics:
    """An in-process probe's throughput by the ordinary run's rule (report/statistics.summarise_step_times: the
    same warm-up rule, median step and interval); its steps have no evaluation between them."""
    count = len(step_seconds)
    return summarise_step_times(range(1, count + 1), step_seconds, [samples_per_step] * count, [False] * count,
                                warmup_steps)


def in_process_rate(probe: Mapping[str, Any], samples_per_step: int, warmup_steps: int, fit: bool) -> dict[str, Any]:
    """The rate fields of an in-process probe (run_outcome's names); none for a probe that did not fit."""
    statistics = in_process_throughput(probe["step_seconds"], samples_per_step, warmup_steps) if fit else None
    rate = None if statistics is None else statistics.samples_per_second
    return {"samples_per_second": rate,
            "samples_per_second_low": None if statistics is None else statistics.samples_per_second_ci_low,
            "samples_per_second_high": None if statistics is None else statistics.samples_per_second_ci_high,
            "throughput_estimator": None if rate is None else MEDIAN_STEP, "tflops_per_gpu": None, "mfu": None}


def in_process_record(run_dir: Path) -> dict[str, Any]:
    """A point's in-process search job (run/in_process.py) as the replay reads it: its probes with the fields of
    run_outcome, the outcomes it started from, the device's memory, its cost and why it stopped early."""
    spec = read_json(run_dir / "run_spec.json", what="the launcher writes it")
    metrics = read_json(run_dir / "metrics.json", what="the launcher writes it")
    if metrics.get("status") != "ok" or not metrics.get(IN_PROCESS_SEARCH):
        raise ValueError(f"{run_dir}: the in-process search job did not finish (status {metrics.get('status')!r}: "
                         f"{metrics.get('error')})")
    job = (read_json(run_dir / "status.json", what="the launcher writes it")).get("duration_s")
    found = metrics[IN_PROCESS_SEARCH]
    point = spec["point"]
    world = int(point["world_size"])
    grad_accum = int(spec["training"]["gradient_accumulation_steps"])
    warmup = int(spec["training"].get("warmup_steps", 0))
    probes = []
    for probe in found["probes"]:
        micro_batch = int(probe["micro_batch"])
        fit = probe["status"] == "ok"
        probes.append({
            "run_id": probe["run_id"], "point_id": point_id(point), "label": metrics["label"],
            "status": probe["status"], "device": spec["runtime"]["device"], "micro_batch": micro_batch,
            "gradient_accumulation_steps": grad_accum, "global_batch_size": micro_batch * grad_accum * world,
            "world_size": world, "peak_mib": probe["peak_mib"], "peak_source": probe["peak_source"],
            **in_process_rate(probe, micro_batch * grad_accum * world, warmup, fit),
            "gpu_total_mib": found["device_total_mib"], "gpu_j_per_sample": None, "gpu_mean_power_w": None,
            "gpu_energy_problem": "an in-process probe has no energy record of its own",
            "search_mode": IN_PROCESS, "job_seconds": None, "device_seconds": None,  # the job's: the point's cost
            # the evidence: how it ended, and the allocator before and after
            "outcome": probe["outcome"], "error_type": probe["error_type"], "error": probe["error"],
            "allocator_before": probe["allocator_before"], "allocator_after": probe["allocator_after"],
            "step_seconds": probe["step_seconds"], "probe_seconds": probe["seconds"],
        })
    return {"run_id": spec["run_id"], "point_id": point_id(point), "label": metrics["label"],
            "known": found["known"], "probes": probes, "device_total_mib": found["device_total_mib"],
            "stopped": found["stopped"], "job_seconds": job, "device_seconds": device_seconds(job, world)}


def probes_of(records: Sequence[Mapping[str, Any]], run_ids: Sequence[str]) -> list[Mapping[str, Any]]:
    """The probes `run_ids` name, in that order, from probe outcomes (tune-probe) and in-process records
    (tune-in-process; only the probes whose in-process outcome stands: plan/tune/search.in_process_trusted).
    Where both hold a run id, the ordinary run's stands: the workflow gives its file only where the replay took it
    (plan/tune/search.replay witnesses the boundary's fit with it)."""
    found: dict[str, Mapping[str, Any]] = {}
    for record in records:
        if "probes" in record:
            found.update(in_process_trusted(record))
    found.update({str(record["run_id"]): record for record in records if "probes" not in record})
    missing = [run_id for run_id in run_ids if run_id not in found]
    if missing:
        raise ValueError(f"no outcome given for probes {missing}")
    return [found[run_id] for run_id in run_ids]


def search_cost(probes: Sequence[Mapping[str, Any]], jobs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A search's cost: its probes in each mode and the device-seconds of its jobs (every ordinary probe run's
    and its in-process job's); None where a job's time is unknown (records from before it was kept)."""
    costs = [probe["device_seconds"] for probe in probes if probe["search_mode"] == SEPARATE_PROCESS]
    costs += [job["device_seconds"] for job in jobs]
    return {"probes_in_process": sum(probe["search_mode"] == IN_PROCESS for probe in probes),
            "probes_separate_process": sum(probe["search_mode"] == SEPARATE_PROCESS for probe in probes),
            "device_seconds": None if any(cost is None for cost in costs) else float(sum(costs))}


def found_by(probes: Sequence[Mapping[str, Any]], max_fit: int, first_oom: int | None) -> str:
    """Which mode witnessed the boundary: the largest fit and the first OOM, each from the probe that ran it."""
    modes = sorted({str(probe["search_mode"]) for probe in probes if int(probe["micro_batch"]) in (max_fit, first_oom)})
    return " + ".join(modes) if modes else "nothing probed"


def search_record(study: Mapping[str, Any], point: str, probes: Sequence[Mapping[str, Any]],
                  start: int | None = None, gallop: bool = False,
                  in_process: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The finished search of one point: every probe's outcome and the exact boundary. `start`/`gallop`: where
    and how the search began (the study's start and doubling unless the memory model guessed a start);
    `in_process`: the point's in-process job (tune-in-process), whose doubts ordinary runs confirmed."""
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
        "search_mode": tune["search_mode"], "boundary_found_by": found_by(probes, found.max_fit, found.first_oom),
        "in_process_doubts": {str(mb): why for mb, why in in_process_doubts(in_process).items()} if in_process else {},
        "in_process_stopped": in_process["stopped"] if in_process else None,
        **search_cost(probes, [in_process] if in_process else []),
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


def run_id_list(text: str) -> list[str]:
    return [run_id for run_id in text.split(",") if run_id]


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--out", type=Path, required=True, help="JSON to write")
    if command == "tune-probe":
        parser.add_argument("--summary", type=Path, required=True, help="the probe run's summary.json")
        return
    if command == "tune-in-process":
        parser.add_argument("--run-dir", type=Path, required=True, help="the point's in-process search job's run dir")
        return
    parser.add_argument("--study-json", required=True, help="the tune study (rules/common.smk: tune_study_json)")
    if command == "tune-screen":
        parser.add_argument("probes", nargs="+", type=Path, help="the screen probes' outcome files (tune-probe)")
    elif command == "tune-budget":
        parser.add_argument("--search-json", required=True, help="the budget search (plan/tune/search.BudgetSearch)")
        parser.add_argument("--run-ids", type=run_id_list, default=[],
                            help="its probes, comma-separated, in the order the search ran them")
        parser.add_argument("probes", nargs="*", type=Path,
                            help="files holding them: outcome files (tune-probe), in-process records (tune-in-process)")
    else:
        parser.add_argument("--point", required=True, help="the matrix point searched")
        parser.add_argument("--start", type=int, default=None, help="first micro-batch (default: the study's)")
        parser.add_argument("--gallop", action="store_true", help="the start is the memory model's guess")
        parser.add_argument("--run-ids", type=run_id_list, required=True,
                            help="its probes, comma-separated, in the order the search ran them")
        parser.add_argument("probes", nargs="+", type=Path,
                            help="files holding them: outcome files (tune-probe), in-process records (tune-in-process)")


def run(args: argparse.Namespace) -> int:
    if args.command == "tune-probe":
        outcome = run_outcome(read_json(args.summary))
        write_json(args.out, outcome)
        print(f"{outcome['run_id']}: {outcome['status']} at micro-batch {outcome['micro_batch']}, "
              f"peak {outcome['peak_mib']} MiB ({outcome['peak_source']})")
        return 0
    if args.command == "tune-in-process":
        record = in_process_record(args.run_dir)
        write_json(args.out, record)
        print(f"{record['point_id']}: {len(record['probes'])} probes in one process in {record['job_seconds']:.0f} s: "
              + ", ".join(f"{probe['micro_batch']} {probe['status']}" for probe in record["probes"])
              + (f"; stopped: {record['stopped']}" if record["stopped"] else ""))
        return 0
    study = json.loads(args.study_json)
    files = [read_json(path) for path in args.probes]
    probes = probes_of(files, args.run_ids) if args.command != "tune-screen" else files
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
    in_process = next((record for record in files if "probes" in record), None)
    record = search_record(study, args.point, probes, args.start, args.gallop, in_process)
    write_json(args.out, record)
    print(f"{args.point}: largest micro-batch that fits {record['max_fit']}"
          f"{' (search cap)' if record['capped'] else ''}; first OOM {record['first_oom']}")
    return 0
