"""A hand-started Hugging Face Trainer run, with no zerosweep launcher, monitors or records: the reference
for the pipeline's steady samples/s (fidelity target: within 3 % of it).

Same model (random-init BLOOM from the shipped architecture), same tokenized data, same batch, precision and
DeepSpeed config as a pipeline run. Started by hand on the device, e.g.:

    torchrun --nproc_per_node 1 benchmarks/h100/bare_trainer.py --ds-config results/runs/<run>/ds_config.json

Prints one JSON line: {"steady_samples_per_second": ..., "train_samples_per_second": ..., ...}. With
--steps-dir it also writes every optimizer step's time in the pipeline's steps.csv format (the same clock:
zerosweep.run.steps, cuda synchronize before each reading), so both sides go through the same statistics.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from transformers import (
    BloomConfig,
    BloomForCausalLM,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    default_data_collator,
)

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from zerosweep.run import data as zdata
from zerosweep.run.steps import MeasureSettings, StepLayout, StepRecord, make_step_callback


class StepClock(TrainerCallback):  # type: ignore[misc]
    """Seconds between consecutive optimizer steps after `warmup`; left out: intervals holding an evaluation
    and each epoch's last step, which is partial (500 samples are not a multiple of the global batch)."""

    def __init__(self, warmup: int, steps_per_epoch: int) -> None:
        self.warmup = warmup
        self.steps_per_epoch = steps_per_epoch
        self.last: float | None = None
        self.intervals: list[float] = []
        self.skip_next = False

    def on_step_end(self, args, state, control, **kwargs):
        torch.cuda.synchronize()
        now = time.perf_counter()
        partial = state.global_step % self.steps_per_epoch == 0
        if self.last is not None and state.global_step > self.warmup and not self.skip_next and not partial:
            self.intervals.append(now - self.last)
        self.last, self.skip_next = now, False

    def on_evaluate(self, args, state, control, **kwargs):
        self.skip_next = True  # the next interval contains an evaluation


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ds-config", default=None, help="DeepSpeed config; omit for the no-DeepSpeed baseline")
    parser.add_argument("--architecture", default="bloom-560m")
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--eval-samples", type=int, default=50)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--max-steps", type=int, default=-1)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--cache-dir", default="results/cache")
    parser.add_argument("--logging-steps", type=int, default=500, help="Trainer logging_steps (its default: 500)")
    parser.add_argument("--steps-dir", type=Path, default=None, help="write the per-step record <dir>/steps.csv")
    return parser


def build_trainer(args: argparse.Namespace, callbacks: list[TrainerCallback]) -> tuple[Trainer, StepClock, int]:
    """The Trainer of the workload, with StepClock (and the steps.csv record with --steps-dir) before `callbacks`;
    returns it with its StepClock and the global batch."""
    training_args = TrainingArguments(
        output_dir="/tmp/bare-trainer", eval_strategy="epoch", save_strategy="no", report_to="none",
        per_device_train_batch_size=4, per_device_eval_batch_size=4, gradient_accumulation_steps=4,
        num_train_epochs=args.epochs, max_steps=args.max_steps, learning_rate=5e-5, weight_decay=0.01, fp16=True, seed=42,
        disable_tqdm=True, deepspeed=args.ds_config, logging_steps=args.logging_steps,
    )
    architecture = json.loads((REPO / "scripts/zerosweep/run/architectures" / f"{args.architecture}.json").read_text())
    data_settings = {"source": "synthetic", "seed": 0, "samples_per_gpu": args.samples,
                     "eval_samples": args.eval_samples, "max_length": args.max_length}
    tokenizer = zdata.load_tokenizer({"tokenizer": "local"}, data_settings, architecture["vocab_size"],
                                     Path(args.cache_dir), args.max_length)
    train, evaluation = zdata.load_splits(data_settings, args.samples * training_args.world_size, args.eval_samples)
    torch.manual_seed(42)
    model = BloomForCausalLM(BloomConfig(**architecture))
    global_batch = 4 * 4 * training_args.world_size
    clock = StepClock(args.warmup, steps_per_epoch=-(-args.samples * training_args.world_size // global_batch))
    own: list[TrainerCallback] = [clock]
    if args.steps_dir is not None:
        record = StepRecord(StepLayout(4, 4, training_args.world_size, args.samples), args.warmup, args.max_length)
        own.append(make_step_callback(record, MeasureSettings(), cuda=True, run_dir=args.steps_dir))
    trainer = Trainer(model=model, args=training_args, data_collator=default_data_collator, callbacks=own + callbacks,
                      train_dataset=zdata.tokenize_records(train, tokenizer, args.max_length),
                      eval_dataset=zdata.tokenize_records(evaluation, tokenizer, args.max_length))
    return trainer, clock, global_batch


def main() -> None:
    args = argument_parser().parse_args()
    trainer, clock, global_batch = build_trainer(args, [])
    output = trainer.train()
    if trainer.args.process_index == 0:
        steady = global_batch * len(clock.intervals) / sum(clock.intervals)
        print(json.dumps({
            "ds_config": args.ds_config, "steady_samples_per_second": steady,
            "train_samples_per_second": output.metrics["train_samples_per_second"],
            "train_runtime": output.metrics["train_runtime"], "steps": trainer.state.global_step,
            "timed_intervals": len(clock.intervals),
            "max_memory_reserved_mib": torch.cuda.max_memory_reserved() / 2**20,
        }), flush=True)


if __name__ == "__main__":
    main()
