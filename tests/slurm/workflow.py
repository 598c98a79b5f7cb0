"""Drive the zerosweep workflow through `snakemake --executor slurm` on the local test cluster.

Shared by tests/test_slurm.py and benchmarks/slurm/bench.py: a working directory with the shipped
workflow_config.yaml plus an overlay configfile, the snakemake command line (the SLURM workflow profile with the
test's overrides), and readers for what Snakemake and SLURM report (submissions, job states, file hashes).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from zerosweep.plan.matrix import deep_merge
from zerosweep.run.ops import op_cache_dir

# The workflow profile Snakemake loads by itself (profiles/default): with `--executor slurm` it sets the job
# limit, retries and the squeue status check.
PROFILE = REPO / "profiles" / "default"
# What a clean clone needs to run the workflow (the rest: tests, benchmarks, docs, results).
CLONE_PARTS = ("Snakefile", "rules", "schemas", "profiles", "scripts", "envs", "report", "ds_configs")
# One optimizer-step-sized toy: bloom-tiny, 64-token examples, 3 steps, CPU ranks over gloo.
TEST_SETTINGS: dict[str, Any] = {
    "model": {"architecture": "bloom-tiny", "weights": "random", "tokenizer": "local"},
    "data": {"source": "synthetic", "samples_per_gpu": 8, "eval_samples": 4, "max_length": 64},
    "training": {"precision": "bf16", "epochs": 1, "max_steps": 3, "warmup_steps": 1, "per_device_batch_size": 2,
                 "gradient_accumulation_steps": 2},
    "monitor": {"cpu_interval_s": 0.5, "gpu_interval_s": 1},
    "runtime": {"device": "cpu"},
    # cpus_per_gpu 1 of the node's 4: the multi-node srun must ask for the allocation's CPUs, not the host's
    # (the test nodes bind no CPUs, TaskPlugin=task/none). mem 1000 MB of a node's 4000: four jobs fit on one node,
    # which they may share (exclusive off: four whole nodes would run the suite's jobs four at a time; the as-typed
    # test keeps the shipped default and checks that SLURM gave its job the whole node).
    "slurm": {"partition": "debug", "time_min": 10, "mem_mb_per_node": 1000, "cpus_per_gpu": 1, "exclusive": False},
}
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")
FINISHED = re.compile(r"Finished jobid: (\d+) \(Rule: (\w+)\)")


def shipped_config() -> dict[str, Any]:
    with open(REPO / "workflow_config.yaml", encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@dataclass
class Workdir:
    """A throw-away working directory of the workflow (the checkout's Snakefile, its own results/)."""

    path: Path
    overlay: dict[str, Any]

    @property
    def overlay_file(self) -> Path:
        return self.path / "overlay.yaml"

    @property
    def results(self) -> Path:
        return self.path / "results"

    def run_dir(self, run_id: str) -> Path:
        return self.results / "runs" / run_id

    def config(self) -> dict[str, Any]:
        """The merged config Snakemake sees (the directory's workflow_config.yaml + the overlay, if any)."""
        with open(self.path / "workflow_config.yaml", encoding="utf-8") as handle:
            config: dict[str, Any] = yaml.safe_load(handle)
        return deep_merge(config, self.overlay) if self.overlay_file.exists() else config

    def plan(self) -> Any:
        sys.path.insert(0, str(REPO / "scripts"))
        from zerosweep.plan.matrix import build_plan

        return build_plan(self.config())

    def study_runs(self, study: str) -> list[str]:
        return list(self.plan().studies[study].run_ids)


def make_workdir(path: Path, studies: Mapping[str, Any], extensions_dir: Path,
                 overrides: Mapping[str, Any] | None = None) -> Workdir:
    """`path` gets workflow_config.yaml (the Snakefile's `configfile:` is relative to the working dir) and
    overlay.yaml: the test settings, `studies` (all of them built), and `overrides` on top."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "workflow_config.yaml", path / "workflow_config.yaml")
    overlay = deep_merge(TEST_SETTINGS, {"runtime": {"torch_extensions_dir": str(extensions_dir)},
                                         "studies": dict(studies), "build_studies": list(studies)})
    overlay = deep_merge(overlay, overrides or {})
    workdir = Workdir(path, overlay)
    workdir.overlay_file.write_text(yaml.safe_dump(overlay, sort_keys=False), encoding="utf-8")
    return workdir


def copy_workflow(path: Path) -> None:
    """The workflow's files as a fresh clone has them (no results/, no .snakemake/)."""
    path.mkdir(parents=True, exist_ok=True)
    for part in CLONE_PARTS:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, path / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(source, path / part)


def make_clone(path: Path, studies: Mapping[str, Any], extensions_dir: Path,
               overrides: Mapping[str, Any] | None = None) -> Workdir:
    """A copy of the workflow as a user's clone has it, with the test settings and `studies` written into its
    own workflow_config.yaml: `snakemake --executor slurm <target>` runs there exactly as typed."""
    copy_workflow(path)
    overlay = deep_merge(TEST_SETTINGS, {"runtime": {"torch_extensions_dir": str(extensions_dir)},
                                         "studies": dict(studies), "build_studies": list(studies)})
    overlay = deep_merge(overlay, overrides or {})
    config = deep_merge({key: value for key, value in shipped_config().items() if key != "studies"}, overlay)
    (path / "workflow_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return Workdir(path, overlay)


def client_env(slurm_conf: Path | str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Host-side environment: SLURM_CONF of the test cluster, no stale SLURM_* job variables, and this
    interpreter's bin dir first on PATH (the rules run `python -m zerosweep` inside the jobs, which inherit
    the submitting environment through sbatch --export=ALL)."""
    env = {key: value for key, value in (os.environ if base is None else base).items()
           if not key.startswith("SLURM_")}
    env["SLURM_CONF"] = str(slurm_conf)
    env["PATH"] = os.pathsep.join(dict.fromkeys([str(Path(sys.executable).parent),
                                                 *env.get("PATH", "").split(os.pathsep)]))
    return env


def snakemake_command(workdir: Workdir, *extra: str, init_seconds: int | None = 1) -> list[str]:
    """The real CLI with `--executor slurm`, run from the checkout's Snakefile in `workdir`; Snakemake loads the
    workflow profile (profiles/default) next to the Snakefile by itself."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
               "--directory", str(workdir.path), "--configfile", str(workdir.overlay_file), "--executor", "slurm"]
    if init_seconds is not None:
        # The profile's 20 s suits real clusters; 1 s sees a short job ~12 s after submission.
        command += ["--slurm-init-seconds-before-status-checks", str(init_seconds)]
    return command + list(extra)


def as_typed(*args: str) -> list[str]:
    """`snakemake <args>` exactly as a user types it (this environment's entry point), for a make_clone dir."""
    return [str(Path(sys.executable).parent / "snakemake"), *args]


def start_snakemake(workdir: Workdir, env: Mapping[str, str], log: Path, *extra: str,
                    init_seconds: int | None = 1, command: list[str] | None = None) -> subprocess.Popen[bytes]:
    """Snakemake in the background, stdout and stderr to `log`. Not under `timeout`: that would signal the whole
    process group, so Snakemake's own children (its scancel included) would get our Ctrl-C too."""
    command = command or snakemake_command(workdir, *extra, init_seconds=init_seconds)
    with open(log, "wb") as handle:  # the child keeps its own descriptor
        return subprocess.Popen(command, cwd=workdir.path, env=dict(env), stdout=handle, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)


def stop_snakemake(process: subprocess.Popen[bytes], grace_s: float = 90) -> int:
    """Ctrl-C: Snakemake cancels its SLURM jobs (scancel) and exits; SIGKILL if it does not within grace_s
    (it ignores SIGTERM while jobs run)."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


def run_snakemake(workdir: Workdir, env: Mapping[str, str], log: Path, *extra: str, limit_s: float = 900,
                  init_seconds: int | None = 1, command: list[str] | None = None) -> tuple[int, str]:
    """Run to the end, or interrupt it after limit_s (returning its exit code, never hanging the caller)."""
    process = start_snakemake(workdir, env, log, *extra, init_seconds=init_seconds, command=command)
    try:
        code = process.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        code = stop_snakemake(process)
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"\n[test] interrupted after {limit_s:.0f} s\n")
    finally:
        if process.poll() is None:
            stop_snakemake(process)
    return code, log.read_text(encoding="utf-8", errors="replace")


def workflow_jobs(env: Mapping[str, str], workdir: Workdir) -> dict[str, str]:
    """Job id -> state of every job in the queue (any state) whose working directory is `workdir`."""
    result = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i|%T|%Z"], env=dict(env), capture_output=True,
                            text=True, timeout=30, check=True)
    jobs = {}
    for line in result.stdout.splitlines():
        job_id, state, directory = line.strip().split("|", 2)
        if Path(directory).resolve() == workdir.path.resolve():
            jobs[job_id] = state
    return jobs


# --- what Snakemake and SLURM report ----------------------------------------------------------------


@dataclass(frozen=True)
class Submission:
    snakemake_jobid: int
    slurm_jobid: str
    rule: str
    wildcards: str  # the run id for rule train (the plugin's log dir is rule_<rule>/<wildcards>/)
    log: str


def submissions(text: str) -> list[Submission]:
    found = []
    for match in SUBMITTED.finditer(text):
        parts = Path(match.group(3)).parts
        rule_dir = next((i for i, part in enumerate(parts) if part.startswith("rule_")), None)
        rule = parts[rule_dir][len("rule_"):] if rule_dir is not None else ""
        wildcards = parts[rule_dir + 1] if rule_dir is not None and rule_dir + 2 < len(parts) else ""
        found.append(Submission(int(match.group(1)), match.group(2), rule, wildcards, match.group(3)))
    return found


def train_submissions(text: str) -> dict[str, list[str]]:
    """Run id -> its SLURM job ids, in submission order (a retry is a second id)."""
    runs: dict[str, list[str]] = {}
    for item in submissions(text):
        if item.rule == "train":
            runs.setdefault(item.wildcards, []).append(item.slurm_jobid)
    return runs


def finished_train_runs(text: str) -> set[str]:
    """Runs whose train job Snakemake has seen finish (a retried job reuses its Snakemake jobid)."""
    run_of = {item.snakemake_jobid: item.wildcards for item in submissions(text) if item.rule == "train"}
    return {run_of[int(jobid)] for jobid, rule in FINISHED.findall(text) if rule == "train" and int(jobid) in run_of}


def squeue(env: Mapping[str, str], job_ids: Iterable[str]) -> dict[str, dict[str, str]]:
    """Job id -> state, time limit, nodes, reason, for jobs of any state (MinJobAge keeps finished ones)."""
    ids = ",".join(job_ids)
    if not ids:
        return {}
    result = subprocess.run(["squeue", "-h", "-t", "all", "-j", ids, "-o", "%i|%T|%l|%N|%r"], env=dict(env),
                            capture_output=True, text=True, timeout=30, check=False)
    jobs = {}
    for line in result.stdout.splitlines():
        job_id, state, limit, nodes, reason = line.strip().split("|")
        jobs[job_id] = {"state": state, "time_limit": limit, "nodes": nodes, "reason": reason}
    return jobs


def tree_hashes(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file below root."""
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def wait_for(condition: Any, timeout_s: float, what: str, interval_s: float = 0.5,
             process: subprocess.Popen[bytes] | None = None) -> Any:
    """Poll condition() until it returns something truthy; fail early if `process` ended."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"snakemake exited (rc={process.returncode}) while waiting for {what}")
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


# The DeepSpeed ops a CPU run of ZeRO stage 0-3 without offload JIT-compiles (gloo shared-memory collectives,
# the CPU FusedAdam).
CPU_OPS = ("ShareMemCommBuilder", "FusedAdamBuilder")


def seed_torch_extensions(target: Path, ops: Iterable[str] = CPU_OPS, timeout_s: float = 900) -> Path:
    """A private TORCH_EXTENSIONS_DIR with the DeepSpeed ops built before any job starts.

    Seeded from the checkout's cache (results/cache/torch_extensions, or $ZEROSWEEP_TEST_TORCH_EXTENSIONS), with
    timestamps and without `lock` files, then each op is loaded once here, which builds what is missing (1-2
    minutes on 2 cores; seconds when the seed is current). So no job compiles: a job killed by the tests
    (scancel, time limit, Ctrl-C) cannot leave a FileBaton `lock` behind, on which every later load of that op
    would wait forever; and another session rebuilding the shared cache cannot stall these tests."""
    source = Path(os.environ.get("ZEROSWEEP_TEST_TORCH_EXTENSIONS", REPO / "results" / "cache" / "torch_extensions"))
    if source.is_dir():
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("lock", ".ninja_lock"), dirs_exist_ok=True)
    target.mkdir(parents=True, exist_ok=True)
    script = ("import sys\nfrom deepspeed.accelerator import get_accelerator\n"
              "for name in sys.argv[1:]:\n    get_accelerator().create_op_builder(name).load(verbose=False)\n")
    # the jobs load from this host's keyed build directory under the base (run.ops.op_cache_dir)
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "TORCH_EXTENSIONS_DIR": str(op_cache_dir(target, "cpu", None, None)),
           # torch finds ninja on PATH: the one of this environment, as in the jobs (and in .ninja_log)
           "PATH": os.pathsep.join(dict.fromkeys([str(Path(sys.executable).parent),
                                                  *os.environ.get("PATH", "").split(os.pathsep)]))}
    result = subprocess.run([sys.executable, "-c", script, *ops], env=env, capture_output=True, text=True,
                            timeout=timeout_s, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"building DeepSpeed ops {list(ops)} in {target} failed:\n{result.stderr[-3000:]}")
    return target
