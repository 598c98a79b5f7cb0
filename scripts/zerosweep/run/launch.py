"""`zerosweep launch` (one run, job level) and `zerosweep launch-node` (one node of it).

launch: writes run_spec.json and ds_config.json, picks the rendezvous endpoint, starts one node launcher per
node, waits, and merges the per-node and per-rank records into metrics.json, env.json and status.json.
Node launchers run
  - in this process when the run has one node;
  - under `srun --nodes=N --ntasks-per-node=1` inside a SLURM allocation (SLURM_JOB_ID set, srun on PATH);
  - as N local processes over 127.0.0.1 otherwise (tests; N nodes emulated on one host), or when
    --node-mode local / ZEROSWEEP_NODE_MODE=local asks for it.
launch-node (run/node.py) runs the monitors and torchrun of one node.

Outcomes: ok; oom (metrics.json with status "oom", exit 0, so the table shows the row); anything else
copies the run dir's records to <results>/failed/<run>/<timestamp>/ and exits non-zero.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil

from ..jsonio import write_json
from .environment import gpu_inventory
from .gpus import GpuLease, TooFewGpus, resolve, visible_entries
from .merge import finalize
from .node import NodeOptions, now_iso, run_node
from .outcome import Deadline
from .processes import Shutdown, exit_code_of, parent_death_signal, python_path, signal_process, start_child, tee_lines

LOCAL_HOST = "127.0.0.1"

# Files of an earlier attempt that must not leak into this one's records.
STALE_ENTRIES = ("records", "monitor", "model", "metrics.json", "env.json", "status.json", "ds_config.json",
                 "srun.log", "steps.csv")


def free_port(host: str = "") -> int:
    """A port nothing listens on now; concurrent runs on one node each get their own."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def rendezvous_host() -> str:
    """An address of this (the head) node that the other nodes can reach."""
    override = os.environ.get("ZEROSWEEP_RDZV_HOST")
    if override:
        return override
    hostname = socket.gethostname()
    try:
        address = socket.gethostbyname(hostname)
        if not address.startswith("127."):
            return address
    except OSError:
        pass
    for addresses in psutil.net_if_addrs().values():  # Debian maps the hostname to 127.0.1.1
        for entry in addresses:
            if entry.family == socket.AF_INET and not entry.address.startswith("127."):
                return str(entry.address)
    return hostname


def spec_problem(spec: Mapping[str, Any]) -> str | None:
    """Settings that cannot run, said before anything starts (the workflow refused them already; this catches a
    run spec launched by hand)."""
    from ..plan.checks import setting_errors

    return "; ".join(setting_errors(spec["data"], spec["training"], spec["runtime"]["device"])) or None


def prepare_run_dir(run_dir: Path, spec: Mapping[str, Any]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in STALE_ENTRIES:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    for log in run_dir.glob("train*.log"):
        log.unlink()
    (run_dir / "records").mkdir()
    (run_dir / "monitor").mkdir()
    write_json(run_dir / "run_spec.json", spec)
    if spec["point"]["deepspeed"]:
        from ..plan.dsconfig import render
        from ..plan.matrix import MatrixPoint

        write_json(run_dir / "ds_config.json", render(MatrixPoint.from_dict(spec["point"]), training=spec["training"]),
                   sort_keys=False)


def choose_mode(nnodes: int, requested: str) -> str:
    if nnodes == 1:
        return "single-node"
    if requested == "local":
        return "local-nodes"
    in_allocation = "SLURM_JOB_ID" in os.environ and shutil.which("srun") is not None
    if requested == "srun" and not in_allocation:
        raise SystemExit("launch: --node-mode srun needs a SLURM allocation (SLURM_JOB_ID) and srun on PATH")
    return "srun" if in_allocation else "local-nodes"


def _host_gpus(spec: Mapping[str, Any], needed: int, lease: GpuLease, run_id: str) -> list[str] | None:
    """NVML indices of the GPUs this run may use on this host. Inside a SLURM allocation: the allocation's
    (CUDA_VISIBLE_DEVICES as SLURM set it). Elsewhere: `needed` GPUs leased from the visible ones, waiting while
    other runs hold them; a host with too few fails the run at once (TooFewGpus)."""
    if spec["runtime"]["device"] != "cuda":
        return None
    visible = visible_entries(os.environ.get("CUDA_VISIBLE_DEVICES"))
    if "SLURM_JOB_ID" in os.environ:
        return visible
    inventory = gpu_inventory().get("gpus", [])
    candidates = [str(gpu["index"]) for gpu in (resolve(visible, inventory) if visible is not None else inventory)]
    return lease.acquire(needed, candidates, run_id=run_id)


def _slices(host_gpus: list[str] | None, nnodes: int, gpus_per_node: int) -> list[str | None]:
    """Emulated nodes on one host each get their own GPUs, in order."""
    if host_gpus is None:
        return [None] * nnodes
    if len(host_gpus) < nnodes * gpus_per_node:
        raise TooFewGpus(f"needs {nnodes * gpus_per_node} GPUs ({nnodes} node(s) x {gpus_per_node}); "
                         f"visible: {','.join(host_gpus) or 'none'}")
    return [",".join(host_gpus[r * gpus_per_node:(r + 1) * gpus_per_node]) for r in range(nnodes)]


def _node_command(args: argparse.Namespace, run_dir: Path, nnodes: int, gpus: int, endpoint: str, rdzv_id: str,
                  extensions: Path, cache: Path, cpus_per_rank: int) -> list[str]:
    command = [sys.executable, "-m", "zerosweep", "launch-node", "--run-dir", str(run_dir), "--nnodes", str(nnodes),
               "--gpus-per-node", str(gpus), "--rdzv-endpoint", endpoint, "--rdzv-id", rdzv_id,
               "--torch-extensions-dir", str(extensions), "--cache-dir", str(cache),
               "--cpus-per-rank", str(cpus_per_rank)]
    if args.rank_memory_headroom_mb is not None:
        command += ["--rank-memory-headroom-mb", str(args.rank_memory_headroom_mb)]
    return command


def _wait_local_nodes(processes: list[subprocess.Popen[bytes]], shutdown: Shutdown) -> list[int]:
    """Like srun --kill-on-bad-exit: one node failing stops the others (they would wait in rendezvous)."""
    stopping = False
    while any(process.poll() is None for process in processes):
        failed = any(process.returncode not in (None, 0) for process in processes)
        if failed and not stopping:
            stopping = True
            for process in processes:
                signal_process(process, signal.SIGTERM)
        if shutdown.overdue():
            for process in processes:
                signal_process(process, signal.SIGKILL)
        time.sleep(0.2)
    return [exit_code_of(int(process.returncode)) for process in processes]


def _run_srun(command: list[str], run_dir: Path, shutdown: Shutdown) -> int:
    # No thread runs yet in this process (the tee starts below): preexec_fn is safe.
    srun = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True,
                            preexec_fn=parent_death_signal(signal.SIGTERM))  # noqa: PLW1509
    shutdown.targets.append(lambda: signal_process(srun, signal.SIGTERM))  # srun passes it to every task
    assert srun.stdout is not None
    with open(run_dir / "srun.log", "wb") as log:
        tee = threading.Thread(target=tee_lines, args=(srun.stdout, log, b""), daemon=True)
        tee.start()
        killed = False
        while srun.poll() is None:
            if shutdown.overdue() and not killed:
                killed = True
                signal_process(srun, signal.SIGKILL)
            time.sleep(0.2)
        tee.join(timeout=10)
    return exit_code_of(int(srun.returncode))


def launch(args: argparse.Namespace) -> int:
    started, started_at = time.monotonic(), now_iso()
    spec: dict[str, Any] = json.loads(args.spec_json)
    shown_run_dir = Path(args.run_dir)
    run_dir = shown_run_dir.resolve()
    failed_root = (args.failed_root or run_dir.parents[1] / "failed").resolve()
    shutdown = Shutdown()
    shutdown.install()
    prepare_run_dir(run_dir, spec)
    argv = list(sys.argv[1:]) if args.argv is None else args.argv
    point = spec["point"]
    nnodes, gpus = int(point["nodes"]), int(point["gpus_per_node"])
    mode, endpoint, node_codes = "none", "", []
    problem = spec_problem(spec)
    extensions = Path(spec["runtime"]["torch_extensions_dir"]).resolve()
    cache = (args.cache_dir or run_dir.parents[1] / "cache").resolve()
    extensions.mkdir(parents=True, exist_ok=True)
    lease = GpuLease(cache / "gpu-locks")
    deadline = Deadline.of_job(os.environ.get("SLURM_JOB_ID"))
    if problem is None and not shutdown.requested:
        try:
            mode = choose_mode(nnodes, args.node_mode)
            head = rendezvous_host() if mode == "srun" else LOCAL_HOST
            endpoint = f"{head}:{free_port('' if mode == 'srun' else LOCAL_HOST)}"
            rdzv_id = spec["run_id"]
            host_gpus = _host_gpus(spec, (nnodes if mode == "local-nodes" else 1) * gpus, lease, rdzv_id)
            # CPUs per node task (the rule's cpus_per_task: cpus_per_gpu x GPUs per node) split over its ranks;
            # emulated nodes share this host's CPUs.
            node_cpus = args.cpus_per_task or len(os.sched_getaffinity(0)) // (nnodes if mode == "local-nodes" else 1)
            cpus_per_rank = max(1, node_cpus // gpus)
            print(f"[zerosweep] run {spec['run_id']}: {mode}, {nnodes} node(s) x {gpus} rank(s), "
                  f"rendezvous {endpoint}", flush=True)
            if mode == "single-node":
                options = NodeOptions(run_dir=run_dir, nnodes=1, gpus_per_node=gpus, node_rank=0, endpoint=endpoint,
                                      rdzv_id=rdzv_id, tag=socket.gethostname(), torch_extensions_dir=extensions,
                                      cache_dir=cache, memory_headroom_mb=args.rank_memory_headroom_mb,
                                      cuda_visible_devices=",".join(host_gpus) if host_gpus is not None else None,
                                      cpus_per_rank=cpus_per_rank)
                node_codes = [run_node(options, shutdown)]
            elif mode == "local-nodes":
                if host_gpus is None and spec["runtime"]["device"] == "cuda":
                    host_gpus = [str(gpu["index"]) for gpu in gpu_inventory().get("gpus", [])]
                slices = _slices(host_gpus, nnodes, gpus)
                base = _node_command(args, run_dir, nnodes, gpus, endpoint, rdzv_id, extensions, cache, cpus_per_rank)
                processes = []
                env = {**os.environ, "PYTHONPATH": python_path(os.environ)}
                for rank in range(nnodes):
                    command = base + ["--node-rank", str(rank), "--node-tag", f"{socket.gethostname()}-node{rank}",
                                      "--echo-prefix", f"[node {rank}] "]
                    if slices[rank]:
                        command += ["--cuda-visible-devices", str(slices[rank])]
                    process = start_child(command, stdout=None, env=env)
                    processes.append(process)
                    shutdown.targets.append(functools.partial(signal_process, process, signal.SIGTERM))
                node_codes = _wait_local_nodes(processes, shutdown)
            else:
                # The allocation's CPUs per task (the rule passes them): on clusters that bind no CPUs the
                # affinity mask is the whole host, and asking srun for more than was allocated fails the step.
                cpus = args.cpus_per_task or len(os.sched_getaffinity(0))
                # Counts are explicit: the SLURM executor strips SLURM_NNODES/NTASKS/JOB_NODELIST from our
                # environment. --overlap: the executor's own step already holds this node's CPUs and GPUs.
                command = ["srun", f"--nodes={nnodes}", f"--ntasks={nnodes}", "--ntasks-per-node=1",
                           f"--cpus-per-task={cpus}", "--kill-on-bad-exit=1", "--overlap",
                           *_node_command(args, run_dir, nnodes, gpus, endpoint, rdzv_id, extensions, cache,
                                          cpus_per_rank)]
                os.environ["PYTHONPATH"] = python_path(os.environ)  # srun exports our environment
                node_codes = [_run_srun(command, run_dir, shutdown)]
        except TooFewGpus as error:  # can never run on this host: fail now, naming what it needs
            problem = f"run {spec['run_id']}: {error}"
        except Exception as error:  # noqa: BLE001  (any launcher bug or setup problem still leaves records)
            problem = f"launcher error: {type(error).__name__}: {error}"
            import traceback

            traceback.print_exc()
    lease.release()
    return finalize(spec=spec, run_dir=run_dir, shown_run_dir=shown_run_dir, failed_root=failed_root, mode=mode,
                    endpoint=endpoint, node_codes=node_codes, shutdown=shutdown, started=started,
                    started_at=started_at, argv=argv, problem=problem, deadline=deadline)


# --- CLI ------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    if command == "launch":
        parser.add_argument("--spec-json", required=True, help="the run's RunSpec.to_json()")
        parser.add_argument("--run-dir", type=Path, required=True, help="results/runs/<run>")
        parser.add_argument("--node-mode", choices=("auto", "local", "srun"),
                            default=os.environ.get("ZEROSWEEP_NODE_MODE", "auto"),
                            help="how runs with nodes>1 start their nodes (auto: srun inside a SLURM "
                                 "allocation, else local processes); env ZEROSWEEP_NODE_MODE")
        parser.add_argument("--failed-root", type=Path, default=None,
                            help="where failed runs' records go (default: <run-dir>/../../failed)")
        parser.add_argument("--cache-dir", type=Path, default=None,
                            help="shared cache, e.g. the local tokenizer (default: <run-dir>/../../cache)")
        parser.add_argument("--rank-memory-headroom-mb", type=int, default=None,
                            help="testing: cap each rank's data memory at its post-import size + this many MiB")
        parser.add_argument("--cpus-per-task", type=int, default=None,
                            help="CPUs of each node's task in a SLURM allocation, for the multi-node srun "
                                 "(default: this process's CPU affinity)")
        parser.set_defaults(argv=None)


def run(args: argparse.Namespace) -> int:
    return launch(args)
