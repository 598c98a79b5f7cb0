"""One training run end to end, for real, on CPU: `zerosweep launch` -> node launcher(s) -> torchrun -> ranks.

A tiny BLOOM (bloom-tiny), 64-token examples and 3 optimizer steps keep each run to seconds; DeepSpeed's
JIT-compiled ops go to one shared TORCH_EXTENSIONS_DIR (the workflow's own cache), so each compiles once.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from conftest import REPO, shipped_config
from zerosweep.jsonio import write_json
from zerosweep.plan.matrix import MatrixPoint, RunSpec, deep_merge
from zerosweep.report.run_summary.memory import summarise_run
from zerosweep.run.merge import MEASURED_FIELDS, metrics_skeleton
from zerosweep.run.node import cuda_arch_list, needs_hub, node_log_name
from zerosweep.run.outcome import SRUN_OOM_EXIT, Deadline, Outcome, classify, exception_outcome
from zerosweep.run.train import TRAINING_STARTED_MARKER

PSRECORD_HEADER = re.compile(r"^# +Elapsed time +CPU \(%\) +Real \(MB\) +Virtual \(MB\)\s*$")
TEST_SETTINGS: dict[str, Any] = {
    "model": {"architecture": "bloom-tiny", "weights": "random", "tokenizer": "local"},
    "data": {"source": "synthetic", "samples_per_gpu": 8, "eval_samples": 4, "max_length": 64},
    "training": {"precision": "bf16", "max_steps": 3, "warmup_steps": 1, "per_device_batch_size": 2,
                 "gradient_accumulation_steps": 2},
    "monitor": {"cpu_interval_s": 0.5},
    "runtime": {"device": "cpu"},
}
RUN_TIMEOUT_S = 600


@pytest.fixture(scope="session")
def torch_extensions_dir() -> Path:
    """Shared by every run of the session, and with the workflow (results/cache/torch_extensions)."""
    path = Path(os.environ.get("ZEROSWEEP_TEST_TORCH_EXTENSIONS", REPO / "results" / "cache" / "torch_extensions"))
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


@pytest.fixture(scope="session")
def results_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results/ tree of the test session: runs/, cache/ (tokenizer), failed/."""
    return tmp_path_factory.mktemp("results")


def make_spec(point: MatrixPoint, extensions: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    config = deep_merge(shipped_config(), TEST_SETTINGS)
    config = deep_merge(config, {"runtime": {"torch_extensions_dir": str(extensions)}})
    config = deep_merge(config, overrides or {})
    settings = {section: config[section] for section in ("model", "data", "training", "monitor", "runtime")}
    return RunSpec(point.point_id, point, settings).to_dict()


def launcher_command(spec: dict[str, Any], run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "zerosweep", "launch", "--spec-json", json.dumps(spec), "--run-dir", str(run_dir),
            *extra]


def launcher_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO / "scripts")}


def launch(spec: dict[str, Any], results: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    run_dir = results / "runs" / spec["run_id"]
    result = subprocess.run(launcher_command(spec, run_dir, *extra), check=False, env=launcher_env(),
                            capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    return result, run_dir


def read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def finite_positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def check_cpu_log(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert PSRECORD_HEADER.match(lines[0]), lines[0]
    assert len(lines) >= 2, f"{path} has no sample"
    assert len(lines[1].split()) == 4


def check_ok_run(result: subprocess.CompletedProcess[str], run_dir: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """Everything a successful CPU run must leave; returns metrics.json."""
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    point = spec["point"]
    world = point["world_size"]
    metrics = read(run_dir / "metrics.json")
    status = read(run_dir / "status.json")
    env = read(run_dir / "env.json")

    assert metrics["status"] == "ok" and metrics["error"] is None
    for key in (*MEASURED_FIELDS, "torch_memory", "node_ranks", "max_memory_allocated_mib", "max_rss_mib"):
        assert key in metrics, key
    assert metrics["run_id"] == spec["run_id"] and metrics["deepspeed"] == point["deepspeed"]
    assert metrics["zero_stage"] == point["zero_stage"] and metrics["world_size"] == world
    assert metrics["train_samples"] == spec["data"]["samples_per_gpu"] * world  # weak scaling
    assert metrics["eval_samples"] == spec["data"]["eval_samples"]
    assert metrics["global_batch_size"] == 2 * 2 * world
    assert metrics["optimizer_steps"] == spec["training"]["max_steps"]
    assert metrics["steps_per_epoch"] == math.ceil(8 / 2 / 2)
    assert metrics["epochs_completed"] == pytest.approx(3 / metrics["steps_per_epoch"])
    for key in ("train_loss", "eval_loss", "train_samples_per_second", "eval_samples_per_second", "train_runtime",
                "steady_samples_per_second", "steady_tokens_per_second", "flops_per_token"):
        assert finite_positive(metrics[key]), (key, metrics[key])
    # after warmup, less the interval that holds the end-of-epoch evaluation
    assert 1 <= metrics["steady_steps"] <= 3 - spec["training"]["warmup_steps"]
    assert metrics["steady_tokens_per_second"] == pytest.approx(metrics["steady_samples_per_second"] * 64)
    assert metrics["eval_losses"] and all(finite_positive(e["eval_loss"]) and e["epoch"] > 0
                                          for e in metrics["eval_losses"])
    assert metrics["eval_losses"][-1]["eval_loss"] == metrics["eval_loss"]
    assert len(metrics["train_losses"]) == 3
    assert not {"mfu", "tflops_per_gpu", "peak_tflops_per_gpu"} & set(metrics)  # derived in the report layer
    assert metrics["weights"] == "random" and "says nothing" in metrics["loss_note"]
    assert metrics["tokenizer_vocab_size"] <= metrics["model_vocab_size"]
    for phase in ("imports_s", "data_prep_s", "model_build_s", "train_s", "total_s"):
        assert metrics["phase_seconds"][phase] >= 0
    ranks = metrics["torch_memory"]
    assert [entry["rank"] for entry in ranks] == list(range(world))
    assert all(entry["device"] == "cpu" and entry["max_memory_allocated_mib"] is None and entry["max_rss_mib"] > 0
               for entry in ranks)

    assert status["status"] == "ok" and status["exit_code"] == 0 and status["failed_records"] is None
    assert len(status["nodes"]) == point["nodes"]
    for node in status["nodes"]:
        assert node["status"] == "ok" and node["exit_code"] == 0
        assert node["monitors"]["nvidia_smi"]["status"] == "skipped" and node["monitors"]["nvidia_smi"]["reason"]
        assert node["monitors"]["nvml"]["status"] == "skipped"
        assert node["monitors"]["psrecord"]["status"] == "ok"
        check_cpu_log(run_dir / node["monitors"]["psrecord"]["file"])
        # psrecord's clock counts from its start: the report needs it to find the training window's samples
        assert finite_positive(node["monitors"]["psrecord"]["started_s"])
        assert node["monitors"]["psrecord"]["started_s"] <= (run_dir / node["monitors"]["psrecord"]["file"]).stat().st_mtime
        # the CPU packages' energy counters: sampled where the host lets us read them, else the reason
        rapl = node["monitors"]["rapl"]
        assert (rapl["status"] == "ok" and (run_dir / rapl["file"]).is_file()) or (
            rapl["status"] == "skipped" and rapl["reason"])
        assert (run_dir / node["log"]).stat().st_size > 0
        env_vars = node["environment_variables"]
        assert env_vars["NCCL_NVLS_ENABLE"] == "0" and env_vars["TORCH_SYMM_MEM_DISABLE_MULTICAST"] == "1"
        assert env_vars["NVSHMEM_DISABLE_NVLS"] == "1" and Path(env_vars["TORCH_EXTENSIONS_DIR"]).is_absolute()

    assert env["run_id"] == spec["run_id"] and "zerosweep launch" in env["command"]
    assert len(env["hosts"]) == point["nodes"]
    for package in ("torch", "transformers", "deepspeed", "accelerate"):
        assert env["versions"][package]
    assert env["gpu_model"] is None

    monitor = run_dir / "monitor"
    assert not list(monitor.glob("gpu_memory_log_*")) and not list(monitor.glob("nvml_*"))  # CPU: none faked
    assert sorted(p.name for p in monitor.glob("torch_memory_rank*.json")) == [
        f"torch_memory_rank{rank}.json" for rank in range(world)]
    # c10d gives global rank 0 to whichever node sorts first, not necessarily node 0 (train.log)
    assert any(TRAINING_STARTED_MARKER in log.read_text() for log in run_dir.glob("train*.log"))
    assert (run_dir / "run_spec.json").is_file()
    assert (run_dir / "ds_config.json").is_file() == point["deepspeed"]
    # CPU ranks: no GPU energy and no busy fraction, each with its reason (the report's parse of this very run)
    summary = summarise_run(run_dir)
    steady = summary["energy"]["steady"]
    assert steady is not None and steady["samples"] > 0 and steady["gpu_energy_j"] is None
    assert steady["gpu_energy_problem"] == "no NVML log (nvml_<host>.csv): runtime.device is cpu"
    assert steady["gpu_j_per_sample"] is None and steady["power_integral_j"] is None
    assert steady["cpu_package_energy_j"] is not None or "RAPL" in steady["cpu_package_problem"]
    busy = summary["gpu_busy"]
    assert busy["busy_fraction"] is None and busy["host_bound"] is None
    assert busy["busy_problem"] == "no NVML log (nvml_<host>.csv): runtime.device is cpu"
    if point["deepspeed"]:
        ds_config = read(run_dir / "ds_config.json")
        assert ds_config["zero_optimization"]["stage"] == point["zero_stage"]
        assert ds_config["train_micro_batch_size_per_gpu"] == "auto"
    return metrics


# --- fast checks of the launcher's pieces -------------------------------------------------------


def test_node_logs_are_named_by_rank_and_tag() -> None:
    assert node_log_name(0, "gpu01") == "train.log"
    assert node_log_name(1, "gpu02") == "train_gpu02.log"


def test_cuda_arch_list_drops_the_letter_suffix_that_breaks_deepspeed() -> None:
    # no GPU here: falls back to the inherited value, cleaned of '9.0a'-style suffixes
    assert cuda_arch_list(None, "9.0a") == "9.0"
    assert cuda_arch_list(None, "8.0;9.0a") == "8.0;9.0"
    assert cuda_arch_list(None, None) is None


def _classify(run_dir: Path, nodes: list[dict[str, Any]] | None = None, codes: list[int] | None = None,
              mode: str = "single-node") -> Outcome:
    ends = [read(path) for path in sorted((run_dir / "records").glob("end_rank*.json"))]
    return classify(run_dir=run_dir, nodes=nodes or [{"node_rank": 0}], ends=ends, node_codes=codes or [1],
                    mode=mode, train_ok=False, problem=None, signal_name=None, time_limit_reached=False)


def test_words_in_a_log_are_not_an_oom(tmp_path: Path) -> None:
    (tmp_path / "records").mkdir()
    (tmp_path / "train.log").write_text("retrying: CUDA out of memory is not expected here\nMemoryError docs\n")
    write_json(tmp_path / "records" / "end_rank0.json", {"rank": 0, "outcome": "error", "error_type": "ValueError",
                                                          "error": "bad column"})
    result = _classify(tmp_path)
    assert (result.status, result.outcome) == ("failed", "crash")
    assert "rank 0: ValueError: bad column" in (result.error or "")


def test_a_rank_killed_by_sigkill_without_an_oom_kill_is_a_crash(tmp_path: Path) -> None:
    (tmp_path / "records").mkdir()
    (tmp_path / "train.log").write_text("Root Cause (first observed failure):\n[0]:\n  rank : 0\n"
                                        "  exitcode  : -9 (pid: 12)\n")
    nodes = [{"node_rank": 0, "oom_kills_before": 3, "oom_kills_after": 3}]
    result = _classify(tmp_path, nodes)
    assert (result.status, result.outcome) == ("failed", "crash")
    assert "killed by SIGKILL, with no OOM kill recorded" in (result.error or "")
    # the same death with the cgroup's OOM-kill counter moved is the kernel OOM killer
    nodes[0]["oom_kills_after"] = 4
    result = _classify(tmp_path, nodes)
    assert (result.status, result.outcome) == ("oom", "host_oom")
    assert result.evidence == ["node 0: cgroup oom_kill +1"]
    assert _classify(tmp_path, [{"node_rank": 0}], [SRUN_OOM_EXIT], mode="srun").outcome == "host_oom"


def test_a_ranks_end_record_decides_cuda_oom(tmp_path: Path) -> None:
    write_json(tmp_path / "records" / "end_rank1.json", {"rank": 1, "outcome": "cuda_oom",
                                                          "error_type": "OutOfMemoryError", "error": "CUDA out of"})
    result = _classify(tmp_path)
    assert (result.status, result.outcome) == ("oom", "cuda_oom")
    assert result.evidence == ["records/end_rank1.json: cuda_oom"]


def test_signals_are_told_apart_by_the_time_limit(tmp_path: Path) -> None:
    common = {"run_dir": tmp_path, "nodes": [], "ends": [], "node_codes": [143], "mode": "single-node", "train_ok": False,
              "problem": None, "signal_name": "SIGTERM"}
    assert classify(**common, time_limit_reached=True).outcome == "time_limit"
    assert classify(**common, time_limit_reached=False).outcome == "cancelled"
    assert Deadline(at=100.0).reached(20.0) and not Deadline(at=1000.0).reached(20.0) and not Deadline().reached(0)


def test_exception_outcome_uses_the_exception_type() -> None:
    import torch

    assert exception_outcome(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")) == "cuda_oom"
    assert exception_outcome(MemoryError()) == "host_oom"
    assert exception_outcome(RuntimeError("DefaultCPUAllocator: can't allocate memory")) == "host_oom"
    assert exception_outcome(ValueError("the dataset says: out of memory")) == "error"
    # NCCL's allocation on a full GPU (message as an H100 run raised it) vs another NCCL CUDA failure.
    nccl = ("NCCL error in: /pytorch/torch/csrc/distributed/c10d/NCCLUtils.cpp:93, unhandled cuda error (run with "
            "NCCL_DEBUG=INFO for details), NCCL version 2.28.9\nncclUnhandledCudaError: Call to CUDA function "
            "failed.\nLast error:\n")
    dist_error = torch.distributed.DistBackendError
    assert exception_outcome(dist_error(nccl + "Failed to CUDA calloc async 24 bytes")) == "cuda_oom"
    assert exception_outcome(dist_error(nccl + "Cuda failure 'an illegal memory access was encountered'")) == "error"


def test_metrics_skeleton_has_every_field_for_oom_rows(torch_extensions_dir: Path) -> None:
    spec = make_spec(MatrixPoint(True, 2, "cpu", True, 2, 1), torch_extensions_dir)
    skeleton = metrics_skeleton(spec)
    assert set(MEASURED_FIELDS) <= set(skeleton)
    assert skeleton["label"] == "ZeRO Stage 2 + Offloading (pin_memory)"
    assert skeleton["train_samples"] == 16 and skeleton["global_batch_size"] == 8


# --- real runs -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_baseline_run(results_dir: Path, torch_extensions_dir: Path) -> None:
    spec = make_spec(MatrixPoint(False, None, "none", False, 1, 1), torch_extensions_dir)
    result, run_dir = launch(spec, results_dir)
    metrics = check_ok_run(result, run_dir, spec)
    assert metrics["label"] == "No DeepSpeed (baseline)"
    env = read(run_dir / "env.json")
    assert env["launch_mode"] == "single-node" and env["rendezvous_endpoint"].startswith("127.0.0.1:")
    assert env["slurm"] is None


@pytest.mark.slow
@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_zero_stage(stage: int, results_dir: Path, torch_extensions_dir: Path) -> None:
    spec = make_spec(MatrixPoint(True, stage, "none", False, 1, 1), torch_extensions_dir)
    check_ok_run(*launch(spec, results_dir), spec)


@pytest.mark.slow
@pytest.mark.parametrize("stage,pin", [(2, False), (2, True), (3, False), (3, True)])
def test_cpu_offload(stage: int, pin: bool, results_dir: Path, torch_extensions_dir: Path) -> None:
    spec = make_spec(MatrixPoint(True, stage, "cpu", pin, 1, 1), torch_extensions_dir)
    result, run_dir = launch(spec, results_dir)
    check_ok_run(result, run_dir, spec)
    zero = read(run_dir / "ds_config.json")["zero_optimization"]
    assert zero["offload_optimizer"] == {"device": "cpu", "pin_memory": pin}
    assert ("offload_param" in zero) == (stage == 3)


@pytest.mark.slow
def test_two_ranks_on_one_node_zero3(results_dir: Path, torch_extensions_dir: Path) -> None:
    spec = make_spec(MatrixPoint(True, 3, "none", False, 2, 1), torch_extensions_dir)
    metrics = check_ok_run(*launch(spec, results_dir), spec)
    assert metrics["world_size"] == 2 and metrics["node_ranks"] == [0]
    assert [entry["local_rank"] for entry in metrics["torch_memory"]] == [0, 1]


@pytest.mark.slow
def test_two_emulated_nodes(results_dir: Path, torch_extensions_dir: Path) -> None:
    spec = make_spec(MatrixPoint(True, 2, "none", False, 1, 2), torch_extensions_dir)
    result, run_dir = launch(spec, results_dir)
    metrics = check_ok_run(result, run_dir, spec)
    assert metrics["world_size"] == 2
    assert metrics["node_ranks"] == [0, 1]
    assert sorted(entry["node_rank"] for entry in metrics["torch_memory"]) == [0, 1]
    status = read(run_dir / "status.json")
    tags = [node["tag"] for node in status["nodes"]]
    assert [node["node_rank"] for node in status["nodes"]] == [0, 1] and len(set(tags)) == 2
    assert status["launch_mode"] == "local-nodes"
    # node 0 logs to train.log, node 1 to train_<tag>.log; one psrecord log per node
    assert (run_dir / f"train_{tags[1]}.log").stat().st_size > 0
    for tag in tags:
        check_cpu_log(run_dir / "monitor" / f"cpu_memory_log_{tag}.txt")


# Stands in for srun inside an allocation: one task per node, SLURM_NODEID set, as srun does. Each task gets its
# own --node-tag because here every "node" has the same hostname.
STAND_IN_SRUN = """#!{python}
import os, subprocess, sys
args, options = sys.argv[1:], {{}}
while args and args[0].startswith("--"):
    key, _, value = args.pop(0)[2:].partition("=")
    options[key] = value
missing = {{"nodes", "ntasks", "ntasks-per-node", "kill-on-bad-exit", "overlap", "cpus-per-task"}} - set(options)
if missing or options["ntasks-per-node"] != "1":
    sys.exit(f"stand-in srun: bad options {{sorted(missing)}} {{options}}")
nodes = int(options["nodes"])
tasks = [subprocess.Popen(args + ["--node-tag", f"standin{{i}}"], env={{**os.environ, "SLURM_NODEID": str(i)}})
         for i in range(nodes)]
codes = [task.wait() for task in tasks]
sys.exit(next((code for code in codes if code), 0))
"""


@pytest.mark.slow
def test_nodes_start_through_srun_inside_an_allocation(results_dir: Path, torch_extensions_dir: Path,
                                                       tmp_path: Path) -> None:
    (tmp_path / "srun").write_text(STAND_IN_SRUN.format(python=sys.executable))
    (tmp_path / "srun").chmod(0o755)
    spec = make_spec(MatrixPoint(True, 1, "none", False, 1, 2), torch_extensions_dir)
    run_dir = results_dir / "runs" / spec["run_id"]
    env = {**launcher_env(), "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}", "SLURM_JOB_ID": "4242"}
    result = subprocess.run(launcher_command(spec, run_dir), check=False, env=env, capture_output=True, text=True,
                            timeout=RUN_TIMEOUT_S)
    metrics = check_ok_run(result, run_dir, spec)
    assert metrics["node_ranks"] == [0, 1]
    status = read(run_dir / "status.json")
    assert status["launch_mode"] == "srun"
    assert [(node["node_rank"], node["tag"]) for node in status["nodes"]] == [(0, "standin0"), (1, "standin1")]
    assert (run_dir / "train_standin1.log").is_file() and (run_dir / "srun.log").is_file()
    assert read(run_dir / "env.json")["slurm"]["job_id"] == "4242"


@pytest.mark.slow
def test_out_of_memory_is_a_row_not_a_failure(results_dir: Path, torch_extensions_dir: Path) -> None:
    """bloom-560m's 1 GB embedding cannot be built within 512 MiB over what the imports use."""
    spec = make_spec(MatrixPoint(True, 2, "none", False, 1, 1), torch_extensions_dir,
                     {"model": {"architecture": "bloom-560m"}})
    spec["run_id"] = "z2-offnone-nopin-g1n1-x00000e"
    result, run_dir = launch(spec, results_dir, "--rank-memory-headroom-mb", "512")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = read(run_dir / "metrics.json")
    assert metrics["status"] == "oom" and "allocate" in metrics["error"]
    assert metrics["train_loss"] is None and metrics["torch_memory"][0]["max_rss_mib"] > 0
    assert "model_build_s" not in metrics["phase_seconds"] and metrics["phase_seconds"]["data_prep_s"] >= 0
    assert set(MEASURED_FIELDS) <= set(metrics)
    status = read(run_dir / "status.json")
    assert status["status"] == "oom" and status["outcome"] == "host_oom"
    assert "records/end_rank0.json: host_oom" in status["oom_evidence"]
    assert (run_dir / "env.json").is_file() and (run_dir / "monitor").is_dir()
    assert not (results_dir / "failed" / spec["run_id"]).exists()


@pytest.mark.slow
def test_failure_keeps_records_and_names_the_log(results_dir: Path, torch_extensions_dir: Path) -> None:
    missing = results_dir / "no-such-squad.json"
    spec = make_spec(MatrixPoint(True, 1, "none", False, 1, 1), torch_extensions_dir,
                     {"data": {"source": "file", "path": str(missing)}})
    result, run_dir = launch(spec, results_dir)
    assert result.returncode == 1
    assert f"log: {run_dir / 'train.log'}" in result.stderr
    assert not (run_dir / "metrics.json").exists()
    status = read(run_dir / "status.json")
    assert status["status"] == "failed"
    kept = Path(status["failed_records"])
    assert kept.parent == results_dir / "failed" / spec["run_id"]
    assert "FileNotFoundError" in (kept / "train.log").read_text()
    for name in ("run_spec.json", "ds_config.json", "status.json", "env.json", "records/node0.json"):
        assert (kept / name).is_file(), name


def _start_long_run(results: Path, extensions: Path, name: str) -> tuple[subprocess.Popen[bytes], Path]:
    spec = make_spec(MatrixPoint(True, 2, "none", False, 2, 1), extensions,
                     {"training": {"max_steps": 100000}, "data": {"samples_per_gpu": 64}})
    spec["run_id"] = f"z2-offnone-nopin-g2n1-x{name}"  # its own run dir
    run_dir = results / "runs" / spec["run_id"]
    launcher = subprocess.Popen(launcher_command(spec, run_dir), env=launcher_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
    log = run_dir / "train.log"
    deadline = time.monotonic() + 300
    while not (log.exists() and TRAINING_STARTED_MARKER in log.read_text(errors="replace")):
        assert launcher.poll() is None, "launcher ended before training started"
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.5)
    time.sleep(2)  # some steps into training
    return launcher, run_dir


def _alive(processes: list[psutil.Process]) -> list[str]:
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(" ".join(process.cmdline()))
        except psutil.NoSuchProcess:
            continue
    return alive


def _wait_until_gone(processes: list[psutil.Process], timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while (alive := _alive(processes)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return alive


@pytest.mark.slow
def test_sigterm_stops_everything_and_keeps_partial_logs(results_dir: Path, torch_extensions_dir: Path) -> None:
    launcher, run_dir = _start_long_run(results_dir, torch_extensions_dir, "00000f")
    descendants = psutil.Process(launcher.pid).children(recursive=True)
    commands = [" ".join(process.cmdline()) for process in descendants]
    assert any("psrecord" in command for command in commands)
    assert sum("torch.distributed.run" in command for command in commands) == 1
    assert sum("zerosweep train" in command and "torch.distributed.run" not in command for command in commands) == 2
    launcher.send_signal(signal.SIGTERM)
    assert launcher.wait(timeout=90) == 128 + signal.SIGTERM
    assert _wait_until_gone(descendants, 10) == []
    status = read(run_dir / "status.json")
    assert status["status"] == "interrupted" and status["nodes"][0]["interrupted_by"] == "SIGTERM"
    assert (run_dir / "train.log").stat().st_size > 0
    check_cpu_log(run_dir / status["nodes"][0]["monitors"]["psrecord"]["file"])
    kept = Path(status["failed_records"])
    assert (kept / "train.log").stat().st_size > 0 and (kept / "monitor").is_dir()


@pytest.mark.slow
def test_sigkilled_launcher_leaves_no_process_behind(results_dir: Path, torch_extensions_dir: Path) -> None:
    launcher, run_dir = _start_long_run(results_dir, torch_extensions_dir, "00000c")
    descendants = psutil.Process(launcher.pid).children(recursive=True)
    launcher.send_signal(signal.SIGKILL)
    launcher.wait(timeout=10)
    # parent-death signals: torchrun and psrecord get SIGTERM, the ranks die with torchrun
    assert _wait_until_gone(descendants, 30) == []
    assert (run_dir / "train.log").stat().st_size > 0


def test_test_settings_are_a_valid_workflow_overlay() -> None:
    """The settings these runs use are what a person could put in a --configfile overlay."""
    from snakemake.utils import validate

    config = deep_merge(shipped_config(), TEST_SETTINGS)
    validate(config, str(REPO / "schemas" / "config.schema.yaml"))
    assert yaml.safe_dump(TEST_SETTINGS)


@pytest.mark.slow
def test_a_rank_sigkilled_from_outside_is_a_crash_not_an_oom(results_dir: Path, torch_extensions_dir: Path) -> None:
    launcher, run_dir = _start_long_run(results_dir, torch_extensions_dir, "00000d")
    commands = {process: " ".join(process.cmdline())
                for process in psutil.Process(launcher.pid).children(recursive=True)}
    ranks = [process for process, command in commands.items()
             if "zerosweep train" in command and "torch.distributed.run" not in command]
    assert ranks, "no rank process found"
    ranks[0].send_signal(signal.SIGKILL)
    assert launcher.wait(timeout=120) != 0
    status = read(run_dir / "status.json")
    assert (status["status"], status["outcome"]) == ("failed", "crash"), status
    assert status["oom_evidence"] == []
    assert not (run_dir / "metrics.json").exists()


def test_only_inputs_from_the_hub_keep_the_hub_switched_on() -> None:
    def spec(name: str, weights: str, tokenizer: str, source: str, path: str | None = None) -> dict[str, Any]:
        return {"model": {"name": name, "weights": weights, "tokenizer": tokenizer},
                "data": {"source": source, "path": path}}

    assert not needs_hub(spec("bigscience/bloom-560m", "random", "local", "synthetic"))
    assert needs_hub(spec("bigscience/bloom-560m", "pretrained", "local", "synthetic"))
    assert needs_hub(spec("bigscience/bloom-560m", "random", "hub", "synthetic"))
    assert not needs_hub(spec("/models/bloom-tiny", "pretrained", "hub", "file", "/data/squad.json"))
    assert not needs_hub(spec("./bloom-tiny", "pretrained", "hub", "squad", "/data/squad-copy"))
    assert needs_hub(spec("./bloom-tiny", "pretrained", "hub", "squad"))  # load_dataset("squad") from the Hub
