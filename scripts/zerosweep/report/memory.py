"""`parse-memory`: one run's monitor logs and records -> its record, `summary.json`, the only file tables read.

Statistics follow the workshop's analyze_memory.py so the numbers match what it prints for the same logs:
per GPU index per nvidia-smi file, peak = max, average = arithmetic mean, modes = every most frequent value
in ascending order (pandas' `Series.mode`); CPU memory is psrecord's Real column with the same three.
They are computed with numpy (the same reductions; numpy imports in a quarter of pandas' time, paid by every
Snakemake job). The log grammar and what it skips are in `logs`; the record's fields in `zerosweep.records`.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import records
from ..jsonio import read_json, write_json
from ..units import MIB
from . import derived, workshop
from .logs import (
    CPU_LOG,
    GPU_LOG,
    NVIDIA_SMI,
    NVML,
    NVML_LOG,
    TORCH_LOG,
    LogError,
    ParsedLog,
    host_of,
    matching_logs,
    psrecord_format,
    read_log,
    read_numeric_log,
)
from .throughput import summarise_throughput

if TYPE_CHECKING:
    import numpy as np


def memory_stats(values: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """peak, average and all modes with pandas' semantics: modes are every value of the top count, ascending."""
    import numpy as np

    array = np.asarray(values)
    uniques, counts = np.unique(array, return_counts=True)
    modes = uniques[counts == counts.max()]
    return {
        "peak": array.max().item(),
        "average": float(array.mean()),
        "modes": [mode.item() for mode in modes],
    }


def _mean(values: Iterable[float]) -> float:
    items = list(values)
    return math.fsum(items) / len(items)


def _skipped(log: ParsedLog | None, warnings: list[str]) -> None:
    if log is not None:
        warnings.extend(log.warnings())


# --- per-source summaries -----------------------------------------------------------------------


def summarise_gpu(monitor: Path, warnings: list[str]) -> records.GpuMemory | None:
    """nvidia-smi logs: per GPU (host, index), per node (file) and for the run; None without a valid sample."""
    gpus: list[dict[str, Any]] = []
    nodes: list[dict[str, Any]] = []
    pooled: list[int] = []
    for path, match in matching_logs(monitor, GPU_LOG):
        log = read_log(path, NVIDIA_SMI)
        _skipped(log, warnings)
        by_index: dict[int, list[list[Any]]] = {}
        for _line, values in log.rows:
            by_index.setdefault(values[1], []).append(values)
        node_gpus = []
        for index in sorted(by_index):
            samples = by_index[index]
            used = [sample[3] for sample in samples]
            stats = memory_stats(used)
            node_gpus.append(
                {
                    "host": host_of(match),
                    "index": index,
                    "name": samples[0][2],
                    "file": path.name,
                    "samples": len(used),
                    "total_mib": samples[0][4],
                    "peak_mib": stats["peak"],
                    "average_mib": stats["average"],
                    "modes_mib": stats["modes"],
                    "mode_text": workshop.mode_text(stats["modes"]),
                    "workshop_line": workshop.gpu_line(path.stem, index, stats["peak"], stats["average"], stats["modes"]),
                }
            )
            pooled.extend(used)
        if not node_gpus:
            continue
        gpus.extend(node_gpus)
        nodes.append(
            {
                "host": host_of(match),
                "file": path.name,
                "gpus": len(node_gpus),
                "samples": sum(gpu["samples"] for gpu in node_gpus),
                "peak_mib": max(gpu["peak_mib"] for gpu in node_gpus),
                "average_mib": _mean(gpu["average_mib"] for gpu in node_gpus),
            }
        )
    if not gpus:
        return None
    run_stats = memory_stats(pooled)
    return {
        "gpus": gpus,
        "nodes": nodes,
        # Run level: the highest GPU's peak; the mean of the per-GPU averages (each GPU weighs the same,
        # whatever its sample count); the modes of all GPUs' samples pooled.
        "peak_mib": max(gpu["peak_mib"] for gpu in gpus),
        "average_mib": _mean(gpu["average_mib"] for gpu in gpus),
        "modes_mib": run_stats["modes"],
        "mode_text": workshop.mode_text(run_stats["modes"]),
    }


def summarise_nvml(monitor: Path, warnings: list[str]) -> records.NvmlMemory | None:
    """Fast NVML samples: the exact peak the 5 s nvidia-smi log can miss."""
    import numpy as np

    gpus: list[dict[str, Any]] = []
    for path, match in matching_logs(monitor, NVML_LOG):
        data, log = read_numeric_log(path, NVML)
        _skipped(log, warnings)
        indices = data[:, 1].astype(np.int64)
        for index in np.unique(indices):
            rows = data[indices == index]
            steps = np.diff(rows[:, 0])
            gpus.append(
                {
                    "host": host_of(match),
                    "index": int(index),
                    "file": path.name,
                    "samples": int(rows.shape[0]),
                    "interval_ms": float(np.median(steps) * 1000.0) if steps.size else None,
                    "peak_mib": float(rows[:, 2].max()),
                    "average_mib": float(rows[:, 2].mean()),
                }
            )
    if not gpus:
        return None
    return {"gpus": gpus, "peak_mib": max(gpu["peak_mib"] for gpu in gpus)}


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


def summarise_cpu(monitor: Path, warnings: list[str]) -> records.CpuMemory | None:
    """psrecord logs, one per node; the plain form (the workshop's) wins over a CSV of the same host."""
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
    for host in sorted(chosen):
        path = chosen[host]
        fmt, real_column = psrecord_format(path)
        log = read_log(path, fmt)
        _skipped(log, warnings)
        real = [values[real_column] for _line, values in log.rows]
        if not real:
            continue
        stats = memory_stats(real)
        pooled.extend(real)
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
        "average_mib": _mean(node["average_mib"] for node in nodes),
        "modes_mib": run_stats["modes"],
        "mode_text": workshop.mode_text(run_stats["modes"]),
    }


# --- the run ------------------------------------------------------------------------------------


def extract_metrics(
    metrics: records.MetricsJson, spec: dict[str, Any], status: str, warnings: list[str]
) -> records.Measured:
    if status != "ok":
        return {**dict.fromkeys(records.RECORD_METRICS), "flops_per_token": None}  # type: ignore[typeddict-item]
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
    values["flops_per_token"] = derived.flops_per_token(metrics, spec)
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
        "model": spec.get("model", {}).get("name"),
        "gpu_name": gpu_name,
        "samples_per_gpu": data.get("samples_per_gpu"),
        "eval_samples": data.get("eval_samples"),
        "max_length": data.get("max_length"),
        "epochs": training.get("epochs"),
        "per_device_batch_size": training.get("per_device_batch_size"),
        "gradient_accumulation_steps": training.get("gradient_accumulation_steps"),
        "precision": training.get("precision"),
    }


def _label(point: dict[str, Any]) -> str:
    from ..plan.matrix import MatrixPoint

    fields = {key: point[key] for key in ("deepspeed", "zero_stage", "offload", "pin_memory", "gpus_per_node", "nodes")}
    return MatrixPoint(**fields).label


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
    gpu = summarise_gpu(monitor, warnings)
    cpu = summarise_cpu(monitor, warnings)
    nvml = summarise_nvml(monitor, warnings)
    device = spec.get("runtime", {}).get("device")
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
    if gpu is not None:
        seen = {(g["host"], g["index"]) for g in gpu["gpus"]}
        if len(gpu["nodes"]) != point["nodes"] or any(n["gpus"] != point["gpus_per_node"] for n in gpu["nodes"]):
            warnings.append(
                f"nvidia-smi logs show {len(seen)} GPUs on {len(gpu['nodes'])} nodes; "
                f"the run asked for {point['gpus_per_node']} per node on {point['nodes']}"
            )
    return {
        "schema_version": records.SCHEMA_VERSION,
        "run_id": spec["run_id"],
        "label": _label(point),
        "status": status,  # type: ignore[typeddict-item]
        "point": point,
        "setup": _setup(spec, _gpu_name(metrics, run_dir, gpu)),
        "metrics": extract_metrics(metrics, spec, status, warnings),
        "gpu": gpu,
        "nvml": nvml,
        "torch": summarise_torch(monitor, metrics, metrics_path),
        "cpu": cpu,
        # steady throughput with its interval, from steps.csv (report/throughput.py); None without one
        "throughput": summarise_throughput(run_dir, metrics, int(spec.get("training", {}).get("warmup_steps", 0)))
        if status == "ok" else None,
        "warnings": warnings,
        "unusable": unusable,
    }


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
