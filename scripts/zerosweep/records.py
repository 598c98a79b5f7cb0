"""The record schema: every field a run writes and the report layer reads, defined once.

A run directory holds `run_spec.json` (plan), `metrics.json`, `status.json` and `env.json` (run), and
`summary.json`, the per-run record that `parse-memory` derives from them and from the monitor logs (report).
Tables, plots and answers select columns by the field ids below; display labels live in `report/study/labels.py`.
Memory fields hold MiB (2**20 bytes) and are named `*_mib`.
"""

from __future__ import annotations

from typing import Any, Final, Literal, TypedDict

# --- run side: what the launcher writes -------------------------------------------------------------

RECORDED_STATUSES: Final = ("ok", "oom")  # statuses whose runs keep their records and get a summary.json
RunStatus = Literal["ok", "oom"]


class EvalLoss(TypedDict):
    epoch: float | None
    eval_loss: float


class TorchMemory(TypedDict, total=False):
    """One rank's torch.cuda peaks (monitor/torch_memory_rank<N>.json, also listed in metrics.json)."""

    rank: int
    node_tag: str | None
    host: str | None
    max_memory_allocated_mib: float | None
    max_memory_reserved_mib: float | None
    max_rss_mib: float | None


class Measured(TypedDict, total=False):
    """Measurements of a finished run, in metrics.json and, by the same names, in the run record's `metrics`."""

    train_loss: float | None
    eval_loss: float | None  # final evaluation
    eval_losses: list[EvalLoss] | None  # per evaluation
    train_samples_per_second: float | None
    eval_samples_per_second: float | None
    steps_per_epoch: int | None
    train_runtime: float | None
    steady_samples_per_second: float | None
    steady_tokens_per_second: float | None  # counts padding: every sample is max_length tokens
    real_token_fraction: float | None  # non-padding share of the training tokens (optional in older records)
    world_size: int | None
    # raw input of the derived TFLOP/s and MFU (report/run_summary/throughput.py); in the record: counted from the
    # architecture when metrics.json lacks it
    flops_per_token: float | None
    first_step_seconds: float | None  # optimizer step 1 (steps.csv): compiling lands in it; older records lack it


class MetricsJson(Measured, total=False):
    """The keys of metrics.json that the report layer reads (the launcher writes more)."""

    status: RunStatus
    n_params: int | None
    tokens_per_sample: int | None
    gpu_name: str | None
    torch_memory: list[TorchMemory]


class StatusJson(TypedDict, total=False):
    run_id: str
    status: str
    error: str | None
    exit_code: int


class EnvJson(TypedDict, total=False):
    """The keys of env.json that the report layer reads."""

    run_id: str
    gpu_model: str | None


# Measurements copied from metrics.json into the per-run record as they are (flops_per_token is resolved).
# Expected in every finished run's metrics.json (a missing one is warned about); the optional ones are copied
# when present.
OPTIONAL_METRICS: Final = ("flops_per_token", "real_token_fraction", "first_step_seconds")
RECORD_METRICS: Final = tuple(name for name in Measured.__annotations__ if name not in OPTIONAL_METRICS)

# --- report side: the per-run record (summary.json) ---------------------------------------------------

# 2: *_mb -> *_mib, derived TFLOP/s and MFU moved to the tables, `unusable`;
# 3: GPU figures from the run's own GPUs only, per-GPU spread (peak_min_mib, gpus_counted), emulated_nodes
SCHEMA_VERSION: Final = 3


class Point(TypedDict):
    deepspeed: bool
    zero_stage: int | None
    offload: str
    pin_memory: bool
    gpus_per_node: int
    nodes: int
    world_size: int


class Setup(TypedDict):
    device: str | None
    model: str | None  # plan.models.model_label: "bloom-560m (random init)" or the checkpoint's name
    gpu_name: str | None  # for the GPU's peak TFLOP/s: metrics.json, else env.json, else the nvidia-smi log
    samples_per_gpu: int | None
    eval_samples: int | None
    max_length: int | None
    epochs: float | None
    per_device_batch_size: int | None
    gradient_accumulation_steps: int | None
    # every speed lever's effective value (plan.levers.run_values of the spec's training; keys = lever names);
    # records written before the levers existed have precision only (the others ran at the lever's default)
    precision: str | None
    compile: bool | None
    optimizer: str | None
    gradient_checkpointing: bool | None
    loss: str | None
    attention: str | None


class TrainingWindowModes(TypedDict):
    """The run-level modes that tables show: over the training window only (report/run_summary/training_window.py); None
    with the reason where the run has no window (no step recorded) or one of its logs cannot be placed in it."""

    training_window_modes_mib: list[float] | None
    training_window_samples: int
    training_window_problem: str | None


class GpuMemory(TrainingWindowModes, total=False):
    """nvidia-smi: per GPU (`gpus`), per node (`nodes`) and for the run."""

    gpus: list[dict[str, Any]]
    nodes: list[dict[str, Any]]
    gpus_counted: int  # the run's own GPUs with samples, each once
    peak_mib: float  # the highest GPU's peak
    peak_min_mib: float  # the lowest GPU's peak: with peak_mib, the spread over GPUs (unbalanced sharding)
    average_mib: float
    modes_mib: list[float]  # over the whole log (per GPU: the workshop's printout, `gpus[].workshop_line`)
    mode_text: str


class NvmlMemory(TypedDict):
    gpus: list[dict[str, Any]]
    gpus_counted: int
    peak_mib: float
    peak_min_mib: float


class GpuClocks(TypedDict):
    """report/run_summary/gpu_clocks.py: SM clock, power and temperature over the run's training steps."""

    window: str  # "training steps" (steps.csv) | "whole log"
    gpus: list[dict[str, Any]]
    sm_clock_mhz_median: float  # the slowest GPU's median
    sm_clock_mhz_min: float
    throttled: list[str]  # clock event reasons seen on any GPU (GPU idle not counted)


class WindowEnergy(TypedDict):
    """Energy over one window of a run (report/run_summary/energy.py): the steady steps (each step's own span:
    warm-up and evaluation/save steps left out, the steps the steady throughput is measured on) or the training
    window (first step's start to last step's end). Each figure is None with its *_problem saying why."""

    window: str  # "steady steps" | "training window"
    seconds: float  # the spans' total length
    samples: int  # trained in the spans (steps.csv), as the steady throughput counts them
    tokens: int  # padding included (steps.csv: samples x max_length), as tokens/s counts them
    gpu_energy_j: float | None  # NVML total-energy counter, the run's GPUs together
    gpu_energy_problem: str | None
    gpu_mean_power_w: float | None  # gpu_energy_j / seconds (all GPUs together)
    gpu_j_per_sample: float | None
    gpu_j_per_token: float | None
    # the same energy from the power samples (trapezoid over the clocks log's power_w): a cross-check, labelled
    power_integral_j: float | None
    power_integral_problem: str | None
    cpu_package_energy_j: float | None  # RAPL, the hosts' CPU packages (every process on them, not only the run)
    cpu_package_problem: str | None
    gpus: list[dict[str, Any]]  # host, index, energy_j, mean_power_w, power_integral_j, problem
    nodes: list[dict[str, Any]]  # host, gpus, energy_j, mean_power_w, power_integral_j, cpu_package_energy_j


class Energy(TypedDict):
    """summary.json `energy`: the run's energy over its steady steps and its training window (None without
    steps.csv, `problem` says so), and what each figure is taken from."""

    counter: str  # the GPU energy's source
    power_integral: str  # the cross-check's
    cpu_package: str  # RAPL's
    steady: WindowEnergy | None
    training: WindowEnergy | None
    problem: str | None


class GpuBusy(TypedDict):
    """summary.json `gpu_busy` (report/run_summary/gpu_busy.py): the share of the steady steps' time in which the
    GPUs ran a kernel, from NVML's utilisation samples, and whether that makes the run host-bound."""

    method: str
    busy_fraction: float | None  # mean over the run's GPUs; None with busy_problem
    busy_problem: str | None
    host_bound: bool | None  # busy_fraction < host_bound_below
    host_bound_below: float
    samples: int  # utilisation samples inside the steady steps, all GPUs
    gpus: list[dict[str, Any]]  # host, index, busy_fraction, samples, problem


class TorchPeaks(TypedDict):
    ranks: list[dict[str, Any]]
    max_allocated_mib: float | None
    max_reserved_mib: float | None
    max_rss_mib: float | None


class CpuMemory(TrainingWindowModes):
    """psrecord's Real column (its "MB" is rss / 2**20: MiB), per node and for the run."""

    nodes: list[dict[str, Any]]
    peak_mib: float
    average_mib: float
    modes_mib: list[float]  # over the whole log (per node: the workshop's printout, `nodes[].workshop_lines`)
    mode_text: str


class RunRecord(TypedDict):
    """results/runs/<run>/summary.json."""

    schema_version: int
    run_id: str
    label: str
    status: RunStatus
    point: Point
    setup: Setup
    metrics: Measured
    emulated_nodes: bool  # several nodes emulated on one host (status.json launch_mode local-nodes)
    gpu_map_source: str | None  # how GPU samples were tied to the run's ranks; None: not tied (all counted)
    gpu: GpuMemory | None
    nvml: NvmlMemory | None
    gpu_clocks: GpuClocks | None  # None without a clocks log (CPU runs, records before clocks were sampled)
    torch: TorchPeaks | None
    cpu: CpuMemory | None
    throughput: dict[str, Any] | None  # steady throughput from steps.csv (report/run_summary/throughput.py); None without
    # Added within schema 3: summaries written before lack these keys (readers: record.get("energy"))
    energy: Energy
    gpu_busy: GpuBusy
    warnings: list[str]
    unusable: str | None  # why nothing valid was left in the run's logs; None when usable
    job_seconds: float | None  # the job's wall time (status.json); added within schema 3: readers .get() it


# --- table fields: the columns of results/tables/<study>.csv, by id ---------------------------------------

TableField = str
CONFIG: Final = "config"
MODEL: Final = "model"  # setup.model (plan.models.model_label)
STATUS: Final = "status"
RUN_ID: Final = "run_id"
ZERO_STAGE: Final = "zero_stage"
OFFLOAD: Final = "offload"
PIN_MEMORY: Final = "pin_memory"
GPUS_PER_NODE: Final = "gpus_per_node"
NODES: Final = "nodes"
WORLD_SIZE: Final = "world_size"
GPU_PEAK_MIB: Final = "gpu_peak_mib"
GPU_AVERAGE_MIB: Final = "gpu_average_mib"
GPU_PEAK_MIN_MIB: Final = "gpu_peak_min_mib"  # the lowest GPU's peak: with gpu_peak_mib, the spread over GPUs
GPUS_COUNTED: Final = "gpus_counted"  # GPUs whose samples count (the run's own, each once)
EMULATED_NODES: Final = "emulated_nodes"  # nodes emulated on one host (launch mode local-nodes)
GPU_MODES_MIB: Final = "gpu_modes_mib"  # over the training window (summary.json gpu.training_window_modes_mib)
NVML_PEAK_MIB: Final = "nvml_peak_mib"
TORCH_MAX_RESERVED_MIB: Final = "torch_max_reserved_mib"
CPU_PEAK_MIB: Final = "cpu_peak_mib"
CPU_AVERAGE_MIB: Final = "cpu_average_mib"
CPU_MODES_MIB: Final = "cpu_modes_mib"  # over the training window (cpu.training_window_modes_mib)
TRAIN_SAMPLES_PER_SECOND: Final = "train_samples_per_second"
EVAL_SAMPLES_PER_SECOND: Final = "eval_samples_per_second"
STEADY_SAMPLES_PER_SECOND: Final = "steady_samples_per_second"  # a row: median of its runs' step medians
# The row's interval: one run's 95 % CI of its median step, or min-max over a point's repeats (STEADY_SPREAD)
STEADY_SAMPLES_PER_SECOND_LOW: Final = "steady_samples_per_second_low"
STEADY_SAMPLES_PER_SECOND_HIGH: Final = "steady_samples_per_second_high"
# optimizer step 1's seconds (metrics.json, from steps.csv): the compile cost, kept out of the steady window
FIRST_STEP_SECONDS: Final = "first_step_seconds"
# The run's speed levers (plan.levers.LEVERS; the field id is the lever's name), from its spec's settings.training
COMPILE: Final = "compile"
PRECISION: Final = "precision"
OPTIMIZER: Final = "optimizer"
GRADIENT_CHECKPOINTING: Final = "gradient_checkpointing"
LOSS: Final = "loss"
ATTENTION: Final = "attention"
STEADY_SPREAD: Final = "steady_spread"  # "95 % CI" | "min-max"; empty without per-step records
REPEATS: Final = "repeats"  # N: the point's runs in the row
RUNS: Final = "runs"  # the row's run ids, space-separated
HIT_CAP: Final = "hit_cap"  # a run stopped at the step/time cap before its interval was narrow enough
# a finished run of the row whose warm-up never settled (its steady window starts at the minimum warm-up)
WARMUP_NEVER_SETTLED: Final = "warmup_never_settled"
# The row's run-level values, space-separated in run order (CSV only): what a test between rows of two
# different tables is computed from (report/summary/answers), since a row's verdict holds only against its own reference
RUN_SAMPLES_PER_SECOND: Final = "run_samples_per_second"  # each finished run's steady samples/s
RUN_PEAK_MIB: Final = "run_peak_mib"  # each finished run's peak (the source the table's memory verdict uses)
# what those values are (a test between rows of two tables compares like with like only)
RUN_SAMPLES_ESTIMATOR: Final = "run_samples_estimator"  # report.run_summary.throughput MEDIAN_STEP | LAUNCHER_MEAN
RUN_PEAK_SOURCE: Final = "run_peak_source"  # report.run_summary.run_peak PEAK_LABELS
# Verdict of the row against the study's reference row (report/statistics.py); ratio = row / reference
THROUGHPUT_VERDICT: Final = "throughput_verdict"
THROUGHPUT_RATIO: Final = "throughput_ratio"
THROUGHPUT_RATIO_LOW: Final = "throughput_ratio_low"
THROUGHPUT_RATIO_HIGH: Final = "throughput_ratio_high"
THROUGHPUT_P: Final = "throughput_p"
MEMORY_VERDICT: Final = "memory_verdict"
MEMORY_RATIO: Final = "memory_ratio"
MEMORY_RATIO_LOW: Final = "memory_ratio_low"
MEMORY_RATIO_HIGH: Final = "memory_ratio_high"
MEMORY_P: Final = "memory_p"
# Energy over the steady steps (summary.json energy.steady; report/run_summary/energy.run_energy): the NVML
# total-energy counter of the run's GPUs together; the power integral a labelled cross-check; RAPL the CPU packages
GPU_ENERGY_J: Final = "gpu_energy_j"
GPU_MEAN_POWER_W: Final = "gpu_mean_power_w"
GPU_J_PER_SAMPLE: Final = "gpu_j_per_sample"
GPU_J_PER_TOKEN: Final = "gpu_j_per_token"  # padding included, as tokens/s
GPU_ENERGY_PROBLEM: Final = "gpu_energy_problem"  # why the counter figures are empty
GPU_POWER_INTEGRAL_J: Final = "gpu_power_integral_j"
CPU_PACKAGE_ENERGY_J: Final = "cpu_package_energy_j"
TRAINING_GPU_ENERGY_J: Final = "training_gpu_energy_j"  # the whole training window's (energy.training)
# Share of the steady steps' time the GPUs ran a kernel (NVML utilisation; gpu_busy.busy_fraction), and whether
# it is below report/run_summary/gpu_busy.HOST_BOUND_BELOW
GPU_BUSY_FRACTION: Final = "gpu_busy_fraction"
HOST_BOUND: Final = "host_bound"
STEADY_TOKENS_PER_SECOND: Final = "steady_tokens_per_second"  # padding included
STEADY_REAL_TOKENS_PER_SECOND: Final = "steady_real_tokens_per_second"  # x real_token_fraction: padding left out
TFLOPS_PER_GPU: Final = "tflops_per_gpu"
MFU: Final = "mfu"
TRAIN_RUNTIME: Final = "train_runtime"
TRAIN_LOSS: Final = "train_loss"
EVAL_LOSS_EPOCH1: Final = "eval_loss_epoch1"
EVAL_LOSS_EPOCH2: Final = "eval_loss_epoch2"
EVAL_LOSS: Final = "eval_loss"
STEPS_PER_EPOCH: Final = "steps_per_epoch"
SPEEDUP: Final = "speedup"  # from the Trainer's whole-run samples/s (secondary)
STEADY_SPEEDUP: Final = "steady_speedup"  # from the steady samples/s (primary)
WEAK_SCALING_EFFICIENCY: Final = "weak_scaling_efficiency"
STEADY_WEAK_SCALING_EFFICIENCY: Final = "steady_weak_scaling_efficiency"
# its 95 % interval: the throughput ratio's (Welch on log run medians) x GPUs_ref / GPUs; repeats at both ends only
STEADY_WEAK_SCALING_EFFICIENCY_LOW: Final = "steady_weak_scaling_efficiency_low"
STEADY_WEAK_SCALING_EFFICIENCY_HIGH: Final = "steady_weak_scaling_efficiency_high"

# pandas dtypes for reading a table back (`pandas.read_csv(path, dtype=table_dtypes(columns))`): nullable,
# so an empty cell stays missing and whole numbers stay whole. Unlisted fields are Float64.
_FIELD_DTYPES: Final[dict[str, str]] = {
    CONFIG: "string",
    MODEL: "string",
    STATUS: "string",
    RUN_ID: "string",
    OFFLOAD: "string",
    GPU_MODES_MIB: "string",  # the workshop's rendering: "2145, 2178"
    CPU_MODES_MIB: "string",
    ZERO_STAGE: "Int64",
    GPUS_PER_NODE: "Int64",
    NODES: "Int64",
    WORLD_SIZE: "Int64",
    STEPS_PER_EPOCH: "Int64",
    PIN_MEMORY: "boolean",
    GPUS_COUNTED: "Int64",
    EMULATED_NODES: "boolean",
    STEADY_SPREAD: "string",
    REPEATS: "Int64",
    RUNS: "string",
    HIT_CAP: "boolean",
    WARMUP_NEVER_SETTLED: "boolean",
    RUN_SAMPLES_PER_SECOND: "string",
    RUN_PEAK_MIB: "string",
    RUN_SAMPLES_ESTIMATOR: "string",
    RUN_PEAK_SOURCE: "string",
    THROUGHPUT_VERDICT: "string",
    MEMORY_VERDICT: "string",
    COMPILE: "boolean",
    PRECISION: "string",
    OPTIMIZER: "string",
    GRADIENT_CHECKPOINTING: "boolean",
    LOSS: "string",
    ATTENTION: "string",
    GPU_ENERGY_PROBLEM: "string",
    HOST_BOUND: "boolean",
}


def table_dtypes(columns: list[str]) -> dict[str, str]:
    return {column: _FIELD_DTYPES.get(column, "Float64") for column in columns}
