"""Display labels and Markdown number formats of the table fields: the only place a column's header lives.

CSV headers are the field ids of `zerosweep.records`; the Markdown tables show these labels (the workshop's
headers, with MiB where the values are MiB). Renaming a label changes no CSV, plot selection or answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ... import records as f
from ..interval_text import interval_text

LABELS: dict[str, str] = {
    f.CONFIG: "DeepSpeed Config",
    f.MODEL: "Model",
    f.GPU_PEAK_MIB: "Peak GPU Memory Used (MiB)",
    f.GPU_AVERAGE_MIB: "Average GPU Memory Used (MiB)",
    f.GPU_MODES_MIB: "Mode GPU Memory (training window) (MiB)",
    f.GPU_PEAK_MIN_MIB: "Lowest GPU's Peak (MiB)",
    f.GPUS_COUNTED: "GPUs Counted",
    f.EMULATED_NODES: "Emulated Nodes",
    # psrecord's "MB" is rss / 1024**2: MiB.
    f.CPU_PEAK_MIB: "Peak CPU Memory Used (MiB)",
    f.CPU_AVERAGE_MIB: "Average CPU Memory Used (MiB)",
    f.CPU_MODES_MIB: "Mode CPU Memory (training window) (MiB)",
    f.NVML_PEAK_MIB: "Exact Peak GPU Memory (MiB)",
    f.TORCH_MAX_RESERVED_MIB: "Torch Peak Reserved (MiB)",
    f.TRAIN_SAMPLES_PER_SECOND: "Train Samples/Second",
    f.EVAL_SAMPLES_PER_SECOND: "Eval Samples/sec",
    f.STEADY_SAMPLES_PER_SECOND: "Steady Samples/Second",
    f.STEADY_TOKENS_PER_SECOND: "Tokens/Second (incl. padding)",
    f.STEADY_REAL_TOKENS_PER_SECOND: "Real Tokens/Second (no padding)",
    f.TFLOPS_PER_GPU: "TFLOP/s per GPU (incl. padding)",
    f.MFU: "MFU (incl. padding)",
    f.TRAIN_RUNTIME: "Train Runtime (s)",
    f.FIRST_STEP_SECONDS: "First step (s)",
    f.TRAIN_LOSS: "Train Loss",
    f.EVAL_LOSS_EPOCH1: "Eval Loss (Epoch 1)",
    f.EVAL_LOSS_EPOCH2: "Eval Loss (Epoch 2)",
    f.EVAL_LOSS: "Eval Loss (Final)",
    f.STEPS_PER_EPOCH: "Steps per Epoch",
    f.SPEEDUP: "Speed-up (Trainer, whole run)",
    f.STEADY_SPEEDUP: "Steady Speed-up",
    f.WEAK_SCALING_EFFICIENCY: "Weak-Scaling Efficiency (Trainer, whole run)",
    f.STEADY_WEAK_SCALING_EFFICIENCY: "Steady Weak-Scaling Efficiency",
    f.STEADY_WEAK_SCALING_EFFICIENCY_LOW: "Steady Weak-Scaling Efficiency, Low",
    f.STEADY_WEAK_SCALING_EFFICIENCY_HIGH: "Steady Weak-Scaling Efficiency, High",
    f.STEADY_SAMPLES_PER_SECOND_LOW: "Steady Samples/Second, Low",
    f.STEADY_SAMPLES_PER_SECOND_HIGH: "Steady Samples/Second, High",
    f.STEADY_SPREAD: "Steady Interval",
    f.REPEATS: "N",
    f.RUNS: "Runs",
    f.HIT_CAP: "Stopped at Cap",
    f.THROUGHPUT_VERDICT: "Throughput vs Reference",
    f.THROUGHPUT_RATIO: "Throughput Ratio",
    f.THROUGHPUT_RATIO_LOW: "Throughput Ratio, Low",
    f.THROUGHPUT_RATIO_HIGH: "Throughput Ratio, High",
    f.THROUGHPUT_P: "Throughput p",
    f.MEMORY_VERDICT: "Peak Memory vs Reference",
    f.MEMORY_RATIO: "Peak Memory Ratio",
    f.MEMORY_RATIO_LOW: "Peak Memory Ratio, Low",
    f.MEMORY_RATIO_HIGH: "Peak Memory Ratio, High",
    f.MEMORY_P: "Peak Memory p",
    f.STATUS: "Status",
    f.RUN_ID: "Run",
    f.ZERO_STAGE: "ZeRO Stage",
    f.OFFLOAD: "Offload",
    f.PIN_MEMORY: "Pin Memory",
    f.GPUS_PER_NODE: "GPUs per Node",
    f.NODES: "Nodes",
    f.WORLD_SIZE: "World Size",
    # the speed levers (plan.levers): each run's effective value
    f.COMPILE: "Compiled",
    f.PRECISION: "Precision",
    f.OPTIMIZER: "Optimizer",
    f.GRADIENT_CHECKPOINTING: "Gradient Checkpointing",
    f.LOSS: "Loss",
    f.ATTENTION: "Attention",
    # energy over the steady steps and the GPUs' busy fraction (report/run_summary/energy, gpu_busy)
    f.GPU_ENERGY_J: "GPU Energy, steady steps (J)",
    f.GPU_MEAN_POWER_W: "GPU Mean Power, all GPUs (W)",
    f.GPU_J_PER_SAMPLE: "GPU Energy per Sample (J)",
    f.GPU_J_PER_TOKEN: "GPU Energy per Token (J, incl. padding)",
    f.GPU_ENERGY_PROBLEM: "Why No GPU Energy",
    f.GPU_POWER_INTEGRAL_J: "GPU Power Integral, steady steps (J, cross-check)",
    f.CPU_PACKAGE_ENERGY_J: "CPU Package Energy, steady steps (J, RAPL, whole host)",
    f.TRAINING_GPU_ENERGY_J: "GPU Energy, training window (J)",
    f.GPU_BUSY_FRACTION: "GPU Busy Fraction (steady steps)",
    f.HOST_BOUND: "Host-Bound",
}
# The workshop's headers differ between its tables: per table kind, what differs from LABELS.
KIND_LABELS: dict[str, dict[str, str]] = {
    "comparison": {},
    "baseline": {
        f.CONFIG: "Configuration",
        f.TRAIN_LOSS: "Final Train Loss",
        f.TRAIN_SAMPLES_PER_SECOND: "Train Samples/sec",
        f.GPU_PEAK_MIB: "GPU Peak Usage (MiB)",
        f.GPU_AVERAGE_MIB: "GPU Average Usage (MiB)",
        f.GPU_MODES_MIB: "GPU Mode Usage (training window) (MiB)",
        f.CPU_PEAK_MIB: "CPU Peak Usage (MiB)",
        f.CPU_AVERAGE_MIB: "CPU Average Usage (MiB)",
        f.CPU_MODES_MIB: "CPU Mode Usage (training window) (MiB)",
    },
    "scaling": {
        f.WORLD_SIZE: "GPUs",
        f.TRAIN_SAMPLES_PER_SECOND: "Train Samples/sec (Trainer, whole run)",
        f.CPU_PEAK_MIB: "Peak CPU Memory per Node (MiB)",
        f.CPU_AVERAGE_MIB: "Average CPU Memory per Node (MiB)",
        f.GPU_PEAK_MIB: "Peak GPU Memory (MiB)",
        f.GPU_AVERAGE_MIB: "Average GPU Memory (MiB)",
        f.STEADY_SAMPLES_PER_SECOND: "Steady Samples/sec",
    },
}
# The workshop's evaluation summary groups its metrics; the transposed baseline Markdown keeps the groups.
BASELINE_CATEGORIES: dict[str, str] = {
    **dict.fromkeys(
        (f.TRAIN_LOSS, f.EVAL_LOSS_EPOCH1, f.EVAL_LOSS_EPOCH2, f.EVAL_LOSS, f.TRAIN_SAMPLES_PER_SECOND,
         f.EVAL_SAMPLES_PER_SECOND, f.STEPS_PER_EPOCH),
        "Training Metrics",
    ),
    **dict.fromkeys((f.GPU_PEAK_MIB, f.GPU_AVERAGE_MIB, f.GPU_MODES_MIB, f.NVML_PEAK_MIB), "GPU Memory"),
    **dict.fromkeys((f.CPU_PEAK_MIB, f.CPU_AVERAGE_MIB, f.CPU_MODES_MIB), "CPU Memory"),
    f.STATUS: "Run",
}  # fmt: skip

# Markdown rendering per field (CSV keeps full precision): whole MiB, 2-decimal averages and rates, ...
FORMATS: Final[dict[str, str]] = {
    **dict.fromkeys((f.GPU_PEAK_MIB, f.GPU_PEAK_MIN_MIB, f.CPU_PEAK_MIB, f.NVML_PEAK_MIB, f.TORCH_MAX_RESERVED_MIB), "{:.0f}"),
    **dict.fromkeys((f.STEADY_TOKENS_PER_SECOND, f.STEADY_REAL_TOKENS_PER_SECOND, f.STEPS_PER_EPOCH), "{:.0f}"),
    **dict.fromkeys((f.GPU_AVERAGE_MIB, f.CPU_AVERAGE_MIB), "{:.2f}"),
    **dict.fromkeys(
        (f.TRAIN_SAMPLES_PER_SECOND, f.EVAL_SAMPLES_PER_SECOND, f.STEADY_SAMPLES_PER_SECOND, f.TRAIN_RUNTIME,
         f.FIRST_STEP_SECONDS), "{:.2f}"
    ),
    **dict.fromkeys((f.TRAIN_LOSS, f.EVAL_LOSS_EPOCH1, f.EVAL_LOSS_EPOCH2, f.EVAL_LOSS), "{:.4f}"),
    f.TFLOPS_PER_GPU: "{:.1f}",
    **dict.fromkeys((f.GPU_J_PER_SAMPLE, f.GPU_MEAN_POWER_W), "{:.2f}"),
    **dict.fromkeys((f.GPU_ENERGY_J, f.TRAINING_GPU_ENERGY_J, f.GPU_POWER_INTEGRAL_J, f.CPU_PACKAGE_ENERGY_J), "{:.0f}"),
    f.GPU_J_PER_TOKEN: "{:.4f}",
    f.GPU_BUSY_FRACTION: "percent",
    **dict.fromkeys((f.MFU, f.WEAK_SCALING_EFFICIENCY, f.STEADY_WEAK_SCALING_EFFICIENCY,
                     f.STEADY_WEAK_SCALING_EFFICIENCY_LOW, f.STEADY_WEAK_SCALING_EFFICIENCY_HIGH), "percent"),
    **dict.fromkeys((f.SPEEDUP, f.STEADY_SPEEDUP), "{:.2f}×"),
}  # fmt: skip


@dataclass(frozen=True)
class Interval:
    """Where a field's interval lives in a row (its low and high ends) and how it is written."""

    low: str
    high: str
    digits: int
    percent: bool = False  # a fraction, written as '90.9 % [85.0 %, 95.0 %]'


# The fields shown with their interval (tables' Markdown cells, plots' labels and error bars).
INTERVALS: Final[dict[str, Interval]] = {
    f.STEADY_SAMPLES_PER_SECOND: Interval(f.STEADY_SAMPLES_PER_SECOND_LOW, f.STEADY_SAMPLES_PER_SECOND_HIGH, 1),
    f.STEADY_WEAK_SCALING_EFFICIENCY: Interval(f.STEADY_WEAK_SCALING_EFFICIENCY_LOW,
                                               f.STEADY_WEAK_SCALING_EFFICIENCY_HIGH, 1, percent=True),
}


def with_interval(row: Mapping[str, Any], name: str) -> str:
    """A field of INTERVALS as '54.1 [53.3, 58.4]' (the plain figure where the row has no interval)."""
    spec = INTERVALS[name]
    scale, suffix = (100.0, " %") if spec.percent else (1.0, "")
    low, high = row.get(spec.low), row.get(spec.high)
    return interval_text(scale * row[name], None if low is None else scale * low,
                         None if high is None else scale * high, spec.digits, suffix)


def label(field: str, kind: str) -> str:
    return KIND_LABELS.get(kind, {}).get(field) or LABELS[field]
