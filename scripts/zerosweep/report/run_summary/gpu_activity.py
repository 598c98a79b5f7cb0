"""What the NVML sampler's log says each of the run's GPUs did: its total-energy counter and its utilisation
samples (the log's last two columns, run/monitors.ActivityCells), per GPU, with why a GPU has none.

Energy (report/run_summary/energy.py) and the busy fraction (report/run_summary/gpu_busy.py) both read these; the
log grammar (what is skipped, what is refused) is `logs`'s, as for the memory columns of the same file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ...jsonio import read_json_or_none
from ...run.monitors import NVML_ACTIVITY_FIELDS, missing_path
from .gpu_memory import GpuFilter
from .gpus import RunGpus
from .logs import NVML_ACTIVITY, NVML_LOG, host_of, matching_logs, read_nvml_log

if TYPE_CHECKING:
    import numpy as np

ENERGY, UTILIZATION = NVML_ACTIVITY_FIELDS


@dataclass(frozen=True)
class GpuActivity:
    """One GPU's samples of one activity column (rows without a value dropped), or why it has none."""

    host: str  # the monitor file's tag
    index: int
    file: str
    seconds: np.ndarray  # unix seconds
    values: np.ndarray  # energy_mj or gpu_utilization_pct
    problem: str | None  # why there is no value (values empty)


@dataclass(frozen=True)
class RunActivity:
    """The run's GPUs' energy counter and utilisation series, and why none where the run has no NVML log."""

    energy: list[GpuActivity]
    utilization: list[GpuActivity]
    problem: str | None  # no NVML log at all: why (the node records' reason)


def _missing_reason(path: Path, column: str, index: int) -> str:
    """Why a GPU's cells of `column` are empty: the sampler's own words, where it left them."""
    reasons = read_json_or_none(missing_path(path)) or {}
    said = (reasons.get(column) or {}).get(str(index))
    return (f"{path.name}: no {column} value for GPU {index}"
            + (f" ({said})" if said else " (the sampler named no reason: see the node's log)"))


def _no_log_reason(run_dir: Path) -> str:
    """Why the run has no NVML log: the reason each node record gives for its NVML monitor."""
    reasons = sorted({str(reason) for path in sorted((run_dir / "records").glob("node*.json"))
                      if isinstance(record := read_json_or_none(path), dict)
                      and (reason := ((record.get("monitors") or {}).get("nvml") or {}).get("reason"))})
    return "no NVML log (nvml_<host>.csv)" + (f": {'; '.join(reasons)}" if reasons else "")


def run_activity(run_dir: Path, own: RunGpus | None = None) -> RunActivity:
    """Every own GPU's activity series from the run's NVML logs (each GPU once, as the memory figures count it).
    Warnings about skipped lines are the memory reader's (summarise_nvml reads the same file)."""
    import numpy as np

    energy: list[GpuActivity] = []
    utilization: list[GpuActivity] = []
    kept = GpuFilter(own, "NVML", [])  # its warnings are summarise_nvml's, already given
    logs = matching_logs(run_dir / "monitor", NVML_LOG)
    for path, match in logs:
        data, _log, fmt = read_nvml_log(path)
        indices = data[:, 1].astype(np.int64)
        for index in np.unique(indices):
            if not kept.keeps(host_of(match), int(index), path.name):
                continue
            rows = data[indices == index]
            for series, column in ((energy, ENERGY), (utilization, UTILIZATION)):
                if fmt is not NVML_ACTIVITY:
                    series.append(GpuActivity(host_of(match), int(index), path.name, np.empty(0), np.empty(0), (
                        f"{path.name} has no {column} column (written by a sampler from before it read the energy "
                        "counter and utilisation)")))
                    continue
                values = rows[:, [c.name for c in fmt.columns].index(column)]
                valued = ~np.isnan(values)  # an empty cell: the GPU gave no value in that sample
                problem = None if valued.any() else _missing_reason(path, column, int(index))
                series.append(GpuActivity(host_of(match), int(index), path.name, rows[valued, 0], values[valued],
                                          problem))
    return RunActivity(energy, utilization, None if logs else _no_log_reason(run_dir))
