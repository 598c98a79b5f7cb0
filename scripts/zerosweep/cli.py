"""`python -m zerosweep <command>`: the thin entry points that the Snakemake rules call.

Each command lives in the module that owns its logic; that module exposes `add_arguments(parser)` and
`run(args) -> int`, so this file only lists them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "ds-configs": ("zerosweep.plan.dsconfig", "regenerate the workshop's named configs in ds_configs/"),
    "launch": ("zerosweep.run.launch", "run one matrix point: start a node launcher per node, write records"),
    "launch-node": ("zerosweep.run.node", "one node of a run: monitors + torchrun"),
    "train": ("zerosweep.run.train", "the training script each torchrun rank runs"),
    "build-ops": ("zerosweep.run.ops", "JIT-compile DeepSpeed's FusedAdam / CPUAdam once, before training"),
    "nvml-sampler": ("zerosweep.run.monitors", "sample GPU memory through NVML until stopped"),
    "parse-memory": ("zerosweep.report.run_summary.memory", "summarise one run's monitor logs into summary.json"),
    "table": ("zerosweep.report.study.tables", "write one study's table as CSV and Markdown"),
    "plots": ("zerosweep.report.study.plots", "write one study's plots"),
    "timeline": ("zerosweep.report.study.plots", "write one run's memory timeline plot"),
    "summary": ("zerosweep.report.summary.answers", "answer the workshop's questions from the tables"),
    "compare": ("zerosweep.report.study.compare", "put two results directories side by side per run: ratio and verdict"),
    "tune-probe": ("zerosweep.report.tune.tune_records", "one tune probe's outcome (status, peak, throughput)"),
    "tune-in-process": ("zerosweep.report.tune.tune_records", "a point's in-process search job: its probes, their evidence"),
    "tune-search": ("zerosweep.report.tune.tune_records", "one point's micro-batch search: the exact boundary"),
    "tune-screen": ("zerosweep.report.tune.tune_records", "every point probed at one micro-batch, ranked by samples/s"),
    "tune-budget": ("zerosweep.report.tune.tune_records", "the largest micro-batch of a configuration within a budget"),
    "recommend": ("zerosweep.report.tune.recommend", "a tune study's recommendation per memory budget, memory model"),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="zerosweep", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    argv = list(sys.argv[1:] if argv is None else argv)
    # Import only the module of the command asked for: training imports torch, the table does not.
    wanted = next((arg for arg in argv if not arg.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text)
        if name == wanted:
            module = importlib.import_module(module_name)
            module.add_arguments(sub, name)
            sub.set_defaults(handler=module.run)
    args = parser.parse_args(argv)
    return int(args.handler(args))
