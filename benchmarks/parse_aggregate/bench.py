"""Wall time of parse-memory + table for 500 generated runs with realistic log sizes.

Run from the repository root:  python benchmarks/parse_aggregate/bench.py [--runs 500] [--repeat 3]

Each run gets the files the launcher writes: nvidia-smi every 5 s and psrecord every 5 s per node, the NVML
sampler every 50 ms per node (all GPUs of the node in one file), one torch record per rank, metrics.json and
run_spec.json, for a training of 3 to 5 minutes. GPU counts follow the shipped matrix (mostly 1 and 2 GPUs,
some 4 and 8, multi-node runs of 2 GPUs per node). Generation is not timed; parsing and tables are timed
in-process, as one sequential loop (no use of the second core); one `python -m zerosweep parse-memory`
subprocess (what Snakemake starts per run) is timed separately.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from zerosweep.jsonio import write_json
from zerosweep.plan.matrix import MatrixPoint
from zerosweep.report.run_summary import memory
from zerosweep.report.study import tables as aggregate

# (gpus_per_node, nodes, weight): roughly the shipped studies' mix.
SHAPES = [(1, 1, 10), (2, 1, 7), (4, 1, 1), (8, 1, 1), (2, 2, 1), (2, 4, 1), (2, 8, 1)]
RUNS_PER_STUDY = 10


def write_run(root: Path, number: int, rng: random.Random) -> dict:
    gpn, nodes = rng.choices([(g, n) for g, n, _ in SHAPES], weights=[w for *_, w in SHAPES])[0]
    stage = rng.choice([1, 2, 3])
    offload = rng.choice(["none", "cpu"])
    point = MatrixPoint(True, stage, offload, offload == "cpu" and rng.random() < 0.5, gpn, nodes)
    run_id = f"{point.point_id}-x{number:06x}"
    run = root / run_id
    monitor = run / "monitor"
    monitor.mkdir(parents=True)
    seconds = rng.uniform(180, 300)
    oom = rng.random() < 0.04
    spec = {"run_id": run_id, "point": {**point.__dict__, "world_size": point.world_size},
            "runtime": {"device": "cuda"}, "data": {"samples_per_gpu": 500}, "training": {}, "model": {}}  # fmt: skip
    (run / "run_spec.json").write_text(json.dumps(spec))
    start = datetime(2026, 11, 24, 9, 0, 0, 123000)
    plateau = {i: rng.randint(8000, 30000) for i in range(gpn)}
    for node in range(nodes):
        host = f"gpu{node:03d}"
        smi = ["timestamp, index, name, memory.used [MiB], memory.total [MiB]"]
        for k in range(int(seconds / 5)):
            stamp = start + timedelta(seconds=5 * k)
            for i in range(gpn):
                used = plateau[i] + rng.randint(-64, 64) if 2 < k < seconds / 5 - 2 else 0
                smi.append(
                    f"{stamp:%Y/%m/%d %H:%M:%S}.{stamp.microsecond // 1000:03d}, {i}, NVIDIA H100 80GB HBM3, {used}, 81559"
                )
        (monitor / f"gpu_memory_log_{host}.csv").write_text("\n".join(smi) + "\n")
        nvml = ["timestamp_s,index,memory_used_mib,memory_total_mib"]
        t0 = 1795510800.0
        for k in range(int(seconds / 0.05)):
            for i in range(gpn):
                used = plateau[i] + (k * 7919 % 97) if 60 < k < seconds / 0.05 - 60 else 0.0
                nvml.append(f"{t0 + 0.05 * k:.3f},{i},{used:.2f},81559.00")
        (monitor / f"nvml_{host}.csv").write_text("\n".join(nvml) + "\n")
        cpu = ["# Elapsed time   CPU (%)     Real (MB)   Virtual (MB)"]
        for k in range(int(seconds / 5)):
            real = 2000 + rng.random() * 6000
            cpu.append(f"{5.004 * k:12.3f} {rng.random() * 800:12.3f} {real:12.3f} {real * 9:12.3f}")
        (monitor / f"cpu_memory_log_{host}.txt").write_text("\n".join(cpu) + "\n")
    for rank in range(point.world_size):
        record = {"rank": rank, "max_memory_allocated_mib": 7000.0 + rank, "max_memory_reserved_mib": 7900.0 + rank}
        (monitor / f"torch_memory_rank{rank}.json").write_text(json.dumps(record))
    rate = 11.0 * point.world_size * rng.uniform(0.7, 1.0)
    metrics = {"status": "oom" if oom else "ok"}
    if not oom:
        metrics |= {"train_loss": 0.7, "eval_loss": 1.29, "eval_losses": [{"epoch": 1.0, "eval_loss": 1.3}],
                    "train_samples_per_second": rate, "eval_samples_per_second": 40.0, "steps_per_epoch": 31,
                    "train_runtime": seconds, "steady_samples_per_second": rate * 1.1, "steady_tokens_per_second": rate * 563,
                    "flops_per_token": 3.5e9, "gpu_name": "NVIDIA H100 80GB HBM3",
                    "world_size": point.world_size}  # fmt: skip
    (run / "metrics.json").write_text(json.dumps(metrics))
    return spec


def generate(root: Path, runs: int) -> list[dict]:
    rng = random.Random(20261124)
    return [write_run(root, number, rng) for number in range(runs)]


def time_once(root: Path, specs: list[dict]) -> tuple[float, float, int]:
    started = time.perf_counter()
    for spec in specs:
        run = root / spec["run_id"]
        write_json(run / "summary.json", memory.summarise_run(run), indent=None)
    parsed = time.perf_counter()
    rows = 0
    for first in range(0, len(specs), RUNS_PER_STUDY):
        chunk = specs[first : first + RUNS_PER_STUDY]
        kind = "comparison" if first // RUNS_PER_STUDY % 2 == 0 else "scaling"
        study = {"name": f"s{first}", "title": f"Study {first}", "table": kind, "scaling_axis": "gpus_per_node",
                 "peak_tflops": None, "runs": {spec["run_id"]: spec for spec in chunk}}  # fmt: skip
        summaries = aggregate.load_summaries([root / spec["run_id"] / "summary.json" for spec in chunk])
        table = aggregate.build_table(study, summaries)
        aggregate.write_csv(table, root / "tables" / f"s{first}.csv")
        aggregate.write_markdown(table, root / "tables" / f"s{first}.md")
        rows += len(table.frame)
    return parsed - started, time.perf_counter() - parsed, rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        made = time.perf_counter()
        specs = generate(root, args.runs)
        size = sum(path.stat().st_size for path in root.rglob("*") if path.is_file())
        lines = sum(path.read_bytes().count(b"\n") - 1 for path in root.rglob("nvml_*.csv"))
        gpus = sum(spec["point"]["world_size"] for spec in specs)
        print(f"generated {args.runs} runs ({gpus} GPUs, {size / 2**20:.0f} MiB of logs, {lines:,} NVML lines) "
              f"in {time.perf_counter() - made:.1f} s")  # fmt: skip
        totals = []
        for _ in range(args.repeat):
            parse_s, table_s, rows = time_once(root, specs)
            totals.append(parse_s + table_s)
            print(f"parse {parse_s:.2f} s + tables {table_s:.2f} s ({rows} rows) = {parse_s + table_s:.2f} s")
        print(f"median parse + aggregate of {args.runs} runs: {statistics.median(totals):.2f} s")
        one = root / specs[0]["run_id"]
        cli_times = []
        for _ in range(5):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "zerosweep", "parse-memory", "--run-dir", str(one), "--out",
                            str(one / "cli_summary.json")], check=True, capture_output=True,
                           env={"PYTHONPATH": str(REPO / "scripts")})  # fmt: skip
            cli_times.append(time.perf_counter() - started)
        print(f"one `python -m zerosweep parse-memory` subprocess: median {statistics.median(cli_times):.2f} s")


if __name__ == "__main__":
    main()
