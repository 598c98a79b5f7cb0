"""One run's table fields, by field id (`zerosweep.records`): what a table row is made of before repeats are
grouped (`table_rows`). Measurements are emptied unless the run finished usably; steady samples/s, tokens/s,
TFLOP/s and MFU are the run's one estimator's (`throughput.run_throughput`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ... import records as f
from ...plan import levers
from ..run_summary.energy import run_energy
from ..run_summary.gpu_busy import host_bound
from ..run_summary.throughput import run_throughput

# The speed levers' columns, in registry order: each lever's field id is its name (records.COMPILE, ...).
LEVER_FIELDS: tuple[str, ...] = tuple(levers.LEVERS)
# What identifies a row; every other field is a measurement, emptied in rows of runs that did not finish.
IDENTITY = frozenset(
    {f.CONFIG, f.MODEL, f.STATUS, f.RUN_ID, f.ZERO_STAGE, f.OFFLOAD, f.PIN_MEMORY, f.GPUS_PER_NODE, f.NODES, f.WORLD_SIZE,
     f.EMULATED_NODES, *LEVER_FIELDS}
)


def _dig(data: Mapping[str, Any] | None, key: str) -> Any:
    return None if data is None else data.get(key)


# The Trainer logs the epoch rounded (to 2 decimals in older versions): this much off is still "at epoch N".
EPOCH_LOG_ROUNDING = 0.005


def eval_loss_at(losses: list[f.EvalLoss] | None, epoch: int, steps_per_epoch: float | None) -> float | None:
    """Eval loss of the evaluation at the end of epoch `epoch`, none other. When an epoch's samples do not
    fill its last optimizer step, the Trainer's epoch-end evaluation logs a fraction below N (31 of 31.25
    steps: 0.99); it is still epoch N's if it lies after the epoch's last whole step. An evaluation inside
    the epoch (0.77) is not epoch N's."""
    earliest = epoch - (1 / steps_per_epoch if steps_per_epoch else 0) - EPOCH_LOG_ROUNDING
    at = [(abs(logged - epoch), item["eval_loss"]) for item in losses or []
          if (logged := item["epoch"]) is not None and earliest < logged <= epoch + EPOCH_LOG_ROUNDING]
    return min(at)[1] if at else None


def run_levers(record: Mapping[str, Any]) -> dict[str, Any]:
    """Every lever's effective value in the run (its record's setup, from the spec's settings.training). A record
    written before the levers existed lacks all but precision: that run used each lever's default."""
    return levers.run_values(record["setup"])


def lever_rank(name: str, value: Any) -> int:
    """`value`'s place in lever `name`'s display order (not compiled before compiled, fp16 before bf16); a value
    the registry does not know (an empty cell) after them all."""
    lever = levers.LEVERS[name]
    position = lever.position(value)
    return len(lever.values) if position is None else position


def is_compiled(row: Mapping[str, Any]) -> bool:
    """A table row (or run fields) whose run was compiled: where a first step holds the compile cost."""
    return row.get(f.COMPILE) is True


def row_status(record: Mapping[str, Any]) -> str:
    """The run's status, or `unusable` for a finished run whose logs held no valid sample."""
    return "unusable" if record["status"] == "ok" and record.get("unusable") else str(record["status"])


def record_fields(record: f.RunRecord, label: str, peak_tflops: float | None) -> dict[str, Any]:
    """Every table field of one run, by field id (measurements emptied unless the run finished usably)."""
    point, metrics = record["point"], record["metrics"]
    gpu, cpu = record["gpu"], record["cpu"]
    throughput = run_throughput(record, peak_tflops)
    energy = run_energy(record)
    busy = _dig(record.get("gpu_busy"), "busy_fraction")
    fraction = metrics.get("real_token_fraction")
    values: dict[str, Any] = {
        f.CONFIG: label,
        f.MODEL: record["setup"].get("model"),
        f.STATUS: row_status(record),
        f.RUN_ID: record["run_id"],
        f.ZERO_STAGE: point["zero_stage"],
        f.OFFLOAD: point["offload"] if point["deepspeed"] else None,
        f.PIN_MEMORY: point["pin_memory"] if point["deepspeed"] else None,
        f.GPUS_PER_NODE: point["gpus_per_node"],
        f.NODES: point["nodes"],
        f.WORLD_SIZE: point["world_size"],
        f.EMULATED_NODES: bool(record.get("emulated_nodes")),
        **run_levers(record),
        f.GPU_PEAK_MIB: _dig(gpu, "peak_mib"),
        f.GPU_PEAK_MIN_MIB: _dig(gpu, "peak_min_mib"),
        f.GPUS_COUNTED: _dig(gpu, "gpus_counted"),
        f.GPU_AVERAGE_MIB: _dig(gpu, "average_mib"),
        # the training window's modes: over the whole log, idle samples outnumber the busy ones
        f.GPU_MODES_MIB: _dig(gpu, "training_window_modes_mib"),
        f.NVML_PEAK_MIB: _dig(record["nvml"], "peak_mib"),
        f.TORCH_MAX_RESERVED_MIB: _dig(record["torch"], "max_reserved_mib"),
        f.CPU_PEAK_MIB: _dig(cpu, "peak_mib"),
        f.CPU_AVERAGE_MIB: _dig(cpu, "average_mib"),
        f.CPU_MODES_MIB: _dig(cpu, "training_window_modes_mib"),
        f.STEADY_SAMPLES_PER_SECOND: throughput.samples_per_second,
        f.STEADY_TOKENS_PER_SECOND: throughput.tokens_per_second,
        f.TFLOPS_PER_GPU: throughput.tflops_per_gpu,
        f.MFU: throughput.mfu,
        f.EVAL_LOSS_EPOCH1: eval_loss_at(metrics.get("eval_losses"), 1, metrics.get("steps_per_epoch")),
        f.EVAL_LOSS_EPOCH2: eval_loss_at(metrics.get("eval_losses"), 2, metrics.get("steps_per_epoch")),
        # without padding: the padded rate x the real (non-padding) token fraction
        f.STEADY_REAL_TOKENS_PER_SECOND: (None if throughput.tokens_per_second is None or fraction is None
                                          else throughput.tokens_per_second * float(fraction)),
        f.GPU_ENERGY_J: energy.gpu_energy_j,
        f.GPU_MEAN_POWER_W: energy.gpu_mean_power_w,
        f.GPU_J_PER_SAMPLE: energy.gpu_j_per_sample,
        f.GPU_J_PER_TOKEN: energy.gpu_j_per_token,
        f.GPU_ENERGY_PROBLEM: energy.problem,
        f.GPU_POWER_INTEGRAL_J: energy.power_integral_j,
        f.CPU_PACKAGE_ENERGY_J: energy.cpu_package_energy_j,
        f.TRAINING_GPU_ENERGY_J: energy.training_gpu_energy_j,
        f.GPU_BUSY_FRACTION: busy,
        f.HOST_BOUND: host_bound(busy),
    }
    for name in (f.TRAIN_SAMPLES_PER_SECOND, f.EVAL_SAMPLES_PER_SECOND, f.TRAIN_RUNTIME, f.TRAIN_LOSS, f.EVAL_LOSS,
                 f.STEPS_PER_EPOCH, f.FIRST_STEP_SECONDS):  # fmt: skip
        values[name] = metrics.get(name)
    if values[f.STATUS] != "ok":
        values.update({name: None for name in values if name not in IDENTITY})
    return values
