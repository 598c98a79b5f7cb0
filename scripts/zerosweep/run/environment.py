"""What a run ran on: per-node facts collected by each node launcher, merged into env.json by the job launcher,
and which other zerosweep runs shared a host with it (NeighbourRuns).

Nothing here imports torch: the launchers stay light, and the torch build (CUDA, cuDNN, NCCL versions) is
reported by rank 0, which has torch loaded anyway.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from ..units import MIB
from .gpus import rank_gpu_map

PACKAGES: tuple[str, ...] = ("torch", "transformers", "deepspeed", "accelerate", "datasets", "tokenizers",
                             "psrecord", "nvidia-ml-py", "snakemake")
SLURM_VARIABLES: dict[str, str] = {
    "job_id": "SLURM_JOB_ID",
    "job_name": "SLURM_JOB_NAME",
    "job_nodelist": "SLURM_JOB_NODELIST",
    "step_nodelist": "SLURM_STEP_NODELIST",
    "step_id": "SLURM_STEP_ID",
    "node_id": "SLURM_NODEID",
    "partition": "SLURM_JOB_PARTITION",
    "account": "SLURM_JOB_ACCOUNT",
    "cluster": "SLURM_CLUSTER_NAME",
    "cpus_per_task": "SLURM_CPUS_PER_TASK",
    "gpus_on_node": "SLURM_GPUS_ON_NODE",
}


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    from .. import __version__

    versions["zerosweep"] = __version__
    return versions


def slurm_info(environ: Mapping[str, str] | None = None) -> dict[str, str] | None:
    environ = os.environ if environ is None else environ
    if "SLURM_JOB_ID" not in environ:
        return None
    return {key: environ[var] for key, var in SLURM_VARIABLES.items() if var in environ}


def _decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def gpu_inventory() -> dict[str, Any]:
    """GPUs as NVML numbers them (the same indices as nvidia-smi and the monitor logs)."""
    try:
        import pynvml
    except ImportError as error:
        return {"available": False, "reason": f"nvidia-ml-py missing: {error}", "gpus": []}
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as error:  # no driver library, no GPU, ...
        return {"available": False, "reason": f"NVML unavailable: {error}", "gpus": []}
    try:
        cuda_driver = pynvml.nvmlSystemGetCudaDriverVersion()
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            gpus.append({
                "index": index,
                "name": _decode(pynvml.nvmlDeviceGetName(handle)),
                "uuid": _decode(pynvml.nvmlDeviceGetUUID(handle)),
                "pci_bus_id": _decode(pynvml.nvmlDeviceGetPciInfo(handle).busId),
                "memory_total_mib": pynvml.nvmlDeviceGetMemoryInfo(handle).total / MIB,
                "compute_capability": f"{major}.{minor}",
            })
        return {
            "available": True,
            "driver_version": _decode(pynvml.nvmlSystemGetDriverVersion()),
            "cuda_driver_version": f"{cuda_driver // 1000}.{cuda_driver % 1000 // 10}",
            "gpus": gpus,
        }
    finally:
        pynvml.nvmlShutdown()


def _meminfo_total_mib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def node_environment() -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "memory_total_mib": _meminfo_total_mib(),
        "gpu": gpu_inventory(),
        "slurm": slurm_info(),
        "versions": package_versions(),
    }


# --- other zerosweep runs on this host --------------------------------------------------------------

# The subcommands whose processes belong to one run, each with --run-dir (torchrun's command line names
# `-m zerosweep train` too).
RUN_COMMANDS = ("launch", "launch-node", "train")


def run_of_command_line(cmdline: Sequence[str], cwd: str | None) -> tuple[str, Path] | None:
    """(subcommand, absolute run dir) of a zerosweep run's process (`python -m zerosweep launch --run-dir X`,
    the `zerosweep` script, torchrun's `-m zerosweep train`); None for any other process. A relative run dir
    (the rule passes results/runs/<run>) is resolved against the process's working directory."""
    for index, arg in enumerate(cmdline[:-1]):
        if Path(arg).name != "zerosweep" or cmdline[index + 1] not in RUN_COMMANDS:
            continue
        rest = list(cmdline[index + 2:])
        for position, option in enumerate(rest):
            value = rest[position + 1] if option == "--run-dir" and position + 1 < len(rest) else (
                option.split("=", 1)[1] if option.startswith("--run-dir=") else None)
            if value:
                path = Path(value)
                if not path.is_absolute():
                    if cwd is None:
                        return None
                    path = Path(cwd) / path
                return cmdline[index + 1], Path(os.path.normpath(path))
    return None


class NeighbourRuns:
    """Other zerosweep runs seen on this host while a run's node was up: scanned at start, every few seconds
    while it trains, and at the end. Nodes shared with another timed run (no --exclusive, a local executor
    with several jobs) measure each other; env.json says so."""

    def __init__(self, own_run_dir: Path) -> None:
        self.own_run_dir = Path(os.path.normpath(own_run_dir.resolve()))
        self.host = socket.gethostname()
        self.scans = 0
        self.runs: dict[str, dict[str, Any]] = {}

    def scan(self) -> None:
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        self.scans += 1
        for process in psutil.process_iter(["pid", "cmdline"]):
            try:
                cmdline = process.info["cmdline"] or []
                if "zerosweep" not in " ".join(cmdline):
                    continue
                try:
                    cwd: str | None = process.cwd()
                except psutil.AccessDenied:
                    cwd = None
                found = run_of_command_line(cmdline, cwd)
                if found is None or found[1] == self.own_run_dir:
                    continue
                command, run_dir = found
                entry = self.runs.setdefault(str(run_dir), {
                    "run_id": run_dir.name, "run_dir": str(run_dir), "host": self.host, "pids": [], "commands": [],
                    "slurm_job_id": None, "first_seen": now, "last_seen": now})
                entry["last_seen"] = now
                if process.pid not in entry["pids"]:
                    entry["pids"] = sorted([*entry["pids"], process.pid])
                if command not in entry["commands"]:
                    entry["commands"] = sorted([*entry["commands"], command])
                if entry["slurm_job_id"] is None:
                    try:  # another user's environment is not readable: the run dir still says which run
                        entry["slurm_job_id"] = process.environ().get("SLURM_JOB_ID")
                    except psutil.AccessDenied:
                        pass
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue

    def record(self) -> dict[str, Any]:
        return {"host": self.host, "scans": self.scans, "runs": sorted(self.runs.values(), key=lambda run: run["run_dir"])}


def merge_environment(*, run_id: str, argv: Sequence[str], command: str, launch_mode: str, endpoint: str,
                      nodes: Sequence[Mapping[str, Any]], rank_records: Sequence[Mapping[str, Any]],
                      torch_build: Mapping[str, Any] | None) -> dict[str, Any]:
    """env.json: the job-level view (first node's facts at the top level) plus every node's record."""
    node_envs = [node.get("environment") or {} for node in nodes]
    first = node_envs[0] if node_envs else node_environment()
    gpu = first.get("gpu") or {}
    rank_gpus = [record.get("gpu_name") for record in rank_records if record.get("gpu_name")]
    nvml_gpus = [entry["name"] for env in node_envs for entry in (env.get("gpu") or {}).get("gpus", [])]
    slurm = next((env["slurm"] for env in node_envs if env.get("slurm")), None) or slurm_info()
    return {
        "run_id": run_id,
        "command": command,
        "argv": list(argv),
        "launch_mode": launch_mode,
        "rendezvous_endpoint": endpoint,
        "hosts": [env.get("host") for env in node_envs],
        "node_tags": [node.get("tag") for node in nodes],
        "gpu_model": rank_gpus[0] if rank_gpus else (nvml_gpus[0] if nvml_gpus else None),
        "gpus_used": len(rank_gpus),
        # rank -> physical GPU (UUID, the host's NVML index, host): the monitors' logs are read through it
        "rank_gpus": rank_gpu_map(rank_records, [dict(node.get("environment") or {}, tag=node.get("tag"))
                                                 for node in nodes]),
        "driver_version": gpu.get("driver_version"),
        "cuda_driver_version": gpu.get("cuda_driver_version"),
        "cuda_version": (torch_build or {}).get("cuda"),
        "cudnn_version": (torch_build or {}).get("cudnn"),
        "nccl_version": (torch_build or {}).get("nccl"),
        "python": first.get("python"),
        "platform": first.get("platform"),
        "versions": first.get("versions") or package_versions(),
        "slurm": slurm,
        # other zerosweep runs on a host of this run while it ran (empty: none seen); per node: scans and host
        "other_zerosweep_runs": [run for node in nodes for run in (node.get("other_runs") or {}).get("runs", [])],
        "environment_variables": dict(nodes[0].get("environment_variables") or {}) if nodes else {},
        "nodes": [dict(node.get("environment") or {}, node_rank=node.get("node_rank"), tag=node.get("tag"),
                       other_runs_scans=(node.get("other_runs") or {}).get("scans"))
                  for node in nodes],
    }
