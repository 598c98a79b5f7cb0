"""A run's training window and which monitor samples lie in it: the one cut for every figure that must leave
out the idle time before the first step and after the last (the GPU clocks, the run-level memory modes).

The window is steps.csv's: the first step's wall start to the last step's wall end, in unix seconds. Each
monitor keeps its own clock; this module places it on unix time:
- NVML's clocks log: unix seconds already.
- nvidia-smi: the node's local time, without a zone. The node's UTC offset is its first sample minus the node
  record's `started_at` (UTC), rounded to a quarter hour: every zone in use is a whole number of quarter hours,
  and the monitor starts seconds after the record is stamped.
- psrecord: seconds since it started; its entry in the node record has `started_s` (unix time, stamped just
  before psrecord starts, so samples are placed at most psrecord's start-up, under a second, early). Records
  written before that field existed have no training window for CPU memory.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...jsonio import read_json_or_none
from ...run.steps import STEPS_FILE

if TYPE_CHECKING:
    import numpy as np

ZONE_STEP_S = 15 * 60  # UTC offsets are whole quarter hours


class NoWindow(ValueError):
    """A log whose samples cannot be placed in the run's training window; the message says why."""


def training_window(run_dir: Path) -> tuple[float, float] | None:
    """Wall-clock start of the first recorded step and end of the last; None without steps.csv."""
    from .throughput import read_steps

    path = run_dir / STEPS_FILE
    if not path.is_file():
        return None
    steps = read_steps(path)
    if steps.empty:
        return None
    return float(steps["wall_start"].min()), float(steps["wall_end"].max())


@dataclass(frozen=True)
class StepSpans:
    """Time spans of a run's steps (unix seconds, steps.csv's wall_start/wall_end) that a figure is taken over,
    with the samples and (padded) tokens those steps trained on, as steps.csv counts them."""

    name: str  # STEADY_STEPS | TRAINING_STEPS
    starts: np.ndarray
    ends: np.ndarray
    samples: int
    tokens: int

    @property
    def seconds(self) -> float:
        return float((self.ends - self.starts).sum())

    @property
    def first(self) -> float:
        return float(self.starts.min())

    @property
    def last(self) -> float:
        return float(self.ends.max())


STEADY_STEPS = "steady steps"
TRAINING_STEPS = "training window"


def step_spans(run_dir: Path, warmup_steps: int) -> tuple[StepSpans | None, StepSpans | None]:
    """The steady steps, each its own span (warm-up and steps with an evaluation or save left out: the steps the
    steady throughput is measured on, zerosweep.steady.steady_steps), and the training window as one span (the
    first step's start to the last one's end); None without steps.csv or without such steps."""
    import numpy as np

    from .throughput import read_steps, steady_rows

    path = run_dir / STEPS_FILE
    if not path.is_file():
        return None, None
    steps = read_steps(path)
    if steps.empty:
        return None, None
    training = StepSpans(TRAINING_STEPS, np.array([steps["wall_start"].min()]), np.array([steps["wall_end"].max()]),
                         int(steps["samples"].sum()), int(steps["tokens"].sum()))
    steady = steady_rows(steps, warmup_steps)
    if steady.empty:
        return None, training
    return (StepSpans(STEADY_STEPS, steady["wall_start"].to_numpy(dtype=float), steady["wall_end"].to_numpy(dtype=float),
                      int(steady["samples"].sum()), int(steady["tokens"].sum())), training)


def inside_spans(seconds: np.ndarray, spans: StepSpans) -> np.ndarray:
    """Which samples (unix seconds) lie in one of the spans, both ends included."""
    import numpy as np

    order = np.argsort(spans.starts)
    starts, ends = spans.starts[order], spans.ends[order]
    # the last span that starts at or before each sample; inside if the sample is not after that span's end
    span = np.searchsorted(starts, seconds, side="right") - 1
    return (span >= 0) & (seconds <= ends[np.clip(span, 0, None)])


def inside(seconds: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Which samples (unix seconds) lie in the window, both ends included."""
    start, end = window
    return (seconds >= start) & (seconds <= end)


def smi_unix_seconds(stamps: Sequence[str], started_at: str) -> np.ndarray:
    """nvidia-smi timestamps (node-local, '2026/11/24 09:12:01.123') as unix seconds, the node's UTC offset
    taken from its record's `started_at` (ISO, UTC)."""
    import numpy as np

    local = np.array([stamp.replace("/", "-") for stamp in stamps], dtype="datetime64[ms]")
    local_s = local.astype(np.int64) / 1000.0  # the local wall clock read as if it were UTC
    started_s = dt.datetime.fromisoformat(started_at).timestamp()
    offset_s = round((float(local_s[0]) - started_s) / ZONE_STEP_S) * ZONE_STEP_S
    return local_s - offset_s


@dataclass(frozen=True)
class TrainingWindow:
    """The run's training window (None with the reason) and its node records, by tag, that place each monitor's
    clock on it."""

    span: tuple[float, float] | None
    problem: str | None
    nodes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, run_dir: Path) -> TrainingWindow:
        nodes = {str(record["tag"]): record for path in sorted((run_dir / "records").glob("node*.json"))
                 if isinstance(record := read_json_or_none(path), dict) and record.get("tag") is not None}
        if not (run_dir / STEPS_FILE).is_file():
            return cls(None, f"no {STEPS_FILE}: no training step recorded (the run stopped before training, "
                             "or predates per-step records)", nodes)
        span = training_window(run_dir)
        return cls(span, None if span else f"{STEPS_FILE} holds no step", nodes)

    def _node(self, tag: str, monitor: str) -> Mapping[str, Any]:
        if tag not in self.nodes:
            raise NoWindow(f"no node record (records/node<R>.json) with tag {tag!r} to place {monitor}'s clock")
        return self.nodes[tag]

    def _kept(self, seconds: np.ndarray, what: str) -> np.ndarray:
        if self.span is None:
            raise NoWindow(str(self.problem))
        kept = inside(seconds, self.span)
        if not kept.any():
            raise NoWindow(f"no {what} sample inside the training window")
        return kept

    def smi_samples(self, tag: str, stamps: Sequence[str]) -> np.ndarray:
        """Which of one GPU's nvidia-smi samples (by timestamp) lie in the window; NoWindow says why none can."""
        if self.span is None:
            raise NoWindow(str(self.problem))
        started_at = self._node(tag, "nvidia-smi").get("started_at")
        if not started_at:
            raise NoWindow(f"the node record of {tag!r} has no started_at to place nvidia-smi's clock")
        return self._kept(smi_unix_seconds(stamps, str(started_at)), f"nvidia-smi ({tag})")

    def psrecord_samples(self, tag: str, elapsed: Sequence[float]) -> np.ndarray:
        """Which of one node's psrecord samples (by elapsed seconds) lie in the window; NoWindow says why none can."""
        import numpy as np

        if self.span is None:
            raise NoWindow(str(self.problem))
        started_s = ((self._node(tag, "psrecord").get("monitors") or {}).get("psrecord") or {}).get("started_s")
        if started_s is None:
            raise NoWindow(f"the node record of {tag!r} has no psrecord start time (monitors.psrecord.started_s) "
                           "to place psrecord's elapsed clock")
        return self._kept(float(started_s) + np.asarray(elapsed, dtype=float), f"psrecord ({tag})")
