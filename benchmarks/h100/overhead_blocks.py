"""The harness' cost measured inside one training run: conditions switched in alternating time blocks.

Run-to-run drift on the H100 (up to 18 % between repeats of one configuration) swamps a cost of a few percent
when each condition is its own run. Here one bare Trainer run (bare_trainer.py's workload) switches between
conditions every --block-seconds, the order rotating each cycle, and each step is compared only with steps of
the same cycle, seconds apart:

- `plain`: nothing beside the trainer (Trainer logging_steps 500);
- `monitors`: the pipeline's three monitors (method_bench.start_monitors: nvidia-smi -l 5, `zerosweep
  nvml-sampler` at 50 ms, psrecord --include-children at 5 s on this process);
- `nvml`: the NVML sampler alone;
- `log1`: the Trainer logs every step (what logging_steps 1 does: `control.should_log` after each step).

A monitor is started when its block starts (the steps in its first --settle-seconds are left out of the
analysis: process start is not what a pipeline run pays during its steady steps) and stopped when it ends.
Writes <steps-dir>/steps.csv (every step) and <steps-dir>/blocks.csv (block, cycle, condition, wall_start,
wall_end). Started by method_bench.py (kind `blocks`); analysed by analyse_method.py --blocks.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bare_trainer import argument_parser, build_trainer
from method_bench import MONITORS, rotated, start_monitors, stop_monitors

BLOCKS_FILE = "blocks.csv"
BLOCK_FIELDS = ("block", "cycle", "condition", "wall_start", "wall_end")
# condition -> the monitors running beside the trainer (names as method_bench.start_monitors takes them)
CONDITION_MONITORS: dict[str, tuple[str, ...]] = {"plain": (), "monitors": MONITORS, "nvml": ("nvml",), "log1": ()}


class BlockSwitcher(TrainerCallback):  # type: ignore[misc]
    """Switches condition every `block_seconds` once `warmup` steps have run; one block per condition a cycle."""

    def __init__(self, conditions: list[str], block_seconds: float, warmup: int, run_dir: Path) -> None:
        self.conditions = conditions
        self.block_seconds = block_seconds
        self.warmup = warmup
        self.run_dir = run_dir
        self.blocks: list[dict[str, object]] = []
        self.monitors: list[subprocess.Popen[bytes]] = []
        self.started = 0.0

    @property
    def current(self) -> str | None:
        return str(self.blocks[-1]["condition"]) if self.blocks else None

    def _stop_monitors(self) -> None:
        stop_monitors(self.monitors)
        self.monitors = []

    def _start(self, now: float) -> None:
        if self.blocks:
            self.blocks[-1]["wall_end"] = now
        self._stop_monitors()
        block = len(self.blocks)
        cycle, position = divmod(block, len(self.conditions))
        condition = rotated(self.conditions, cycle)[position]
        if CONDITION_MONITORS[condition]:
            block_dir = self.run_dir / f"block{block:03d}"
            block_dir.mkdir(parents=True, exist_ok=True)
            self.monitors = start_monitors(block_dir, os.getpid(), CONDITION_MONITORS[condition])
        self.blocks.append({"block": block, "cycle": cycle, "condition": condition, "wall_start": now,
                            "wall_end": ""})
        self.started = now

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.warmup:
            now = time.time()
            if not self.blocks or now - self.started >= self.block_seconds:
                self._start(now)
            if self.current == "log1":
                control.should_log = True
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self.blocks:
            self.blocks[-1]["wall_end"] = time.time()
        self._stop_monitors()
        with open(self.run_dir / BLOCKS_FILE, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=BLOCK_FIELDS)
            writer.writeheader()
            writer.writerows(self.blocks)


def main() -> None:
    parser = argument_parser()
    parser.add_argument("--block-seconds", type=float, default=10.0)
    parser.add_argument("--conditions", nargs="+", default=list(CONDITION_MONITORS),
                        choices=list(CONDITION_MONITORS))
    args = parser.parse_args()
    if args.steps_dir is None:
        parser.error("--steps-dir is required: the analysis reads its steps.csv and blocks.csv")
    args.steps_dir.mkdir(parents=True, exist_ok=True)
    switcher = BlockSwitcher(args.conditions, args.block_seconds, args.warmup, args.steps_dir)
    trainer, _, _ = build_trainer(args, [switcher])
    trainer.train()


if __name__ == "__main__":
    main()
