"""A run's energy: joules, mean power, J/sample and J/token over its steady steps and over its training window,
per GPU, per node and for the run (summary.json `energy`), and the one answer to "how much energy per sample did
this run take" that tables, the tune recommendation and `compare` read (`run_energy`).

- GPU energy: NVML's total-energy counter (nvmlDeviceGetTotalEnergyConsumption, mJ since the driver loaded),
  sampled with the memory every nvml_interval_ms (`nvml_<host>.csv`). A window's energy is the counter's rise
  from each span's start to its end, linear between samples; the steady steps are each their own span, so the
  evaluation and save steps between them are left out, as the steady throughput leaves them out. Samples and
  tokens are those steps' own (steps.csv; tokens with padding, as tokens/s counts them). A counter that falls
  inside a window (a driver reload resets it; a 64-bit counter of mJ does not wrap in practice, and a fall cannot
  be told from a wrap) gives no figure for that window, with the reason: never a negative energy.
- Power integral: the trapezoid of the power samples of the clocks log (`gpu_clocks_<host>.csv`, every
  CLOCK_EVERY-th sample; NVML's power reading is itself a ~1 s average on Ampere and newer), over the same spans:
  a cross-check of the counter, labelled as one, never in its place.
- CPU package energy: RAPL (`rapl_<host>.csv`, the host's package counters every second, unwrapped with
  max_energy_range_uj), where the host let the node read it. It is the whole host's CPUs, every process, counted
  once per host (emulated nodes share one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ... import records
from ...jsonio import read_json_or_none
from ...run.monitors import CLOCK_EVERY
from .gpu_activity import GpuActivity, RunActivity
from .gpu_clocks import ClocksError, read_clocks
from .gpu_memory import GpuFilter
from .gpus import RunGpus
from .logs import CLOCKS_LOG, RAPL, RAPL_LOG, LogError, host_of, matching_logs, read_log
from .training_window import StepSpans

if TYPE_CHECKING:
    import numpy as np

COUNTER = "NVML total-energy counter (nvmlDeviceGetTotalEnergyConsumption), the run's GPUs together"
POWER_INTEGRAL = (f"power integral: trapezoid of NVML power samples (nvmlDeviceGetPowerUsage, every {CLOCK_EVERY}th "
                  "sample of the NVML sampler), a cross-check of the counter")
CPU_PACKAGE = "RAPL package counters (/sys/class/powercap intel-rapl:<N>), the hosts' whole CPUs, each host once"
UJ_PER_J = 1e6
MJ_PER_J = 1e3


class EnergyProblem(ValueError):
    """No energy figure for a window from a series; the message says why."""


@dataclass(frozen=True)
class Cumulative:
    """A cumulative energy series of one source (a GPU's counter, its integrated power, a host's packages)."""

    host: str
    index: int | None  # the GPU's NVML index; None for a host's CPU packages
    seconds: np.ndarray  # unix seconds, ascending
    joules: np.ndarray  # energy since the series' start, non-decreasing
    problem: str | None = None  # no series: why


def energy_over(series: Cumulative, spans: StepSpans, what: str) -> float:
    """The series' rise over the spans, linear between samples; EnergyProblem where the series is missing or its
    samples do not cover the spans."""
    import numpy as np

    if series.problem is not None:
        raise EnergyProblem(series.problem)
    if series.seconds.size < 2:
        raise EnergyProblem(f"{what}: {series.seconds.size} sample(s), no rise to measure")
    if series.seconds[0] > spans.first or series.seconds[-1] < spans.last:
        raise EnergyProblem(f"{what}: samples from {series.seconds[0]:.3f} to {series.seconds[-1]:.3f} do not cover "
                            f"the {spans.name} ({spans.first:.3f} to {spans.last:.3f})")
    rise = np.interp(spans.ends, series.seconds, series.joules) - np.interp(spans.starts, series.seconds, series.joules)
    return float(rise.sum())


def _bounding(seconds: np.ndarray, spans: StepSpans) -> slice:
    """The samples a window's figure is interpolated from: the last at or before its start to the first at or after
    its end."""
    import numpy as np

    low = max(int(np.searchsorted(seconds, spans.first, side="right")) - 1, 0)
    return slice(low, int(np.searchsorted(seconds, spans.last, side="left")) + 1)


def counter_series(gpu: GpuActivity, spans: StepSpans) -> Cumulative:
    """A GPU's energy counter as a cumulative series for one window; a fall of the counter among the samples the
    window is read from is the window's problem (a reset, or a wrap: either way the rise is unknown)."""
    import numpy as np

    what = f"GPU {gpu.index} of {gpu.host}"
    if gpu.problem is not None:
        return Cumulative(gpu.host, gpu.index, gpu.seconds, gpu.values, gpu.problem)
    order = np.argsort(gpu.seconds, kind="stable")
    seconds, millijoules = gpu.seconds[order], gpu.values[order]
    used = _bounding(seconds, spans)
    falls = np.flatnonzero(np.diff(millijoules[used]) < 0)
    if falls.size:
        at = (used.start or 0) + int(falls[0])
        return Cumulative(gpu.host, gpu.index, seconds, millijoules, (
            f"{what}: its energy counter fell by {(millijoules[at] - millijoules[at + 1]) / MJ_PER_J:.3f} J at "
            f"{seconds[at + 1]:.3f} (a counter reset or wrap) inside the {spans.name}: no counter figure for it"))
    return Cumulative(gpu.host, gpu.index, seconds, (millijoules - millijoules[0]) / MJ_PER_J)


def trapezoid_series(host: str, index: int, seconds: np.ndarray, watts: np.ndarray) -> Cumulative:
    """Power samples integrated by the trapezoid rule into a cumulative series."""
    import numpy as np

    order = np.argsort(seconds, kind="stable")
    seconds, watts = seconds[order], watts[order]
    steps = np.diff(seconds) * (watts[1:] + watts[:-1]) / 2.0
    return Cumulative(host, index, seconds, np.concatenate([[0.0], np.cumsum(steps)]))


def power_series(run_dir: Path, own: RunGpus | None) -> dict[tuple[str, int], Cumulative]:
    """(host, index) -> the GPU's integrated power, from the clocks logs (each GPU once)."""
    series: dict[tuple[str, int], Cumulative] = {}
    kept = GpuFilter(own, "NVML clocks", [])  # its warnings are summarise_clocks's, already given
    for path, match in matching_logs(run_dir / "monitor", CLOCKS_LOG):
        try:
            frame = read_clocks(path)
        except ClocksError:  # summarise_clocks warns; its GPUs read "no power samples"
            continue
        for index, rows in frame.groupby("index"):
            if kept.keeps(host_of(match), int(index), path.name):
                series[(host_of(match), int(index))] = trapezoid_series(
                    host_of(match), int(index), rows["timestamp_s"].to_numpy(dtype=float),
                    rows["power_w"].to_numpy(dtype=float))
    return series


# --- CPU packages (RAPL) -------------------------------------------------------------------------------


def rapl_series(path: Path, host: str) -> Cumulative:
    """A node's CPU packages' energy as one cumulative series: each package's counter unwrapped (a fall is a wrap
    at max_energy_range_uj: at one sample a second a counter cannot wrap twice between two), the packages summed
    at the samples' times."""
    import numpy as np

    try:
        log = read_log(path, RAPL)
    except LogError as error:  # a broken RAPL log costs the CPU figure, not the run's summary
        return Cumulative(host, None, np.empty(0), np.empty(0), str(error))
    by_zone: dict[str, list[list[Any]]] = {}
    for _line, values in log.rows:
        by_zone.setdefault(values[1], []).append(values)
    if not by_zone:
        return Cumulative(host, None, np.empty(0), np.empty(0), f"{path.name}: no RAPL sample")
    # every sample reads every package at one time stamp; a partial last sample has only some: left out
    common = reduce(np.intersect1d, [np.array([row[0] for row in rows], dtype=float) for rows in by_zone.values()])
    total = np.zeros(common.size)
    for zone, rows in sorted(by_zone.items()):
        seconds = np.array([row[0] for row in rows], dtype=float)
        counter = np.array([row[3] for row in rows], dtype=float)
        ranges = np.array([row[4] for row in rows], dtype=float)
        rise = np.diff(counter)
        wrapped = rise < 0
        rise[wrapped] += ranges[1:][wrapped]
        if (rise < 0).any():
            return Cumulative(host, None, np.empty(0), np.empty(0),
                              f"{path.name}: RAPL zone {zone} fell by more than its max_energy_range_uj")
        cumulative = np.concatenate([[0.0], np.cumsum(rise)]) / UJ_PER_J
        total += np.interp(common, seconds, cumulative)
    return Cumulative(host, None, common, total)


def _rapl_reason(nodes: Mapping[str, Mapping[str, Any]]) -> str:
    reasons = sorted({str(reason) for node in nodes.values()
                      if (reason := ((node.get("monitors") or {}).get("rapl") or {}).get("reason"))})
    if reasons:
        return "no RAPL log (rapl_<host>.csv): " + "; ".join(reasons)
    return "no RAPL log (rapl_<host>.csv): the node records predate RAPL sampling"


def cpu_package_series(run_dir: Path) -> tuple[list[Cumulative], str | None]:
    """Each host's CPU-package series once (emulated nodes share a host: the first tag's log counts), or why none."""
    nodes = {str(record["tag"]): record for path in sorted((run_dir / "records").glob("node*.json"))
             if isinstance(record := read_json_or_none(path), dict) and record.get("tag") is not None}
    logs = matching_logs(run_dir / "monitor", RAPL_LOG)
    if not logs:
        return [], _rapl_reason(nodes)
    by_host: dict[str, Cumulative] = {}
    for path, match in logs:
        tag = host_of(match)
        machine = str((nodes.get(tag) or {}).get("host") or tag)
        if machine not in by_host:
            by_host[machine] = rapl_series(path, tag)
    return list(by_host.values()), None


# --- one window ------------------------------------------------------------------------------------------


def _figure(series: Cumulative | None, spans: StepSpans, what: str, missing: str) -> tuple[float | None, str | None]:
    if series is None:
        return None, missing
    try:
        return energy_over(series, spans, what), None
    except EnergyProblem as error:
        return None, str(error)


def _total(figures: Sequence[tuple[float | None, str | None]], expected: int | None,
           what: str) -> tuple[float | None, str | None]:
    """The sum of per-GPU (or per-host) figures, or the first problem: a total of part of the run is not the run's."""
    problems = list(dict.fromkeys(str(problem) for value, problem in figures if value is None))
    if problems:
        more = len(problems) - 1
        return None, problems[0] + (f" (and {more} more)" if more else "")
    if expected is not None and len(figures) != expected:
        return None, f"{what} for {len(figures)} of the run's {expected} GPUs"
    if not figures:
        return None, f"no {what}"
    return sum(float(value) for value, _ in figures if value is not None), None


def _per(value: float | None, count: float) -> float | None:
    return None if value is None or count <= 0 else value / count


def window_energy(spans: StepSpans, activity: RunActivity, power: Mapping[tuple[str, int], Cumulative],
                  packages: tuple[list[Cumulative], str | None], expected_gpus: int | None) -> records.WindowEnergy:
    """One window's energy: per GPU, per node (monitor file tag) and for the run."""
    counters = {(gpu.host, gpu.index): counter_series(gpu, spans) for gpu in activity.energy}
    keys = sorted(set(counters) | set(power))
    no_log = activity.problem or "no NVML energy counter"
    gpus: list[dict[str, Any]] = []
    for host, index in keys:
        what = f"GPU {index} of {host}"
        energy, problem = _figure(counters.get((host, index)), spans, what,
                                  activity.problem or f"no NVML sample of {what} (nvml_{host}.csv)")
        integral, integral_problem = _figure(power.get((host, index)), spans, what,
                                             f"no power samples of {what} (gpu_clocks_{host}.csv)")
        gpus.append({"host": host, "index": index, "energy_j": energy, "mean_power_w": _per(energy, spans.seconds),
                     "problem": problem, "power_integral_j": integral, "power_integral_problem": integral_problem})
    hosts, package_problem = packages
    package_figures = {series.host: _figure(series, spans, f"CPU packages of {series.host}", "") for series in hosts}
    nodes: list[dict[str, Any]] = []
    for host in sorted({gpu["host"] for gpu in gpus} | set(package_figures)):
        mine = [gpu for gpu in gpus if gpu["host"] == host]
        energy = _total([(gpu["energy_j"], gpu["problem"]) for gpu in mine], None, "NVML energy")[0]
        nodes.append({"host": host, "gpus": len(mine), "energy_j": energy, "mean_power_w": _per(energy, spans.seconds),
                      "power_integral_j": _total([(gpu["power_integral_j"], gpu["power_integral_problem"])
                                                  for gpu in mine], None, "power samples")[0],
                      "cpu_package_energy_j": package_figures.get(host, (None, None))[0]})
    energy, problem = _total([(gpu["energy_j"], gpu["problem"]) for gpu in gpus], expected_gpus, "NVML energy")
    if not gpus:
        problem = no_log
    integral, integral_problem = _total([(gpu["power_integral_j"], gpu["power_integral_problem"]) for gpu in gpus],
                                        expected_gpus, "power samples")
    if not gpus:
        integral_problem = f"no power samples (gpu_clocks_<host>.csv): {no_log}"
    package, package_total_problem = (None, package_problem) if package_problem else _total(
        list(package_figures.values()), None, "RAPL package energy")
    return {
        "window": spans.name, "seconds": spans.seconds, "samples": spans.samples, "tokens": spans.tokens,
        "gpu_energy_j": energy, "gpu_energy_problem": problem, "gpu_mean_power_w": _per(energy, spans.seconds),
        "gpu_j_per_sample": _per(energy, spans.samples), "gpu_j_per_token": _per(energy, spans.tokens),
        "power_integral_j": integral, "power_integral_problem": integral_problem,
        "cpu_package_energy_j": package, "cpu_package_problem": package_total_problem,
        "gpus": gpus, "nodes": nodes,
    }


def summarise_energy(run_dir: Path, activity: RunActivity, steady: StepSpans | None, training: StepSpans | None,
                     own: RunGpus | None, expected_gpus: int | None) -> records.Energy:
    """summary.json's `energy`: over the steady steps and over the training window. `expected_gpus`: the run's
    GPU count (a total over fewer is not the run's); None on CPU ranks."""
    power = power_series(run_dir, own)
    packages = cpu_package_series(run_dir)
    problem = None
    if training is None:
        problem = "no steps.csv with a step: no window to take the energy over"
    elif steady is None:
        problem = "no steady step: no steady window (the training window's figures stand)"
    return {
        "counter": COUNTER, "power_integral": POWER_INTEGRAL, "cpu_package": CPU_PACKAGE,
        "steady": None if steady is None else window_energy(steady, activity, power, packages, expected_gpus),
        "training": None if training is None else window_energy(training, activity, power, packages, expected_gpus),
        "problem": problem,
    }


# --- what tables read ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunEnergy:
    """A run's energy figures as tables, the recommendation and compare show them: the steady steps' (the window
    the steady throughput is measured on), and the training window's GPU energy."""

    gpu_energy_j: float | None
    gpu_mean_power_w: float | None
    gpu_j_per_sample: float | None
    gpu_j_per_token: float | None
    problem: str | None  # why the counter figures are empty
    power_integral_j: float | None
    cpu_package_energy_j: float | None
    training_gpu_energy_j: float | None


NOT_RECORDED = "the summary predates energy figures (rerun parse-memory)"


def run_energy(record: Mapping[str, Any]) -> RunEnergy:
    """The run's energy figures from its summary.json (None, with the reason, where it has none)."""
    section = record.get("energy")
    if section is None:
        return RunEnergy(None, None, None, None, NOT_RECORDED, None, None, None)
    steady: Mapping[str, Any] = section.get("steady") or {}
    training: Mapping[str, Any] = section.get("training") or {}
    problem = steady.get("gpu_energy_problem") if steady else section.get("problem")
    return RunEnergy(
        gpu_energy_j=steady.get("gpu_energy_j"), gpu_mean_power_w=steady.get("gpu_mean_power_w"),
        gpu_j_per_sample=steady.get("gpu_j_per_sample"), gpu_j_per_token=steady.get("gpu_j_per_token"),
        problem=problem, power_integral_j=steady.get("power_integral_j"),
        cpu_package_energy_j=steady.get("cpu_package_energy_j"), training_gpu_energy_j=training.get("gpu_energy_j"))
