"""`zerosweep launch-node`: one node of a run. Starts the monitors, then torchrun, tees torchrun's output into the
run's log, and stops everything on every way out (success, failure, SIGTERM/SIGINT/SIGHUP; children die with a
SIGKILLed launcher). Leaves records/node<R>.json."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..jsonio import read_json, write_json
from ..plan.models import is_local_path
from .environment import NeighbourRuns, gpu_inventory, node_environment
from .extension_locks import LOCK_SCAN_S, clear_stale_extension_locks
from .gpus import TooFewGpus, node_gpus
from .monitors import NodeMonitors
from .ops import cuda_arch_list, op_cache_dir
from .outcome import cgroup_oom_kills
from .processes import (
    DescendantTracker,
    Shutdown,
    become_subreaper,
    exit_code_of,
    parent_death_signal,
    python_path,
    signal_group,
    tee_lines,
    tools_first_path,
)

# How often a node looks for other zerosweep runs on its host while it trains (a psutil pass over the
# process table: milliseconds).
NEIGHBOUR_SCAN_S = 10.0


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def node_log_name(node_rank: int, tag: str) -> str:
    """Node 0 logs to train.log (the file people open); node R>0 to train_<tag>.log."""
    return "train.log" if node_rank == 0 else f"train_{tag}.log"


def needs_hub(spec: Mapping[str, Any]) -> bool:
    """Whether any input comes from the Hugging Face Hub; if none does, the ranks run with the Hub switched off
    (no time lost to an unreachable Hub). Local model directories and a local SQuAD copy need no Hub."""
    model, data = spec["model"], spec["data"]
    model_from_hub = (model["weights"] == "pretrained" or model["tokenizer"] == "hub") and not is_local_path(model["name"])
    return model_from_hub or (data["source"] == "squad" and not data.get("path"))


# --- one node ---------------------------------------------------------------------------------------


@dataclass
class NodeOptions:
    run_dir: Path
    nnodes: int
    gpus_per_node: int
    node_rank: int
    endpoint: str
    rdzv_id: str
    tag: str
    torch_extensions_dir: Path  # runtime.torch_extensions_dir; run_node narrows it to this host's op_cache_dir
    cache_dir: Path
    memory_headroom_mb: int | None = None
    cuda_visible_devices: str | None = None
    cpus_per_rank: int | None = None
    echo_prefix: bytes = b""


def torchrun_command(options: NodeOptions) -> list[str]:
    command = [
        sys.executable, "-m", "torch.distributed.run",
        f"--nnodes={options.nnodes}",
        f"--nproc_per_node={options.gpus_per_node}",
        f"--node_rank={options.node_rank}",
        "--rdzv_backend=c10d",
        f"--rdzv_endpoint={options.endpoint}",
        f"--rdzv_id={options.rdzv_id}",
        # Node 0 runs where launch picked the endpoint (the batch host is the allocation's first node), so it
        # hosts the store. torch's own guess compares the endpoint with what the hostname resolves to, which
        # misses when the hostname maps to 127.0.1.1 (Debian) or when emulated nodes share one address.
        f"--rdzv_conf=is_host={1 if options.node_rank == 0 else 0}",
        "--max_restarts=0",
        "-m", "zerosweep", "train",
        "--run-dir", str(options.run_dir),
        "--cache-dir", str(options.cache_dir),
    ]
    if options.memory_headroom_mb is not None:
        command += ["--memory-headroom-mb", str(options.memory_headroom_mb)]
    return command


def threads_per_rank(options: NodeOptions) -> int:
    """The node's CPUs (the allocation's CPUs per task, else this process's affinity) shared by its ranks."""
    cpus = options.cpus_per_rank * options.gpus_per_node if options.cpus_per_rank else len(os.sched_getaffinity(0))
    return max(1, cpus // max(1, options.gpus_per_node))


def torchrun_environment(spec: Mapping[str, Any], options: NodeOptions) -> tuple[dict[str, str], dict[str, str]]:
    """The full environment for torchrun, and the part of it this project set (recorded in env.json)."""
    chosen: dict[str, str] = {
        "PYTHONPATH": python_path(os.environ),
        "TORCH_EXTENSIONS_DIR": str(options.torch_extensions_dir),
        # NVLink SHARP / multicast objects fail on shared or partitioned nodes; nothing here needs them.
        "NCCL_NVLS_ENABLE": "0",
        "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
        "NVSHMEM_DISABLE_NVLS": "1",
        "PYTHONUNBUFFERED": "1",  # the log shows progress as it happens, and keeps it after a kill
        "TOKENIZERS_PARALLELISM": "false",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",  # CUDA's device indices = nvidia-smi's = NVML's
        "PATH": tools_first_path(os.environ),
        "ZEROSWEEP_NODE_RANK": str(options.node_rank),
        "ZEROSWEEP_NODE_TAG": options.tag,
        # Chosen, not inherited: the host's value (or torchrun's default of 1) would decide CPU-offload speed.
        "OMP_NUM_THREADS": str(threads_per_rank(options)),
    }
    # DeepSpeed picks its accelerator by itself (CUDA whenever torch sees a GPU): say which one to use.
    chosen["DS_ACCELERATOR"] = spec["runtime"]["device"]
    if spec["runtime"]["device"] == "cuda":
        visible = options.cuda_visible_devices or os.environ.get("CUDA_VISIBLE_DEVICES")
        if options.cuda_visible_devices:
            chosen["CUDA_VISIBLE_DEVICES"] = options.cuda_visible_devices
        arch = cuda_arch_list(visible, os.environ.get("TORCH_CUDA_ARCH_LIST"))
        if arch:
            chosen["TORCH_CUDA_ARCH_LIST"] = arch
    if not needs_hub(spec):
        chosen.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})  # no time lost to unreachable hubs
    environ = {**os.environ, **chosen}
    recorded = dict(chosen)
    for inherited in ("CUDA_VISIBLE_DEVICES", "NCCL_DEBUG", "NCCL_SOCKET_IFNAME"):
        if inherited in environ:
            recorded.setdefault(inherited, environ[inherited])
    return environ, recorded


def _assigned_gpus(spec: Mapping[str, Any], options: NodeOptions) -> tuple[list[dict[str, Any]], str | None]:
    """This node's ranks' GPUs (index, UUID, name), or why they are unknown (no NVML: nothing to monitor)."""
    if spec["runtime"]["device"] != "cuda":
        return [], None
    inventory = gpu_inventory()
    if not inventory.get("gpus"):
        return [], f"no GPU inventory: {inventory.get('reason')}"
    visible = options.cuda_visible_devices or os.environ.get("CUDA_VISIBLE_DEVICES")
    return node_gpus(visible, options.gpus_per_node, inventory["gpus"]), None


def run_node(options: NodeOptions, shutdown: Shutdown) -> int:
    """Monitors + torchrun on this node; returns the node's exit code and leaves records/node<R>.json."""
    run_dir = options.run_dir
    spec = read_json(run_dir / "run_spec.json", what="launch writes it")
    # this host's builds of the ops (CPU ISA, GPU architecture): the same directory build_op compiled into
    options = replace(options, torch_extensions_dir=op_cache_dir(
        options.torch_extensions_dir, spec["runtime"]["device"],
        options.cuda_visible_devices or os.environ.get("CUDA_VISIBLE_DEVICES"), os.environ.get("TORCH_CUDA_ARCH_LIST")))
    options.torch_extensions_dir.mkdir(parents=True, exist_ok=True)
    become_subreaper()
    started = time.monotonic()
    record: dict[str, Any] = {
        "node_rank": options.node_rank, "tag": options.tag, "host": socket.gethostname(),
        "log": node_log_name(options.node_rank, options.tag), "nnodes": options.nnodes,
        "gpus_per_node": options.gpus_per_node, "rdzv_endpoint": options.endpoint, "started_at": now_iso(),
        "torch_extensions_dir": str(options.torch_extensions_dir),
    }
    environ, recorded_env = torchrun_environment(spec, options)
    command = torchrun_command(options)
    record.update({"torchrun_command": command, "environment_variables": recorded_env})
    try:
        gpus, gpu_problem = _assigned_gpus(spec, options)
    except (TooFewGpus, ValueError) as error:  # ranks would die on an invalid device ordinal: say why now
        record.update({"status": "failed", "exit_code": 1, "error": f"node {options.node_rank}: {error}",
                       "finished_at": now_iso(), "environment": node_environment()})
        print(f"[zerosweep] {record['error']}", file=sys.stderr, flush=True)
        write_json(run_dir / "records" / f"node{options.node_rank}.json", record)
        return 1
    record.update({"gpus": gpus, "gpu_problem": gpu_problem})
    monitors = NodeMonitors(run_dir, options.tag, spec["monitor"], spec["runtime"]["device"],
                            [gpu["uuid"] for gpu in gpus])
    record["oom_kills_before"] = cgroup_oom_kills()
    tracker = DescendantTracker()
    neighbours = NeighbourRuns(run_dir)
    neighbours.scan()
    next_neighbour_scan = time.monotonic() + NEIGHBOUR_SCAN_S
    removed_locks = clear_stale_extension_locks(options.torch_extensions_dir)
    next_lock_scan = time.monotonic() + LOCK_SCAN_S
    torchrun: subprocess.Popen[bytes] | None = None
    tee: threading.Thread | None = None
    returncode: int | None = None
    with open(run_dir / record["log"], "wb") as log:
        try:
            if not shutdown.requested:
                monitors.start_gpu()
            if not shutdown.requested:
                # No thread runs yet in this process (the tee starts below): preexec_fn is safe.
                torchrun = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=environ, start_new_session=True,
                                            preexec_fn=parent_death_signal(signal.SIGTERM))  # noqa: PLW1509
                started_torchrun = torchrun
                shutdown.targets.append(lambda: signal_group(started_torchrun.pid, signal.SIGTERM))
                if shutdown.requested:  # a signal that came while we were starting it
                    signal_group(torchrun.pid, signal.SIGTERM)
                monitors.start_cpu(torchrun.pid)
                monitors.start_rapl()  # a thread: after the last child process
                tracker.exclude = monitors.pids()
                assert torchrun.stdout is not None
                tee = threading.Thread(target=tee_lines, args=(torchrun.stdout, log, options.echo_prefix), daemon=True)
                tee.start()
                escalated = False
                while returncode is None:
                    try:
                        returncode = torchrun.wait(timeout=0.5)
                    except subprocess.TimeoutExpired:
                        tracker.scan(torchrun.pid)
                        if time.monotonic() > next_lock_scan:  # a rank may be waiting on a dead compile's lock
                            next_lock_scan = time.monotonic() + LOCK_SCAN_S
                            removed_locks += clear_stale_extension_locks(options.torch_extensions_dir)
                        if time.monotonic() > next_neighbour_scan:
                            next_neighbour_scan = time.monotonic() + NEIGHBOUR_SCAN_S
                            neighbours.scan()
                        if shutdown.overdue() and not escalated:
                            escalated = True
                            tracker.scan(torchrun.pid, force=True)
                            signal_group(torchrun.pid, signal.SIGKILL)
                            tracker.kill_survivors()
        finally:
            if torchrun is not None:
                if torchrun.poll() is None:  # an exception in this loop: do not leave torchrun behind
                    signal_group(torchrun.pid, signal.SIGKILL)
                    torchrun.wait()
                tracker.scan(torchrun.pid, force=True)
            leftovers = tracker.kill_survivors()
            if tee is not None:
                tee.join(timeout=10)
            record["monitors"] = monitors.stop()
            record["oom_kills_after"] = cgroup_oom_kills()
            record["killed_leftover_pids"] = leftovers
            record["removed_stale_locks"] = removed_locks
            neighbours.scan()
            record["other_runs"] = neighbours.record()
    if shutdown.requested:
        code = 128 + int(shutdown.signum or signal.SIGTERM)
        status = "interrupted"
    else:
        code = exit_code_of(returncode) if returncode is not None else 1
        status = "ok" if code == 0 else "failed"
    record.update({
        "status": status,
        "exit_code": code,
        "torchrun_returncode": returncode,
        "interrupted_by": signal.Signals(shutdown.signum).name if shutdown.signum else None,
        "finished_at": now_iso(),
        "duration_s": time.monotonic() - started,
        "environment": node_environment(),
    })
    write_json(run_dir / "records" / f"node{options.node_rank}.json", record)
    return code


def launch_node(args: argparse.Namespace) -> int:
    shutdown = Shutdown()
    shutdown.install()
    node_rank = args.node_rank if args.node_rank is not None else int(os.environ.get("SLURM_NODEID", "0"))
    options = NodeOptions(
        run_dir=Path(args.run_dir).resolve(), nnodes=args.nnodes, gpus_per_node=args.gpus_per_node,
        node_rank=node_rank, endpoint=args.rdzv_endpoint, rdzv_id=args.rdzv_id,
        tag=args.node_tag or socket.gethostname(), torch_extensions_dir=Path(args.torch_extensions_dir).resolve(),
        cache_dir=Path(args.cache_dir).resolve(), memory_headroom_mb=args.rank_memory_headroom_mb,
        cuda_visible_devices=args.cuda_visible_devices, cpus_per_rank=args.cpus_per_rank,
        echo_prefix=args.echo_prefix.encode(),
    )
    return run_node(options, shutdown)


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--run-dir", type=Path, required=True, help="the run dir that launch prepared")
    parser.add_argument("--nnodes", type=int, required=True)
    parser.add_argument("--gpus-per-node", type=int, required=True, help="ranks on this node")
    parser.add_argument("--node-rank", type=int, default=None, help="default: SLURM_NODEID, else 0")
    parser.add_argument("--rdzv-endpoint", required=True, help="host:port of the c10d rendezvous")
    parser.add_argument("--rdzv-id", required=True)
    parser.add_argument("--node-tag", default=None, help="names this node's log and monitor files "
                                                         "(default: hostname)")
    parser.add_argument("--torch-extensions-dir", required=True)
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--cuda-visible-devices", default=None, help="GPUs of this (emulated) node")
    parser.add_argument("--cpus-per-rank", type=int, default=None,
                        help="OMP_NUM_THREADS of each rank (default: this process's CPUs / ranks)")
    parser.add_argument("--rank-memory-headroom-mb", type=int, default=None)
    parser.add_argument("--echo-prefix", default="", help="prefix for the lines echoed to stdout")


def run(args: argparse.Namespace) -> int:
    return launch_node(args)
