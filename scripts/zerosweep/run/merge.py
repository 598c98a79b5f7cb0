"""Merge the per-node and per-rank records of a run into metrics.json, env.json and status.json; keep the records
of a run that failed under <results>/failed/<run>/<timestamp>/."""

from __future__ import annotations

import datetime as dt
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..jsonio import read_json_or_none, write_json
from ..plan.matrix import MatrixPoint
from .environment import merge_environment
from .node import now_iso
from .outcome import OOM_OUTCOMES, Deadline, classify
from .processes import Shutdown

# Every key of metrics.json, so that OOM rows have the same columns as successful ones.
MEASURED_FIELDS: tuple[str, ...] = (
    "weights", "loss_note", "train_samples", "eval_samples", "global_batch_size", "tokens_per_sample",
    "real_token_fraction", "tokenizer_vocab_size", "model_vocab_size", "model_type", "n_params",
    "largest_layer_params", "pad_token", "optimizer_steps", "epochs_completed", "steps_per_epoch", "train_loss",
    "train_runtime",
    "train_samples_per_second", "train_steps_per_second", "eval_loss", "eval_losses", "eval_runtime",
    "eval_samples_per_second", "train_losses", "steady_steps", "steady_seconds", "steady_samples_per_second",
    "steady_tokens_per_second", "flops_per_token", "gpu_name", "phase_seconds", "stop_reason", "recorded_steps",
    "first_step_seconds", "training_settings",
)


def metrics_skeleton(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The run's settings, flat, plus every measured field as null (filled from rank 0's record)."""
    point = MatrixPoint.from_dict(spec["point"])
    point_fields = {key: value for key, value in spec["point"].items() if key != "world_size"}
    model, data, training = spec["model"], spec["data"], spec["training"]
    metrics: dict[str, Any] = {
        "run_id": spec["run_id"],
        "label": point.label,
        "status": None,
        "error": None,
        **point_fields,
        "world_size": point.world_size,
        "device": spec["runtime"]["device"],
        "precision": training["precision"],
        "model_name": model["name"],
        "architecture": model["architecture"],
        "tokenizer": model["tokenizer"],
        "data_source": data["source"],
        "max_length": data["max_length"],
        "samples_per_gpu": data["samples_per_gpu"],
        "per_device_batch_size": training["per_device_batch_size"],
        "gradient_accumulation_steps": training["gradient_accumulation_steps"],
        "learning_rate": training["learning_rate"],
        "weight_decay": training["weight_decay"],
        "epochs": training["epochs"],
        "max_steps": training.get("max_steps"),
        "warmup_steps": training.get("warmup_steps", 0),
        "seed": training.get("seed"),
    }
    metrics.update({name: None for name in MEASURED_FIELDS})
    # Known before training: what an OOM row still reports.
    metrics["weights"] = model["weights"]
    metrics["train_samples"] = data["samples_per_gpu"] * point.world_size
    metrics["eval_samples"] = data["eval_samples"]
    metrics["global_batch_size"] = (training["per_device_batch_size"] * training["gradient_accumulation_steps"]
                                    * point.world_size)
    metrics["tokens_per_sample"] = data["max_length"]
    return metrics


def _max_of(records: list[dict[str, Any]], key: str) -> float | None:
    values = [record[key] for record in records if record.get(key) is not None]
    return max(values) if values else None


def merge_metrics(spec: Mapping[str, Any], status: str, error: str | None, train: Mapping[str, Any] | None,
                  memory: list[dict[str, Any]], ooms: list[dict[str, Any]]) -> dict[str, Any]:
    metrics = metrics_skeleton(spec)
    if train:
        metrics.update({key: value for key, value in train.items() if key not in ("rank_info", "torch_build")})
    elif ooms:
        metrics["phase_seconds"] = ooms[0].get("phase_seconds")  # which phases finished before memory ran out
    if metrics["gpu_name"] is None:
        metrics["gpu_name"] = next((record["gpu_name"] for record in memory if record.get("gpu_name")), None)
    metrics["status"] = status
    metrics["error"] = error
    metrics["torch_memory"] = memory
    metrics["node_ranks"] = sorted({record["node_rank"] for record in memory if "node_rank" in record})
    metrics["max_memory_allocated_mib"] = _max_of(memory, "max_memory_allocated_mib")
    metrics["max_memory_reserved_mib"] = _max_of(memory, "max_memory_reserved_mib")
    metrics["max_rss_mib"] = _max_of(memory, "max_rss_mib")
    return metrics


def failed_records_dir(failed_root: Path, run_id: str) -> Path:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return failed_root / run_id / stamp


def save_failed_records(run_dir: Path, target: Path) -> Path:
    """Snakemake deletes a failed job's outputs: keep everything the run wrote (but saved weights)."""
    shutil.copytree(run_dir, target, ignore=shutil.ignore_patterns("model"), dirs_exist_ok=True)
    return target


def finalize(*, spec: Mapping[str, Any], run_dir: Path, shown_run_dir: Path, failed_root: Path, mode: str,
             endpoint: str, node_codes: list[int], shutdown: Shutdown, started: float, started_at: str,
             argv: list[str], problem: str | None, deadline: Deadline) -> int:
    run_id = spec["run_id"]
    nnodes = int(spec["point"]["nodes"])
    trainer_output = run_dir / "model"
    if trainer_output.is_dir() and not any(trainer_output.iterdir()):
        trainer_output.rmdir()  # the Trainer creates its output dir even when it saves nothing
    nodes = [read_json_or_none(run_dir / "records" / f"node{rank}.json") or {"node_rank": rank, "status": "missing"}
             for rank in range(nnodes)]
    train = read_json_or_none(run_dir / "records" / "train_rank0.json")
    memory = [record for path in sorted(run_dir.glob("monitor/torch_memory_rank*.json"))
              if (record := read_json_or_none(path)) is not None]
    memory.sort(key=lambda record: record.get("rank", 0))
    ends = [record for path in sorted(run_dir.glob("records/end_rank*.json")) if (record := read_json_or_none(path))]
    ooms = [end for end in ends if end.get("outcome") in OOM_OUTCOMES]
    signal_name = signal.Signals(shutdown.signum or signal.SIGTERM).name if shutdown.requested else None
    result = classify(run_dir=run_dir, nodes=nodes, ends=ends, node_codes=node_codes, mode=mode,
                      train_ok=bool(train and train.get("status") == "ok"), problem=problem, signal_name=signal_name,
                      time_limit_reached=deadline.reached(shutdown.requested_at or time.monotonic()))
    status, error, evidence = result.status, result.error, result.evidence
    launcher_code = 0 if status in ("ok", "oom") else (128 + int(shutdown.signum) if shutdown.signum else 1)
    command = shlex.join([sys.executable, "-m", "zerosweep", *argv])
    env = merge_environment(run_id=run_id, argv=argv, command=command, launch_mode=mode, endpoint=endpoint,
                            nodes=[node for node in nodes if "environment" in node], rank_records=memory,
                            torch_build=(train or {}).get("torch_build"))
    write_json(run_dir / "env.json", env)
    if env["other_zerosweep_runs"]:  # its timings may include theirs
        shared = sorted({f"{run['run_id']} on {run['host']}" for run in env["other_zerosweep_runs"]})
        print(f"[zerosweep] run {run_id} shared a host with other zerosweep runs: {', '.join(shared)} "
              "(env.json other_zerosweep_runs)", file=sys.stderr, flush=True)
    logs = sorted(path.name for path in run_dir.glob("train*.log")) + sorted(
        path.name for path in run_dir.glob("srun.log"))
    status_record: dict[str, Any] = {
        "run_id": run_id,
        "status": status,
        "outcome": result.outcome,
        "error": error,
        "exit_code": launcher_code,
        "launch_mode": mode,
        "rendezvous_endpoint": endpoint,
        "nodes_expected": nnodes,
        "node_exit_codes": node_codes,
        "started_at": started_at,
        "finished_at": now_iso(),
        "duration_s": time.monotonic() - started,
        "log": "train.log",
        "logs": logs,
        "oom_evidence": evidence,
        "failed_records": None,
        "nodes": [{key: value for key, value in node.items() if key != "environment"} for node in nodes],
    }
    if status in ("ok", "oom"):
        write_json(run_dir / "metrics.json",
                   {**merge_metrics(spec, status, error, train, memory, ooms), "outcome": result.outcome})
        write_json(run_dir / "status.json", status_record)
        print(f"[zerosweep] run {run_id}: {status} in {status_record['duration_s']:.0f} s; "
              f"records in {shown_run_dir}", flush=True)
        return 0
    target = failed_records_dir(failed_root, run_id)
    status_record["failed_records"] = str(target)
    write_json(run_dir / "status.json", status_record)
    saved = save_failed_records(run_dir, target)
    log = f"\n  log: {shown_run_dir / 'train.log'}" if (run_dir / "train.log").exists() else ""
    print(f"[zerosweep] run {run_id} {status}: {error}{log}\n  records kept in {saved}", file=sys.stderr, flush=True)
    return launcher_code
