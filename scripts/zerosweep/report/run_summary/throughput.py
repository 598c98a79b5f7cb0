"""A run's steady throughput: its interval from the per-step record (`<run_dir>/steps.csv`), and the one answer
to "which throughput does this run have" that every table, comparison and tune record reads.

`summarise_throughput(run_dir, metrics)` gives the per-run record's `throughput` section (None when the run has
no steps.csv: an OOM row, or a run recorded before per-step records existed). The rules are in
report/statistics.py.

`run_throughput(record, peak_tflops)` gives a finished run's samples/s with its interval, tokens/s, TFLOP/s per
GPU and MFU from one estimator, named: the median step of the `throughput` section, or, for records without one,
the launcher's mean rate over its steady window. Tokens/s, TFLOP/s and MFU are always at the samples/s shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...run import flops
from ...run.steps import STEP_FIELDS, STEPS_FILE

if TYPE_CHECKING:  # numpy, pandas and scipy load on first use: parsing a run without steps.csv stays light
    import pandas as pd

    from ..statistics import StepStatistics

CAP_REASONS = ("cap_steps", "cap_time")
MEDIAN_STEP = "median step"  # summary.json `throughput`: the median steady step's rate, with a 95 % CI
LAUNCHER_MEAN = "launcher steady-window mean"  # metrics.json: samples over seconds after the warm-up (old records)
# What a test between rows calls the runs' values of each estimator
RUN_VALUES = {MEDIAN_STEP: "run medians", LAUNCHER_MEAN: "runs' launcher steady-window means"}


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


def steady_rows(steps: pd.DataFrame, warmup_steps: int) -> pd.DataFrame:
    """The rows of a read_steps frame that are steady: the steps summarise_step_times measures (the same call of
    zerosweep.steady.steady_steps on the same columns)."""
    from ...steady import steady_steps

    chosen = steady_steps(steps["step"], steps["samples"], steps["eval_gap"], steps["seconds"], warmup_steps)
    return steps.iloc[chosen.indices]


def step_statistics(run_dir: Path, warmup_steps: int) -> StepStatistics | None:
    """The run's StepStatistics (for table verdicts across runs); None without a steps.csv."""
    from ..statistics import summarise_step_times

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


def flops_per_token(metrics: Mapping[str, Any], spec: Mapping[str, Any]) -> float | None:
    """Training FLOPs per token as the run recorded it, else counted from its architecture (random-init runs
    only: a pretrained model's config is the Hub's, which the report layer does not fetch)."""
    if metrics.get("flops_per_token") is not None:
        return float(metrics["flops_per_token"])
    model = spec.get("model") or {}
    seq_len = metrics.get("tokens_per_sample") or (spec.get("data") or {}).get("max_length")
    if model.get("weights") != "random" or not model.get("architecture") or not seq_len:
        return None
    from ...plan.models import model_shape

    return flops.training_flops_per_token(model_shape(model), int(seq_len))


@dataclass(frozen=True)
class RunThroughput:
    """A run's throughput figures, all from one estimator (`estimator`); None where the record cannot give one."""

    estimator: str | None  # MEDIAN_STEP | LAUNCHER_MEAN; None: the record has no steady rate
    samples_per_second: float | None
    samples_per_second_low: float | None  # the median step's 95 % CI (MEDIAN_STEP only)
    samples_per_second_high: float | None
    tokens_per_second: float | None  # padding included: every sample is max_length tokens
    tflops_per_gpu: float | None
    mfu: float | None
    peak_tflops: float | None  # the dense peak MFU is against
    peak_source: str | None  # "config" | "table:<model>, <precision>"
    peak_note: str | None  # on a GPU run without a peak: why, and how to set one (a table note)


def _tokens_per_sample(record: Mapping[str, Any]) -> float | None:
    """Tokens per sample as the launcher counted them (its tokens/s over its samples/s), else setup.max_length
    (samples are padded to it)."""
    metrics = record.get("metrics") or {}
    tokens, samples = metrics.get("steady_tokens_per_second"), metrics.get("steady_samples_per_second")
    if tokens is not None and samples:
        return float(tokens) / float(samples)
    length = (record.get("setup") or {}).get("max_length")
    return None if length is None else float(length)


def peak_note(gpu_name: str | None, precision: str | None, missing: str) -> str:
    """The table note for a GPU run without a peak: why, and how to give one."""
    return (f"MFU empty for {gpu_name or 'an unnamed GPU'} at {precision or 'an unrecorded precision'}: {missing}. "
            "Set runtime.peak_tflops to the GPU's dense peak in TFLOP/s for that precision (a report setting: the "
            "tables re-aggregate without retraining).")


def run_throughput(record: Mapping[str, Any], peak_tflops: float | None,
                   use: str | None = None) -> RunThroughput:
    """The run's throughput figures (summary.json), whatever its status; `peak_tflops`: runtime.peak_tflops (None:
    looked up by the GPU's exact model name and the run's precision, zerosweep.run.flops). `use`: None for the
    best estimator the record has (the median step, else the launcher's mean); LAUNCHER_MEAN to put a run beside one
    that has only that."""
    metrics, setup = record.get("metrics") or {}, record.get("setup") or {}
    section = (record.get("throughput") or {}) if use != LAUNCHER_MEAN else {}
    if section.get("samples_per_second") is not None:
        estimator: str | None = MEDIAN_STEP
        median = float(section["samples_per_second"])
        low, high = section.get("samples_per_second_ci_low"), section.get("samples_per_second_ci_high")
        per_sample = _tokens_per_sample(record)
        samples: float | None = median
        tokens = None if per_sample is None else median * per_sample
    else:  # the launcher's own pair (same steady window, same tokens per sample)
        samples, tokens = metrics.get("steady_samples_per_second"), metrics.get("steady_tokens_per_second")
        low = high = None
        estimator = None if samples is None and tokens is None else LAUNCHER_MEAN
    per_token = metrics.get("flops_per_token")
    world_size = metrics.get("world_size") or (record.get("point") or {}).get("world_size")
    achieved = (None if tokens is None or per_token is None or not world_size
                else flops.achieved_tflops_per_gpu(float(per_token), tokens, int(world_size)))
    peak = flops.Peak(None, None)
    note = None
    if setup.get("device") == "cuda":  # CPU ranks have no tensor-core peak: no MFU, nothing to set
        peak = flops.peak_tflops(setup.get("gpu_name"), setup.get("precision"), peak_tflops)
        if peak.missing is not None:
            note = peak_note(setup.get("gpu_name"), setup.get("precision"), peak.missing)
    return RunThroughput(
        estimator=estimator, samples_per_second=samples, samples_per_second_low=low, samples_per_second_high=high,
        tokens_per_second=tokens, tflops_per_gpu=achieved, mfu=flops.model_flops_utilization(achieved, peak.tflops),
        peak_tflops=peak.tflops, peak_source=peak.source, peak_note=note)


def peak_notes(records: list[Mapping[str, Any]], peak_tflops: float | None) -> list[str]:
    """The table notes of runs whose MFU is empty for want of a peak, each once."""
    notes = (run_throughput(record, peak_tflops).peak_note for record in records)
    return sorted({note for note in notes if note is not None})
