"""Workflow overhead of `snakemake --executor slurm` on the local test cluster (tests/slurm/cluster.py).

Run from the repository root, as root:  python benchmarks/slurm/bench.py [--repeat 3] [--json out.json]

Measures, with the shipped SLURM profile (profiles/slurm) and, for comparison, with the tests' faster first
status check (--slurm-init-seconds-before-status-checks 1):
  1. `sbatch --wait --wrap true`: SLURM's own submit-to-done;
  2. a trivial one-rule workflow (`hostname > out`) through the executor: Snakemake's submit-to-done;
  3. a 4-run study (bloom-tiny on CPU: 1 node x 1 rank, 1 node x 2 ranks, 2 nodes, 4 nodes, submitted
     together) end to end, against the runs' own durations: the SLURM job (squeue start/end), the launcher
     (status.json duration_s), the ranks' process (phase_seconds.total_s) and the Trainer (train_runtime).
Starts its own cluster (free ports, temporary state dir) and stops it at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "slurm"))

import cluster
from workflow import (
    PROFILE,
    Workdir,
    client_env,
    make_workdir,
    read_json,
    seed_torch_extensions,
    snakemake_command,
    train_submissions,
)

STUDIES = {
    "slurm_ranks": {"title": "ranks on one node", "table": "scaling", "scaling_axis": "gpus_per_node",
                    "zero_stage": [2], "gpus_per_node": [1, 2]},
    "slurm_nodes": {"title": "nodes", "table": "scaling", "scaling_axis": "nodes", "zero_stage": [2],
                    "nodes": [1, 2, 4]},
}
TRIVIAL_SNAKEFILE = """\
rule trivial:
    output:
        "out.txt",
    resources:
        slurm_partition="debug",
        mem_mb=100,
        runtime=5,
    shell:
        "hostname > {output}"
"""
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+)")
FINISHED = re.compile(r"Finished jobid: \d+ \(Rule: (train|trivial)\)")


def profile_init_seconds() -> int:
    import yaml

    with open(PROFILE / "config.yaml", encoding="utf-8") as handle:
        return int(yaml.safe_load(handle)["slurm-init-seconds-before-status-checks"])


def slurm_times(env: dict[str, str], job_ids: list[str]) -> dict[str, tuple[float, float]]:
    """Job id -> (start, end) as epoch seconds (squeue keeps finished jobs for MinJobAge)."""
    result = subprocess.run(["squeue", "-h", "-t", "all", "-j", ",".join(job_ids), "-o", "%i|%S|%e"], env=env,
                            capture_output=True, text=True, check=True)
    times = {}
    for line in result.stdout.split():
        job, start, end = line.split("|")
        times[job] = (dt.datetime.fromisoformat(start).timestamp(), dt.datetime.fromisoformat(end).timestamp())
    return times


def watch(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run Snakemake; note when each submission and each finished job first shows in its output."""
    events: dict[str, list[float]] = {"submitted": [], "finished": []}
    start = time.time()
    with open(log, "wb") as handle:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    seen = ""
    while True:
        done = process.poll() is not None
        text = log.read_text(encoding="utf-8", errors="replace")
        if text != seen:
            now = time.time()
            events["submitted"] += [now] * (len(SUBMITTED.findall(text)) - len(events["submitted"]))
            events["finished"] += [now] * (len(FINISHED.findall(text)) - len(events["finished"]))
            seen = text
        if done:
            break
        time.sleep(0.1)
    if process.returncode != 0:
        raise SystemExit(f"snakemake failed ({process.returncode}); see {log}:\n{text[-3000:]}")
    return {"start": start, "end": time.time(), "events": events, "jobs": SUBMITTED.findall(text), "text": text}


def bench_sbatch(env: dict[str, str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(["sbatch", "--wait", "-p", "debug", "-o", "/dev/null", "--wrap", "true"], env=env,
                       check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def bench_trivial(env: dict[str, str], base: Path, init: int, repeat: int) -> list[dict[str, float]]:
    rows = []
    for index in range(repeat):
        workdir = base / f"trivial-init{init}-{index}"
        workdir.mkdir(parents=True)
        (workdir / "Snakefile").write_text(TRIVIAL_SNAKEFILE, encoding="utf-8")
        command = [sys.executable, "-m", "snakemake", "--snakefile", str(workdir / "Snakefile"), "--directory",
                   str(workdir), "--workflow-profile", str(PROFILE), "--executor", "slurm",
                   "--slurm-init-seconds-before-status-checks", str(init)]
        result = watch(command, workdir, env, workdir / "snakemake.log")
        (job,) = result["jobs"]
        job_start, job_end = slurm_times(env, [job])[job]
        submitted, finished = result["events"]["submitted"][0], result["events"]["finished"][0]
        rows.append({"wall_s": result["end"] - result["start"], "submit_to_done_s": finished - submitted,
                     "job_s": job_end - job_start, "seen_after_job_end_s": finished - job_end})
    return rows


def bench_study(env: dict[str, str], base: Path, init: int, extensions: Path) -> dict[str, Any]:
    workdir: Workdir = make_workdir(base / f"study-init{init}", STUDIES, extensions)
    command = snakemake_command(workdir, init_seconds=init)
    result = watch(command, workdir.path, env, workdir.path / "snakemake.log")
    jobs = {run: ids[-1] for run, ids in train_submissions(result["text"]).items()}
    slurm = slurm_times(env, list(jobs.values()))
    runs = {}
    for run, job in sorted(jobs.items()):
        status = read_json(workdir.run_dir(run) / "status.json")
        metrics = read_json(workdir.run_dir(run) / "metrics.json")
        runs[run] = {"slurm_job_s": slurm[job][1] - slurm[job][0], "launcher_s": status["duration_s"],
                     "rank_process_s": metrics["phase_seconds"]["total_s"],
                     "train_runtime_s": metrics["train_runtime"]}
    submitted = result["events"]["submitted"]
    finished = result["events"]["finished"]
    last_job_end = max(end for _, end in slurm.values())
    return {"wall_s": result["end"] - result["start"], "first_submit_to_last_train_seen_s": finished[-1] - submitted[0],
            "last_job_end_to_seen_s": finished[-1] - last_job_end,
            "after_last_train_s": result["end"] - finished[-1], "runs": runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="repeats of the sbatch and trivial-rule timings")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (the test cluster's daemons)")
    inits = [profile_init_seconds(), 1]
    numbers: dict[str, Any] = {
        "machine": f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
                   f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
                   f"Linux {platform.release()}, Python {platform.python_version()}",
        "date": dt.date.today().isoformat(),
    }
    with tempfile.TemporaryDirectory(prefix="zerosweep-bench-slurm-") as tmp:
        base = Path(tmp)
        port = next(port for port in range(19500, 21500, 50)
                    if all(cluster._port_free(p) for p in (port, port + 1, port + 2, *range(port + 11, port + 15))))
        info = cluster.start(base / "cluster", base_port=port)
        try:
            env = client_env(info.slurm_conf)
            extensions = seed_torch_extensions(base / "torch_extensions")
            numbers["sbatch_wait_s"] = bench_sbatch(env, args.repeat)
            print(f"sbatch --wait --wrap true: median {statistics.median(numbers['sbatch_wait_s']):.2f} s "
                  f"({', '.join(f'{t:.2f}' for t in numbers['sbatch_wait_s'])})", flush=True)
            for init in inits:
                rows = bench_trivial(env, base, init, args.repeat)
                numbers[f"trivial_init{init}"] = rows
                print(f"trivial rule, init {init} s: submit-to-done median "
                      f"{statistics.median(r['submit_to_done_s'] for r in rows):.1f} s, wall median "
                      f"{statistics.median(r['wall_s'] for r in rows):.1f} s, job itself median "
                      f"{statistics.median(r['job_s'] for r in rows):.0f} s "
                      f"({json.dumps([{k: round(v, 1) for k, v in r.items()} for r in rows])})", flush=True)
            for init in inits:
                study = bench_study(env, base, init, extensions)
                numbers[f"study_init{init}"] = study
                print(f"4-run study, init {init} s: wall {study['wall_s']:.1f} s; first submit to last train "
                      f"seen {study['first_submit_to_last_train_seen_s']:.1f} s; last job end to seen "
                      f"{study['last_job_end_to_seen_s']:.1f} s; after the last train {study['after_last_train_s']:.1f} s",
                      flush=True)
                for run, row in study["runs"].items():
                    print(f"  {run}: SLURM job {row['slurm_job_s']:.0f} s, launcher {row['launcher_s']:.1f} s, "
                          f"rank process {row['rank_process_s']:.1f} s, train_runtime {row['train_runtime_s']:.2f} s",
                          flush=True)
        finally:
            cluster.stop(base / "cluster")
    print(json.dumps(numbers, indent=1) if args.json is None else f"numbers written to {args.json}")
    if args.json is not None:
        args.json.write_text(json.dumps(numbers, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
