"""Interleaved A/B runs on one GPU, every step recorded: pipeline vs bare Trainer, and the harness' costs.

    python benchmarks/h100/method_bench.py fidelity --out DIR [--configs RUN[:STEPS] ...] [--repeats 3] [--max-steps 40]
    python benchmarks/h100/method_bench.py overhead --out DIR [--configs RUN[:STEPS] ...] [--repeats 3] [--max-steps 40]
    python benchmarks/h100/method_bench.py blocks --out DIR --repeats 1 --max-steps 900 [--block-seconds 10]

RUN:STEPS gives that configuration its own step count (e.g. z3-offcpu-nopin-g1n1:16: a CPU-offload step takes
1-4 s on the H100), the same for both conditions; --max-steps is the rest's.

fidelity: per repeat and configuration, one pipeline run (`zerosweep launch`: monitors + our training script,
as a Snakemake job runs it, shipped settings incl. logging_steps 1) and one bare Trainer run
(benchmarks/h100/bare_trainer.py, Trainer defaults: logging_steps 500), same ds_config, same step count.
overhead: bare Trainer runs in three conditions: `plain` (no monitors, logging_steps 500), `monitors` (the
pipeline's three monitors started beside it with the pipeline's commands and intervals: nvidia-smi -l 5,
`zerosweep nvml-sampler` at 50 ms, psrecord --include-children at 5 s on the trainer), `log1` (no monitors,
logging_steps 1).
blocks: the same costs inside one bare Trainer run, conditions switched every --block-seconds
(benchmarks/h100/overhead_blocks.py), so that run-to-run drift does not hide them.

Interleaving: the order of configurations rotates by one each repeat, and within a configuration the order of
the conditions rotates too, so drift over the session hits every condition alike. Each run leaves
DIR/<condition>/<config>-r<k>/steps.csv; DIR/runs.jsonl lists the runs in the order they ran. Runs that
already have their steps.csv are skipped, so the same command, called again, resumes a cut-off session.
Analyse with benchmarks/h100/analyse_method.py.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from zerosweep.plan.dsconfig import render
from zerosweep.plan.matrix import MatrixPoint, build_plan, deep_merge
from zerosweep.run.monitors import NVIDIA_SMI_QUERY

GPU_BOUND = ["z0-offnone-nopin-g1n1", "z1-offnone-nopin-g1n1", "z2-offnone-nopin-g1n1"]
CONDITIONS = {"fidelity": ["pipeline", "bare"], "overhead": ["plain", "monitors", "log1"], "blocks": ["blocks"]}


def plan_specs() -> dict[str, dict[str, Any]]:
    """Every single-GPU run of the H100 study, as the pipeline would hand it to `zerosweep launch`."""
    config = yaml.safe_load((REPO / "workflow_config.yaml").read_text())
    config = deep_merge(config, yaml.safe_load((REPO / "benchmarks/h100/h100_overrides.yaml").read_text()))
    plan = build_plan(config)
    return {run_id: spec.to_dict() for run_id, spec in plan.runs.items()}


def parse_configs(items: list[str], default_steps: int) -> dict[str, int]:
    """RUN[:STEPS] items, in order, to {run id: max_steps}."""
    configs: dict[str, int] = {}
    for item in items:
        run_id, _, steps = item.partition(":")
        if steps and not steps.isdigit():
            raise SystemExit(f"--configs {item!r}: STEPS must be a whole number of optimizer steps")
        configs[run_id] = int(steps) if steps else default_steps
    return configs


def rotated(items: list[str], by: int) -> list[str]:
    return items[by % len(items):] + items[:by % len(items)]


def bare_command(spec: dict[str, Any], run_dir: Path, logging_steps: int, script: str = "bare_trainer.py") -> list[str]:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1",
               str(REPO / "benchmarks/h100" / script), "--max-steps", str(spec["training"]["max_steps"]),
               "--warmup", str(spec["training"]["warmup_steps"]), "--logging-steps", str(logging_steps),
               "--steps-dir", str(run_dir)]
    if spec["point"]["deepspeed"]:
        ds_config = run_dir / "ds_config.json"
        point = {k: v for k, v in spec["point"].items() if k != "world_size"}
        ds_config.write_text(json.dumps(render(MatrixPoint(**point))))
        command += ["--ds-config", str(ds_config)]
    return command


MONITORS = ("nvidia-smi", "nvml", "psrecord")


def child_env() -> dict[str, str]:
    """This environment with the checkout's package first on PYTHONPATH (for `python -m zerosweep` children)."""
    return {**os.environ, "PYTHONPATH": f"{REPO / 'scripts'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def start_monitors(run_dir: Path, pid: int, names: tuple[str, ...] = MONITORS) -> list[subprocess.Popen[bytes]]:
    """The pipeline's monitors (all three by default), as zerosweep.run.monitors.NodeMonitors starts them."""
    monitors = []
    if "nvidia-smi" in names:
        smi = open(run_dir / "gpu_memory_log.csv", "wb")  # noqa: SIM115 (closed with the process)
        monitors.append(subprocess.Popen(
            ["nvidia-smi", f"--query-gpu={NVIDIA_SMI_QUERY}", "--format=csv,nounits", "-l", "5"], stdout=smi))
    if "nvml" in names:
        monitors.append(subprocess.Popen(
            [sys.executable, "-m", "zerosweep", "nvml-sampler", "--out", str(run_dir / "nvml.csv"),
             "--interval-ms", "50"], env=child_env()))
    if "psrecord" in names:
        monitors.append(subprocess.Popen(["psrecord", str(pid), "--include-children", "--interval", "5",
                                          "--log", str(run_dir / "cpu_memory_log.txt")]))
    return monitors


def stop_monitors(monitors: list[subprocess.Popen[bytes]]) -> None:
    """As NodeMonitors.stop does: psrecord writes its last line on SIGINT."""
    for monitor in monitors:
        monitor.send_signal(signal.SIGINT if "psrecord" in str(monitor.args) else signal.SIGTERM)
    for monitor in monitors:
        monitor.wait(timeout=30)


def run_one(kind: str, condition: str, spec: dict[str, Any], run_dir: Path, block_seconds: float) -> dict[str, Any]:
    run_dir.mkdir(parents=True, exist_ok=True)
    env = child_env()
    started = time.time()
    if condition == "pipeline":
        command = [sys.executable, "-m", "zerosweep", "launch", "--spec-json", json.dumps(spec),
                   "--run-dir", str(run_dir)]
        with open(run_dir / "launch.log", "wb") as log:
            rc = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    else:
        if condition == "blocks":
            command = bare_command(spec, run_dir, 500, "overhead_blocks.py") + ["--block-seconds", str(block_seconds)]
        else:
            command = bare_command(spec, run_dir, logging_steps=1 if condition == "log1" else 500)
        with open(run_dir / "bare.log", "wb") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
            monitors = start_monitors(run_dir, process.pid) if condition == "monitors" else []
            rc = process.wait()
            stop_monitors(monitors)
    return {"kind": kind, "condition": condition, "config": spec["run_id"], "rc": rc,
            "started": started, "wall_s": time.time() - started,
            "steps_csv": str((run_dir / "steps.csv").relative_to(run_dir.parents[1]))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=sorted(CONDITIONS))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--configs", nargs="+", default=None,
                        help="RUN[:STEPS] run ids (default: fidelity z0-z2, overhead z1)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=40)
    parser.add_argument("--block-seconds", type=float, default=10.0, help="blocks: seconds per condition block")
    args = parser.parse_args()
    specs = plan_specs()
    configs = parse_configs(args.configs or (GPU_BOUND if args.kind == "fidelity" else ["z1-offnone-nopin-g1n1"]),
                            args.max_steps)
    unknown = [name for name in configs if name not in specs]
    if unknown:
        raise SystemExit(f"--configs: unknown run ids {unknown}; known: {sorted(specs)}")
    conditions = CONDITIONS[args.kind]
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "runs.jsonl", "a", encoding="utf-8") as journal:
        for k in range(1, args.repeats + 1):
            for index, config in enumerate(rotated(list(configs), k - 1)):
                for condition in rotated(conditions, k - 1 + index):
                    run_dir = args.out / condition / f"{config}-r{k}"
                    if (run_dir / "steps.csv").is_file():
                        continue  # done by an earlier call (a call cut by its time limit resumes here)
                    spec = copy.deepcopy(specs[config])
                    spec["training"]["max_steps"] = configs[config]
                    record = run_one(args.kind, condition, spec, run_dir, args.block_seconds)
                    record.update(repeat=k, max_steps=configs[config])
                    journal.write(json.dumps(record) + "\n")
                    journal.flush()
                    print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
