"""The GPU's clocks while a run trained, from the NVML sampler's `gpu_clocks_<host>.csv`.

Throughput that drifts within or between runs of one configuration is either the GPU slowing down (its SM
clock falls: power cap, thermal slowdown) or something else (host, input pipeline, launch overhead). This
module gives each run the SM clock, power and temperature over its training steps (the steps.csv window)
and the share of samples in which NVML named a reason that holds the clock down.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ... import records
from ...run.monitors import CLOCK_FIELDS
from ...run.steps import STEPS_FILE
from .gpu_memory import GpuFilter
from .gpus import RunGpus
from .logs import CLOCKS_LOG, host_of, matching_logs
from .training_window import inside, training_window

if TYPE_CHECKING:
    import pandas as pd


# NVML's clock event ("throttle") reason bits, nvmlClocksEventReason* in nvml.h. GPU idle is left out of the
# shares: between steps an idle GPU is not a slowed-down one.
CLOCK_EVENT_REASONS = {
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}


class ClocksError(ValueError):
    """A clocks log that cannot be read; the message names the file."""


def read_clocks(path: Path) -> pd.DataFrame:
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise ClocksError(f"{path}: unreadable: {error}") from None
    if tuple(frame.columns) != CLOCK_FIELDS:
        raise ClocksError(f"{path}: header {list(frame.columns)}, expected {list(CLOCK_FIELDS)}")
    # A sampler killed mid-line leaves a partial last line: drop rows that are not all numbers.
    numeric = frame.apply(pd.to_numeric, errors="coerce").dropna()
    return numeric.astype({"index": int, "clock_event_reasons": int})


def reason_shares(reasons: pd.Series) -> dict[str, float]:
    """Per named reason, the share of samples in which it was active (only reasons that occurred)."""
    shares = {name: float(((reasons & bit) != 0).mean()) for bit, name in CLOCK_EVENT_REASONS.items()}
    return {name: share for name, share in shares.items() if share > 0}


def summarise_clocks(run_dir: Path, warnings: list[str], own: RunGpus | None = None) -> records.GpuClocks | None:
    """The run's GPUs' clocks over its training steps (the whole log where no steps.csv exists)."""
    window = training_window(run_dir)
    kept = GpuFilter(own, "NVML clocks", warnings)
    gpus: list[dict[str, Any]] = []
    for path, match in matching_logs(run_dir / "monitor", CLOCKS_LOG):
        try:
            frame = read_clocks(path)
        except ClocksError as error:
            warnings.append(f"GPU clocks left out: {error}")
            continue
        if window is not None:
            frame = frame[inside(frame["timestamp_s"].to_numpy(), window)]
        for index, rows in frame.groupby("index"):
            if not kept.keeps(host_of(match), int(index), path.name):
                continue
            gpus.append({
                "host": host_of(match),
                "index": int(index),
                "samples": len(rows),
                "sm_clock_mhz_median": float(rows["sm_clock_mhz"].median()),
                "sm_clock_mhz_min": float(rows["sm_clock_mhz"].min()),
                "sm_clock_mhz_max": float(rows["sm_clock_mhz"].max()),
                "power_w_median": float(rows["power_w"].median()),
                "temperature_c_max": float(rows["temperature_c"].max()),
                "clock_event_reasons": reason_shares(rows["clock_event_reasons"]),
            })
    kept.note_dropped()
    if not gpus:
        return None
    return {
        "window": "training steps" if window is not None else "whole log",
        "gpus": gpus,
        "sm_clock_mhz_median": min(gpu["sm_clock_mhz_median"] for gpu in gpus),  # the slowest GPU sets the pace
        "sm_clock_mhz_min": min(gpu["sm_clock_mhz_min"] for gpu in gpus),
        "throttled": sorted({name for gpu in gpus for name in gpu["clock_event_reasons"]}),
    }


def step_clocks(run_dir: Path) -> pd.DataFrame:
    """steps.csv with each step's nearest clock sample (sm_clock_mhz, power_w, clock_event_reasons), for
    tying per-step time to the clock; empty columns where no clock log exists."""
    import numpy as np
    import pandas as pd

    from .throughput import read_steps

    steps = read_steps(run_dir / STEPS_FILE)
    steps["wall_middle"] = (steps["wall_start"] + steps["wall_end"]) / 2.0
    logs = [read_clocks(path) for path, _match in matching_logs(run_dir / "monitor", CLOCKS_LOG)]
    if not logs:
        return steps.assign(sm_clock_mhz=float("nan"), power_w=float("nan"), clock_event_reasons=pd.NA)
    clocks = pd.concat(logs).groupby("timestamp_s", as_index=False).agg(
        sm_clock_mhz=("sm_clock_mhz", "min"), power_w=("power_w", "max"),
        clock_event_reasons=("clock_event_reasons", lambda bits: int(np.bitwise_or.reduce(bits.to_numpy()))))
    return pd.merge_asof(steps.sort_values("wall_middle"), clocks.sort_values("timestamp_s"),
                         left_on="wall_middle", right_on="timestamp_s", direction="nearest").drop(
                             columns="timestamp_s")
