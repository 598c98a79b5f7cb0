"""Figures derived across a study's rows at report time, so that changing how they are derived (the scaling
reference) re-aggregates without retraining: speed-up and weak-scaling efficiency against the smallest
configuration that finished. A run's own FLOPs per token, TFLOP/s and MFU: report/run_summary/throughput.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ... import records as f

if TYPE_CHECKING:
    import pandas as pd

# Weak scaling counts as holding at or above this per-GPU efficiency (stated in the notes and summary).
WEAK_SCALING_HOLDS = 0.9


def _usable(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def finished_by_size(frame: pd.DataFrame, rate: str) -> pd.DataFrame:
    """The finished rows with a usable `rate`, smallest configuration first (fewest GPUs, then fewest nodes): the
    first is the scaling reference."""
    finished = frame[(frame[f.STATUS] == "ok") & frame[rate].map(_usable)]
    return finished.sort_values([f.WORLD_SIZE, f.NODES], kind="stable")


def add_scaling(frame: pd.DataFrame) -> list[str]:
    """Speed-up and weak-scaling efficiency columns, in place; returns the table notes that define them.

    speed-up = throughput / throughput_ref; efficiency = (throughput / GPUs) / (throughput_ref / GPUs_ref),
    i.e. per-GPU throughput relative to the reference; 100 % is perfect weak scaling.
    """
    notes: list[str] = []
    for column in (f.SPEEDUP, f.STEADY_SPEEDUP, f.WEAK_SCALING_EFFICIENCY, f.STEADY_WEAK_SCALING_EFFICIENCY):
        frame[column] = None
    # Steady first: it is the primary figure (no compilation, no evaluation); the Trainer's is secondary.
    for rate, out, speedup_column in (
        (f.STEADY_SAMPLES_PER_SECOND, f.STEADY_WEAK_SCALING_EFFICIENCY, f.STEADY_SPEEDUP),
        (f.TRAIN_SAMPLES_PER_SECOND, f.WEAK_SCALING_EFFICIENCY, f.SPEEDUP),
    ):
        finished = finished_by_size(frame, rate)
        if finished.empty:
            notes.append(f"No finished run has {rate}: its efficiency is empty.")
            continue
        ref = finished.iloc[0]
        ref_rate, ref_gpus = ref[rate], ref[f.WORLD_SIZE]
        speedup = finished[rate] / ref_rate
        frame.loc[finished.index, out] = speedup * ref_gpus / finished[f.WORLD_SIZE]
        frame.loc[finished.index, speedup_column] = speedup
        if ref[f.WORLD_SIZE] != frame[f.WORLD_SIZE].min():
            notes.append(f"The smallest configuration did not finish ({rate}); {ref[f.RUN_ID]} is the reference.")
        what = ("steady samples/s (the primary figures)" if rate == f.STEADY_SAMPLES_PER_SECOND else
                "the Trainer's whole-run samples/s (secondary: includes compilation and evaluation)")
        notes.append(
            f"Speed-up and efficiency are against {ref[f.RUN_ID]} ({ref_gpus} GPU{'s' * (ref_gpus > 1)}), from "
            f"{what}: efficiency = per-GPU throughput relative to the reference's (weak scaling: 100 % is "
            f"ideal; we call it holding at >= {100 * WEAK_SCALING_HOLDS:.0f} %)."
        )
    return notes
