"""`parse-memory`: one run's monitor logs and records -> its record, `summary.json`, the only file tables read.

Statistics follow the workshop's analyze_memory.py so the numbers match what it prints for the same logs:
per GPU index per nvidia-smi file, peak = max, average = arithmetic mean, modes = every most frequent value
in ascending order (pandas' `Series.mode`); CPU memory is psrecord's Real column with the same three.
Those per-file figures are the workshop's, over the whole log; the run-level modes that tables show
(`training_window_modes_mib`) are over the training window only (`training_window`).
They are computed with numpy (the same reductions; numpy imports in a quarter of pandas' time, paid by every
Snakemake job). The log grammar and what it skips are in `logs`; the record's fields in `zerosweep.records`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ... import records
from ...jsonio import read_json, read_json_or_none, write_json
from ...plan import levers
from ...plan.models import model_label
from ...units import MIB
from . import workshop
from .energy import summarise_energy
from .gpu_activity import RunActivity, run_activity
from .gpu_busy import summarise_busy
from .gpu_clocks import summarise_clocks
from .gpu_memory import WindowedSamples, mean, memory_stats, skipped, summarise_gpu, summarise_nvml
from .gpus import RunGpus, run_gpus
from .logs import CPU_LOG, GPU_LOG, NVML_LOG, TORCH_LOG, LogError, host_of, matching_logs, psrecord_format, read_log
from .throughput import flops_per_token, summarise_throughput
from .training_window import TrainingWindow, step_spans


def _torch_entry(entry: dict[str, Any], source: str) -> dict[str, Any]:
    """One rank's torch.cuda peaks; accepts MiB keys or torch's raw byte counts."""

    def mib(name: str) -> float | None:
        if entry.get(f"{name}_mib") is not None:
            return float(entry[f"{name}_mib"])
        for raw in (f"{name}_bytes", name):  # torch.cuda.max_memory_* return bytes
            if entry.get(raw) is not None:
                return float(entry[raw]) / MIB
        return None

    if "rank" not in entry:
        raise LogError(source, None, f"torch memory record without 'rank': {entry}")
    return {
        "rank": int(entry["rank"]),
        "host": entry.get("node_tag") or entry.get("host"),
        "max_allocated_mib": mib("max_memory_allocated"),
        "max_reserved_mib": mib("max_memory_reserved"),
        "max_rss_mib": None if entry.get("max_rss_mib") is None else float(entry["max_rss_mib"]),
    }


def summarise_torch(monitor: Path, metrics: records.MetricsJson, metrics_path: Path) -> records.TorchPeaks | None:
    ranks: dict[int, dict[str, Any]] = {}
    for entry in metrics.get("torch_memory") or []:
        record = _torch_entry(dict(entry), str(metrics_path))
        ranks[record["rank"]] = record
    for path, _match in matching_logs(monitor, TORCH_LOG):
        record = _torch_entry(read_json(path), str(path))
        ranks[record["rank"]] = record  # the per-rank file is written last: it wins
    if not ranks:
        return None
    ordered = [ranks[rank] for rank in sorted(ranks)]

    def top(key: str) -> float | None:
        values = [record[key] for record in ordered if record[key] is not None]
        return max(values) if values else None

    return {
        "ranks": ordered,
        "max_allocated_mib": top("max_allocated_mib"),
        "max_reserved_mib": top("max_reserved_mib"),
        "max_rss_mib": top("max_rss_mib"),
    }


def summarise_cpu(monitor: Path, warnings: list[str], window: TrainingWindow | None = None) -> records.CpuMemory | None:
    """psrecord logs, one per node; the plain form (the workshop's) wins over a CSV of the same host.
    `window`: the run's training window (by default that of the run `monitor` belongs to)."""
    chosen: dict[str, Path] = {}
    for path, match in matching_logs(monitor, CPU_LOG):
        host = host_of(match)
        if host in chosen:
            keep, drop = (chosen[host], path) if chosen[host].suffix == ".txt" else (path, chosen[host])
            warnings.append(f"{drop.name} ignored: {keep.name} logs the same host")
            chosen[host] = keep
        else:
            chosen[host] = path
    nodes: list[dict[str, Any]] = []
    pooled: list[float] = []
    window = TrainingWindow.of(monitor.parent) if window is None else window
    busy = WindowedSamples(window)
    for host in sorted(chosen):
        path = chosen[host]
        fmt, real_column = psrecord_format(path)
        log = read_log(path, fmt)
        skipped(log, warnings)
        real = [values[real_column] for _line, values in log.rows]
        if not real:
            continue
        stats = memory_stats(real)
        pooled.extend(real)
        busy.add(window.psrecord_samples, host, [values[0] for _line, values in log.rows], real)  # elapsed s
        nodes.append(
            {
                "host": host,
                "file": path.name,
                "format": "csv" if path.suffix == ".csv" else "plain",
                "samples": len(real),
                "peak_mib": stats["peak"],
                "average_mib": stats["average"],
                "modes_mib": stats["modes"],
                "mode_text": workshop.mode_text(stats["modes"]),
                "workshop_lines": workshop.cpu_lines(stats["peak"], stats["average"], stats["modes"]),
            }
        )
    if not nodes:
        return None
    run_stats = memory_stats(pooled)
    return {
        "nodes": nodes,
        # Run level: the fullest node's peak (what must fit in one node's RAM); mean of the node averages.
        "peak_mib": max(node["peak_mib"] for node in nodes),
        "average_mib": mean(node["average_mib"] for node in nodes),
        "modes_mib": run_stats["modes"],  # over the whole log
        "mode_text": workshop.mode_text(run_stats["modes"]),
        **busy.record(),  # the modes the tables show: over the training window
    }


# --- the run ------------------------------------------------------------------------------------


def extract_metrics(
    metrics: records.MetricsJson, spec: dict[str, Any], status: str, warnings: list[str]
) -> records.Measured:
    if status != "ok":
        return dict.fromkeys((*records.RECORD_METRICS, *records.OPTIONAL_METRICS))  # type: ignore[return-value]
    values: dict[str, Any] = {name: metrics.get(name) for name in records.RECORD_METRICS}
    missing = [name for name, value in values.items() if value is None]
    if missing:
        warnings.append(f"metrics.json lacks {', '.join(missing)}: shown empty")
    losses = values["eval_losses"]
    if losses is not None:
        values["eval_losses"] = [
            {
                "epoch": None if item.get("epoch") is None else float(item["epoch"]),
                "eval_loss": float(item["eval_loss"]),
            }
            for item in losses
        ]
        if values["eval_loss"] is None and losses:
            values["eval_loss"] = values["eval_losses"][-1]["eval_loss"]
    values["flops_per_token"] = flops_per_token(metrics, spec)
    values["real_token_fraction"] = metrics.get("real_token_fraction")
    values["first_step_seconds"] = metrics.get("first_step_seconds")
    return values  # type: ignore[return-value]


def _gpu_name(metrics: records.MetricsJson, run_dir: Path, gpu: records.GpuMemory | None) -> str | None:
    """The GPU model, for its peak TFLOP/s: what the ranks saw, else env.json's, else nvidia-smi's."""
    if metrics.get("gpu_name"):
        return metrics["gpu_name"]
    env_path = run_dir / "env.json"
    if env_path.is_file():
        env: records.EnvJson = read_json(env_path)  # type: ignore[assignment]
        if env.get("gpu_model"):
            return env["gpu_model"]
    return str(gpu["gpus"][0]["name"]) if gpu else None


def _setup(spec: dict[str, Any], gpu_name: str | None) -> records.Setup:
    data, training = spec.get("data", {}), spec.get("training", {})
    return {
        "device": spec.get("runtime", {}).get("device"),
        "model": model_label(spec["model"]) if spec.get("model") else None,
        "gpu_name": gpu_name,
        "samples_per_gpu": data.get("samples_per_gpu"),
        "eval_samples": data.get("eval_samples"),
        "max_length": data.get("max_length"),
        "epochs": training.get("epochs"),
        "per_device_batch_size": training.get("per_device_batch_size"),
        "gradient_accumulation_steps": training.get("gradient_accumulation_steps"),
        # every lever's effective value (precision among them); the keys are records.Setup's lever fields
        **levers.run_values(training),  # type: ignore[typeddict-item]
    }


def _label(point: dict[str, Any]) -> str:
    from ...plan.matrix import MatrixPoint

    return MatrixPoint.from_dict(point).label


def _emulated_nodes(run_dir: Path, own: RunGpus | None) -> bool:
    """Several nodes emulated on one host (launch mode local-nodes); CPU runs have no GPU map, only status.json."""
    if own is not None:
        return own.emulated_nodes
    status = read_json_or_none(run_dir / "status.json") or {}
    return status.get("launch_mode") == "local-nodes"


def summarise_activity(run_dir: Path, status: str, own: RunGpus | None, warmup_steps: int,
                       expected_gpus: int | None) -> tuple[records.Energy, records.GpuBusy]:
    """The run's energy and its GPUs' busy fraction, over its steady steps (and, for energy, its training window);
    a run that did not finish has neither. `expected_gpus`: the run's GPU count; None on CPU ranks."""
    if status != "ok":
        activity = RunActivity([], [], f"the run ended {status}: no steady window")
        return summarise_energy(run_dir, activity, None, None, own, expected_gpus), summarise_busy(activity, None, None)
    activity = run_activity(run_dir, own)
    steady, training = step_spans(run_dir, warmup_steps)
    return (summarise_energy(run_dir, activity, steady, training, own, expected_gpus),
            summarise_busy(activity, steady, expected_gpus))


def summarise_run(run_dir: Path) -> records.RunRecord:
    """Everything the tables need about one run, from its records and monitor logs."""
    spec = read_json(run_dir / "run_spec.json", what="the launcher writes it")
    metrics_path = run_dir / "metrics.json"
    metrics: records.MetricsJson = read_json(metrics_path)  # type: ignore[assignment]
    status = metrics.get("status")
    if status not in records.RECORDED_STATUSES:
        raise LogError(metrics_path, None, f"status must be one of {list(records.RECORDED_STATUSES)}, found {status!r}")
    monitor = run_dir / "monitor"
    warnings: list[str] = []
    point = spec["point"]
    own = run_gpus(run_dir)
    window = TrainingWindow.of(run_dir)
    gpu = summarise_gpu(monitor, warnings, own, window)
    cpu = summarise_cpu(monitor, warnings, window)
    nvml = summarise_nvml(monitor, warnings, own)
    clocks = summarise_clocks(run_dir, warnings, own)
    device = spec.get("runtime", {}).get("device")
    warmup_steps = int(spec.get("training", {}).get("warmup_steps", 0))
    energy, busy = summarise_activity(run_dir, status, own, warmup_steps,
                                      point["world_size"] if device == "cuda" else None)
    logs_found = any(matching_logs(monitor, pattern) for pattern in (GPU_LOG, NVML_LOG, CPU_LOG))
    # A missing log is the launcher's recorded decision (monitor unavailable): empty cells and a warning in
    # the table notes. A log that exists but is broken beyond what `logs` skips raised LogError above.
    if status == "ok" and device == "cuda":
        if gpu is None:
            warnings.append("no nvidia-smi log with a valid sample (gpu_memory_log_<host>.csv): GPU memory left empty")
        if nvml is None:
            warnings.append("no NVML log with a valid sample (nvml_<host>.csv): exact peak left empty")
    if status == "ok" and cpu is None:
        warnings.append("no psrecord log with a valid sample (cpu_memory_log_<host>.txt): CPU memory left empty")
    unusable = None
    if logs_found and gpu is None and nvml is None and cpu is None:
        unusable = "its monitor logs hold no valid sample"
    if gpu is not None and (
        len(gpu["nodes"]) != point["nodes"] or any(n["gpus"] != point["gpus_per_node"] for n in gpu["nodes"])
    ):
        warnings.append(
            f"nvidia-smi logs show {len(gpu['gpus'])} GPUs on {len(gpu['nodes'])} nodes; "
            f"the run asked for {point['gpus_per_node']} per node on {point['nodes']}"
            + ("" if own else " (no rank -> GPU map to tell the run's GPUs: every logged GPU counted)")
        )
    return {
        "schema_version": records.SCHEMA_VERSION,
        "run_id": spec["run_id"],
        "label": _label(point),
        "status": status,  # type: ignore[typeddict-item]
        "point": point,
        "setup": _setup(spec, _gpu_name(metrics, run_dir, gpu)),
        "metrics": extract_metrics(metrics, spec, status, warnings),
        "emulated_nodes": _emulated_nodes(run_dir, own),
        "gpu_map_source": None if own is None else own.source,
        "gpu": gpu,
        "nvml": nvml,
        "gpu_clocks": clocks,
        "torch": summarise_torch(monitor, metrics, metrics_path),
        "cpu": cpu,
        # steady throughput with its interval, from steps.csv (report/run_summary/throughput.py); None without one
        "throughput": summarise_throughput(run_dir, dict(metrics), warmup_steps) if status == "ok" else None,
        "energy": energy,
        "gpu_busy": busy,
        "warnings": warnings,
        "unusable": unusable,
        "job_seconds": job_seconds(run_dir),
    }


def job_seconds(run_dir: Path) -> float | None:
    """The job's wall time (the launcher's status.json): what a run costs, e.g. a tune search's probes."""
    seconds = (read_json_or_none(run_dir / "status.json") or {}).get("duration_s")
    return None if seconds is None else float(seconds)


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--run-dir", type=Path, required=True, help="results/runs/<run>")
    parser.add_argument("--out", type=Path, required=True, help="summary.json to write")


def run(args: argparse.Namespace) -> int:
    record = summarise_run(args.run_dir)
    # No indentation: 5x faster with json's C encoder; `python -m json.tool` pretty-prints.
    write_json(args.out, record, indent=None)
    print(f"{record['run_id']}: status {record['status']}")
    print(workshop.report(record))
    for warning in record["warnings"]:
        print(f"warning: {warning}")
    return 0
