"""GPU memory of one run from its nvidia-smi and NVML logs, restricted to the run's own GPUs.

Older records (and every emulated node before the monitors were restricted) log every GPU of the host: a
sample counts only if `RunGpus.keeps(tag, index)` says the GPU is one of the run's ranks' on that node (tag =
the monitor file's host/tag group). One physical GPU is counted once even if several files logged it.
Per-GPU figures are kept; the run level is the highest GPU's peak, the lowest GPU's peak (so the spread
over GPUs shows unbalanced sharding) and the mean of the per-GPU averages. Per-GPU figures and the pooled
`modes_mib` are over the whole log, as the workshop's analyze_memory.py prints them; the modes the tables show
(`training_window_modes_mib`) are over the training window only, where the idle samples before and after
training cannot outnumber the busy ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ... import records
from . import workshop
from .gpus import RunGpus
from .logs import (
    GPU_LOG,
    NVIDIA_SMI,
    NVML_LOG,
    ParsedLog,
    host_of,
    matching_logs,
    read_log,
    read_nvml_log,
)
from .training_window import NoWindow, TrainingWindow

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


def mean(values: Iterable[float]) -> float:
    items = list(values)
    return math.fsum(items) / len(items)


def skipped(log: ParsedLog | None, warnings: list[str]) -> None:
    if log is not None:
        warnings.extend(log.warnings())


class WindowedSamples:
    """A run's samples inside its training window, pooled for the run-level modes. The first log whose samples
    cannot be placed in the window empties them, with its reason: the modes of part of the run are not the run's."""

    def __init__(self, window: TrainingWindow) -> None:
        self.values: list[float] = []
        self.problem = window.problem

    def add(self, place: Callable[[str, Sequence[Any]], np.ndarray], tag: str, times: Sequence[Any],
            values: Sequence[float]) -> None:
        """`place(tag, times)`: which of the values (sampled at `times` on node `tag`) lie in the window; it
        raises NoWindow when it cannot say."""
        import numpy as np

        if self.problem is not None:
            return
        try:
            mask = place(tag, times)
        except NoWindow as error:
            self.problem = str(error)
            return
        self.values.extend(np.asarray(values)[mask].tolist())

    def record(self) -> records.TrainingWindowModes:
        """summary.json's training_window_* fields: the modes, how many samples they are of, or why none."""
        if self.problem is not None or not self.values:
            return {"training_window_modes_mib": None, "training_window_samples": 0,
                    "training_window_problem": self.problem or "no sample to place in the training window"}
        return {"training_window_modes_mib": memory_stats(self.values)["modes"],
                "training_window_samples": len(self.values), "training_window_problem": None}


class GpuFilter:
    """Which (file tag, GPU index) samples count, and that each physical GPU counts once."""

    def __init__(self, own: RunGpus | None, source: str, warnings: list[str]) -> None:
        self.own, self.source, self.warnings = own, source, warnings
        self.counted: dict[tuple[str, int], str] = {}  # (physical host, index) -> file that counted it
        self.dropped: dict[str, set[int]] = {}

    def _physical(self, tag: str) -> str:
        # Emulated nodes are tags of one host: their GPU indices are one namespace.
        return "emulated host" if self.own is not None and self.own.emulated_nodes else tag

    def keeps(self, tag: str, index: int, file: str) -> bool:
        if self.own is not None and not self.own.keeps(tag, index):
            self.dropped.setdefault(file, set()).add(index)
            return False
        key = (self._physical(tag), index)
        first = self.counted.setdefault(key, file)
        if first != file:
            self.warnings.append(f"{self.source}: GPU {index} logged by {first} and {file}: counted once ({first})")
            return False
        return True

    def note_dropped(self) -> None:
        for file in sorted(self.dropped):
            indices = ", ".join(str(index) for index in sorted(self.dropped[file]))
            self.warnings.append(f"{file}: samples of GPU {indices} left out (not the run's GPUs)")


def _spread(gpus: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "gpus_counted": len(gpus),
        "peak_mib": max(gpu["peak_mib"] for gpu in gpus),
        "peak_min_mib": min(gpu["peak_mib"] for gpu in gpus),
    }


def summarise_gpu(monitor: Path, warnings: list[str], own: RunGpus | None = None,
                  window: TrainingWindow | None = None) -> records.GpuMemory | None:
    """nvidia-smi logs: per GPU (host, index), per node (file) and for the run; None without a valid sample.
    `window`: the run's training window (by default that of the run `monitor` belongs to)."""
    gpus: list[dict[str, Any]] = []
    nodes: list[dict[str, Any]] = []
    pooled: list[int] = []
    window = TrainingWindow.of(monitor.parent) if window is None else window
    busy = WindowedSamples(window)
    kept = GpuFilter(own, "nvidia-smi", warnings)
    for path, match in matching_logs(monitor, GPU_LOG):
        log = read_log(path, NVIDIA_SMI)
        skipped(log, warnings)
        by_index: dict[int, list[list[Any]]] = {}
        for _line, values in log.rows:
            by_index.setdefault(values[1], []).append(values)
        node_gpus = []
        for index in sorted(by_index):
            if not kept.keeps(host_of(match), index, path.name):
                continue
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
            busy.add(window.smi_samples, host_of(match), [sample[0] for sample in samples], used)
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
                "average_mib": mean(gpu["average_mib"] for gpu in node_gpus),
            }
        )
    kept.note_dropped()
    if not gpus:
        return None
    run_stats = memory_stats(pooled)
    return {  # type: ignore[return-value]
        "gpus": gpus,
        "nodes": nodes,
        # Run level: the highest and lowest GPU's peak; the mean of the per-GPU averages (each GPU weighs the
        # same, whatever its sample count); the modes of all the run's GPUs' samples pooled (whole log and
        # training window).
        **_spread(gpus),
        "average_mib": mean(gpu["average_mib"] for gpu in gpus),
        "modes_mib": run_stats["modes"],  # over the whole log
        "mode_text": workshop.mode_text(run_stats["modes"]),
        **busy.record(),  # the modes the tables show: over the training window
    }


def summarise_nvml(monitor: Path, warnings: list[str], own: RunGpus | None = None) -> records.NvmlMemory | None:
    """Fast NVML samples: the exact peak the 5 s nvidia-smi log can miss."""
    import numpy as np

    gpus: list[dict[str, Any]] = []
    kept = GpuFilter(own, "NVML", warnings)
    for path, match in matching_logs(monitor, NVML_LOG):
        data, log, _fmt = read_nvml_log(path)
        skipped(log, warnings)
        indices = data[:, 1].astype(np.int64)
        for index in np.unique(indices):
            if not kept.keeps(host_of(match), int(index), path.name):
                continue
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
    kept.note_dropped()
    if not gpus:
        return None
    return {"gpus": gpus, **_spread(gpus)}  # type: ignore[return-value]
