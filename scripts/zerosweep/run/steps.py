"""Per-optimizer-step record of a training run, and the stop-when-tight rule (`training.measure`).

Every optimizer step's wall time, samples and tokens go to `<run_dir>/steps.csv` (rank 0), one row per step,
with `eval_gap` marking intervals that hold an evaluation or a checkpoint; nothing is dropped here: warm-up and
gaps are the report's decision (report/statistics.py). With `training.measure.enabled`, training stops at the
first look (100, 200, 400, ... steady steps) where the steady step-time median's interval is narrower than
`target_halfwidth`, or at a cap; `stop_reason` says which. The interval and the looks are zerosweep.steady's:
the report recomputes the same interval from steps.csv, so a recorded interval is the one the rule judged.

The callback class is built inside a function so that importing this module does not import transformers.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STEPS_FILE = "steps.csv"
STEP_FIELDS: tuple[str, ...] = ("step", "wall_start", "wall_end", "seconds", "samples", "tokens", "eval_gap")
# width: the interval got tight; cap_steps / cap_time: a measure cap ended it first;
# max_steps / epochs: training ended on its own (measure disabled, or it ran out of steps first).
STOP_REASONS: tuple[str, ...] = ("width", "cap_steps", "cap_time", "max_steps", "epochs")
TRAINING_STARTED_MARKER = "[zerosweep] training started"


@dataclass(frozen=True)
class MeasureSettings:
    """`training.measure` of the run spec (defaults as in schemas/config.schema.yaml)."""

    enabled: bool = False
    target_halfwidth: float = 0.02
    min_steady_steps: int = 20
    max_steady_steps: int = 400
    max_seconds: float = 300.0

    @classmethod
    def from_training(cls, training: Mapping[str, Any]) -> MeasureSettings:
        values = dict(training.get("measure") or {})
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"training.measure: unknown keys {sorted(unknown)}")
        return cls(**values)


@dataclass
class StepRow:
    step: int
    wall_start: float  # unix seconds
    wall_end: float
    seconds: float
    samples: int
    tokens: int  # padded tokens (samples x max_length): what the GPU computes on
    eval_gap: bool


@dataclass
class StepLayout:
    """Samples per optimizer step from the epoch's layout, so an epoch's short last step counts short."""

    per_device_batch: int
    grad_accum: int
    world_size: int
    samples_per_rank: int
    micro_batches_per_epoch: int = 0

    @property
    def full_step(self) -> int:
        return self.per_device_batch * self.grad_accum * self.world_size

    @property
    def steps_per_epoch(self) -> int:
        return max(1, math.ceil(self.micro_batches_per_epoch / self.grad_accum))

    def samples_in_step(self, global_step: int) -> int:
        batches = self.micro_batches_per_epoch
        if batches == 0:
            return self.full_step
        per_epoch = self.steps_per_epoch
        if (global_step - 1) % per_epoch < per_epoch - 1:
            return self.full_step
        micro = batches - (per_epoch - 1) * self.grad_accum
        last_micro = self.samples_per_rank - (batches - 1) * self.per_device_batch
        last_micro = min(max(last_micro, 1), self.per_device_batch)
        return ((micro - 1) * self.per_device_batch + last_micro) * self.world_size


@dataclass
class StepRecord:
    """What the callback measured; `rows` is steps.csv."""

    layout: StepLayout
    warmup_steps: int
    max_length: int
    rows: list[StepRow] = field(default_factory=list)
    stop_reason: str | None = None
    last_look: int = 0  # steady steps at the rule's latest look: each look is judged once (its level is spent)
    train_begin: float | None = None  # perf_counter at on_train_begin
    first_step_end: float | None = None

    def steady_rows(self) -> list[StepRow]:
        """Full steps after the configured minimum warm-up, without an evaluation or save in them."""
        return [row for row in self.rows if row.step > self.warmup_steps and not row.eval_gap
                and row.samples == self.layout.full_step]

    def totals(self) -> dict[str, Any]:
        """The run-level raw figures over steady_rows() (the report computes medians and intervals)."""
        rows = self.steady_rows()
        seconds = sum(row.seconds for row in rows)
        samples = sum(row.samples for row in rows)
        rate = samples / seconds if seconds > 0 else None
        return {"steady_steps": len(rows), "steady_seconds": seconds, "steady_samples_per_second": rate,
                "steady_tokens_per_second": rate * self.max_length if rate is not None else None,
                "stop_reason": self.stop_reason, "recorded_steps": len(self.rows),
                "first_step_seconds": self.first_step_seconds()}

    def first_step_seconds(self) -> float | None:
        """Optimizer step 1's seconds (from on_train_begin): compiling and other first-use costs land in it."""
        return next((row.seconds for row in self.rows if row.step == 1), None)

    def write_csv(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".csv.partial")
        with open(partial, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=STEP_FIELDS)
            writer.writeheader()
            for row in self.rows:
                writer.writerow({**asdict(row), "eval_gap": int(row.eval_gap)})
        partial.replace(path)


def tight_enough(record: StepRecord, settings: MeasureSettings, elapsed_s: float) -> str | None:
    """The stop reason if measuring may end now, else None (rank 0 decides; the callback broadcasts it).
    Same selection and interval as the report (zerosweep.steady), judged only at the looks. A series whose
    warm-up never settled is judged too: a trend or a late warm-up spreads the batch medians, so its interval
    is wide anyway, and step noise beyond the ±10 % warm-up band (CPU runs, 8 of 15 H100 repeats) must not keep
    a steady run from ever stopping."""
    from ..steady import is_look, median_interval, steady_steps

    if elapsed_s >= settings.max_seconds:
        return "cap_time"
    rows = record.rows
    seconds = [row.seconds for row in rows]
    steady = steady_steps([row.step for row in rows], [row.samples for row in rows],
                          [row.eval_gap for row in rows], seconds, record.warmup_steps)
    count = len(steady.indices)
    # a re-detected warm-up can bring the count back to a look already judged: judge each look once
    if is_look(count) and count > record.last_look and count >= settings.min_steady_steps:
        record.last_look = count
        halfwidth = median_interval([seconds[i] for i in steady.indices]).relative_halfwidth
        if halfwidth is not None and halfwidth <= settings.target_halfwidth:
            return "width"
    return "cap_steps" if count >= settings.max_steady_steps else None


def make_step_callback(record: StepRecord, settings: MeasureSettings, *, cuda: bool, run_dir: Path) -> Any:
    """The Trainer callback that fills `record`, writes steps.csv on rank 0 and stops when tight."""
    import torch
    import torch.distributed as dist
    from transformers import TrainerCallback

    def now() -> float:
        if cuda:
            torch.cuda.synchronize()  # kernels are asynchronous: the clock must see them finished
        return time.perf_counter()

    class StepTimes(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.last_end: float | None = None
            self.wall_offset = 0.0  # unix time - perf_counter
            self.gap = False

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            loader = kwargs.get("train_dataloader")
            if loader is not None:
                record.layout.micro_batches_per_epoch = len(loader)
            record.train_begin = self.last_end = now()
            self.wall_offset = time.time() - record.train_begin
            if state.is_world_process_zero:
                print(TRAINING_STARTED_MARKER, flush=True)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            end = now()
            start = self.last_end if self.last_end is not None else end
            if record.first_step_end is None:
                record.first_step_end = end
            samples = record.layout.samples_in_step(state.global_step)
            record.rows.append(StepRow(step=int(state.global_step), wall_start=start + self.wall_offset,
                                       wall_end=end + self.wall_offset, seconds=end - start, samples=samples,
                                       tokens=samples * record.max_length, eval_gap=self.gap))
            self.gap = False
            if settings.enabled:
                self._maybe_stop(state, control, end)
            self.last_end = now() if settings.enabled else end  # the decision's own time is not a step's

        def _maybe_stop(self, state: Any, control: Any, end: float) -> None:
            reason = None
            if state.is_world_process_zero:
                reason = tight_enough(record, settings, end - (record.train_begin or end))
            if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
                # every rank must stop at the same step, or the next collective hangs
                code = torch.tensor([STOP_REASONS.index(reason) + 1 if reason else 0],
                                    device="cuda" if cuda else "cpu")
                dist.broadcast(code, src=0)
                reason = STOP_REASONS[int(code.item()) - 1] if int(code.item()) else None
            if reason is not None:
                record.stop_reason = reason
                control.should_training_stop = True

        def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.gap = True

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.gap = True

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if record.stop_reason is None:
                capped = args.max_steps is not None and args.max_steps > 0 and state.global_step >= args.max_steps
                record.stop_reason = "max_steps" if capped else "epochs"
            if state.is_world_process_zero:
                record.write_csv(run_dir / STEPS_FILE)

    return StepTimes()
