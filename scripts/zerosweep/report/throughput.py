"""A run's steady throughput with its interval, from its per-step record (`<run_dir>/steps.csv`).

`summarise_throughput(run_dir, metrics)` gives the per-run record's `throughput` section (None when the run has
no steps.csv: an OOM row, or a run recorded before per-step records existed). The rules are in
report/statistics.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..run.steps import STEP_FIELDS, STEPS_FILE

if TYPE_CHECKING:  # numpy, pandas and scipy load on first use: parsing a run without steps.csv stays light
    import pandas as pd

    from .statistics import StepStatistics

CAP_REASONS = ("cap_steps", "cap_time")


class StepsError(ValueError):
    """A steps.csv that cannot be trusted; the message names the file."""


def read_steps(path: Path) -> pd.DataFrame:
    """steps.csv as a DataFrame with STEP_FIELDS, checked."""
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise StepsError(f"{path}: unreadable: {error}") from None
    missing = [name for name in STEP_FIELDS if name not in frame.columns]
    if missing:
        raise StepsError(f"{path}: missing columns {missing} (expected {list(STEP_FIELDS)})")
    numeric = frame[list(STEP_FIELDS)].apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna().any(axis=1)
    if bad.any():
        row = int(bad.idxmax()) + 2  # 1-based, after the header
        raise StepsError(f"{path}:{row}: a value is missing or not a number")
    if (numeric["seconds"] < 0).any():
        raise StepsError(f"{path}: negative step seconds")
    return numeric.astype({"step": int, "samples": int, "tokens": int, "eval_gap": bool})


def step_statistics(run_dir: Path, warmup_steps: int) -> StepStatistics | None:
    """The run's StepStatistics (for table verdicts across runs); None without a steps.csv."""
    from .statistics import summarise_step_times

    path = run_dir / STEPS_FILE
    if not path.is_file():
        return None
    frame = read_steps(path)
    return summarise_step_times(frame["step"], frame["seconds"], frame["samples"], frame["eval_gap"], warmup_steps)


def summarise_throughput(run_dir: Path, metrics: dict[str, Any], warmup_steps: int) -> dict[str, Any] | None:
    """Flat fields: samples_per_second (median), samples_per_second_ci_low/high, step_seconds_* (median, CI,
    cv), warmup_steps_detected, warmup_settled, steady_steps, samples_per_step, confidence, step_throughputs
    (per steady step, for verdicts: StepStatistics.from_record reads the section back), stop_reason,
    hit_cap, recorded_steps."""
    statistics = step_statistics(run_dir, warmup_steps)
    if statistics is None:
        return None
    stop_reason = metrics.get("stop_reason")
    return {
        **statistics.record(),
        "recorded_steps": metrics.get("recorded_steps"),
        "stop_reason": stop_reason,
        "hit_cap": stop_reason in CAP_REASONS,
    }
