"""How busy a run's GPUs were over its steady steps, and whether that makes the run host-bound (summary.json
`gpu_busy`; the tables' mark).

NVML's utilisation (nvmlDeviceGetUtilizationRates().gpu) is the percentage of its last sample period (1/6 s to
1 s, by product) in which one or more kernels ran on the GPU. The busy fraction of a GPU is the mean of its
utilisation samples (NVML sampler, every nvml_interval_ms) whose time stamps lie inside one of the steady steps
(warm-up and evaluation/save steps left out, as the steady throughput leaves them out), over 100; the run's is
the mean over its GPUs. A GPU that waits for the host (data loading, Python and launch overhead between small
kernels, optimizer steps on the CPU) is idle for that time, so a run whose busy fraction is below
HOST_BOUND_BELOW is marked host-bound: its step times depend on the host, which is where run-to-run noise at small
batches comes from. A kernel that runs counts as busy however few of the GPU's SMs it uses, so a busy GPU is not
necessarily a fully used one (MFU says that).
"""

from __future__ import annotations

from typing import Any, Final

from ... import records
from .gpu_activity import RunActivity
from .training_window import StepSpans, inside_spans

HOST_BOUND_BELOW: Final = 0.90  # busy fraction under which a run is marked host-bound (tables' mark and footnote)
# Steady steps shorter than this get no busy fraction: each utilisation reading covers NVML's last sample period
# (up to 1 s), so over a second or two the readings are few and partly from before the window (a tune probe's 3
# steady steps on an H100 last 0.75-3.1 s)
MIN_BUSY_WINDOW_S: Final = 5.0
METHOD = ("mean of NVML utilisation samples (nvmlDeviceGetUtilizationRates.gpu: % of NVML's sample period in which "
          "a kernel ran) inside the steady steps, / 100, averaged over the run's GPUs")


def host_bound(busy_fraction: float | None) -> bool | None:
    """Whether a busy fraction marks its run (or row) host-bound; None without one."""
    return None if busy_fraction is None else busy_fraction < HOST_BOUND_BELOW


def summarise_busy(activity: RunActivity, steady: StepSpans | None, expected_gpus: int | None) -> records.GpuBusy:
    """The run's busy fraction over its steady steps (None with the reason where it cannot be had, or where the
    steady steps are too short to judge it: MIN_BUSY_WINDOW_S)."""
    gpus: list[dict[str, Any]] = []
    for gpu in activity.utilization:
        inside = inside_spans(gpu.seconds, steady) if steady is not None and gpu.problem is None else None
        count = 0 if inside is None else int(inside.sum())
        why = gpu.problem
        if why is None and steady is None:
            why = "no steady step (steps.csv)"
        elif why is None and count == 0:
            why = f"{gpu.file}: no utilisation sample of GPU {gpu.index} inside the steady steps"
        fraction = float(gpu.values[inside].mean()) / 100.0 if inside is not None and count else None
        gpus.append({"host": gpu.host, "index": gpu.index, "busy_fraction": fraction, "samples": count,
                     "problem": why})
    problems = list(dict.fromkeys(str(gpu["problem"]) for gpu in gpus if gpu["busy_fraction"] is None))
    busy: float | None = None
    if not gpus:
        problem: str | None = activity.problem or "no NVML utilisation samples"
    elif problems:
        problem = problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
    elif expected_gpus is not None and len(gpus) != expected_gpus:
        problem = f"NVML utilisation for {len(gpus)} of the run's {expected_gpus} GPUs"
    elif steady is not None and steady.seconds < MIN_BUSY_WINDOW_S:
        problem = (f"steady steps of {steady.seconds:.1f} s, under the {MIN_BUSY_WINDOW_S:.0f} s a busy fraction "
                   "needs (each NVML utilisation reading covers up to the last second)")
    else:
        problem = None
        busy = sum(gpu["busy_fraction"] for gpu in gpus) / len(gpus)
    return {"method": METHOD, "busy_fraction": busy, "busy_problem": problem, "host_bound": host_bound(busy),
            "host_bound_below": HOST_BOUND_BELOW, "samples": sum(gpu["samples"] for gpu in gpus), "gpus": gpus}
