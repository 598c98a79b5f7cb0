"""`zerosweep launch` (one run, job level) and `zerosweep launch-node` (one node of it).

launch: writes run_spec.json and ds_config.json, picks the rendezvous endpoint, starts one node launcher per
node, waits, and merges the per-node and per-rank records into metrics.json, env.json and status.json.
Node launchers run
  - in this process when the run has one node;
  - under `srun --nodes=N --ntasks-per-node=1` inside a SLURM allocation (SLURM_JOB_ID set, srun on PATH);
  - as N local processes over 127.0.0.1 otherwise (tests; N nodes emulated on one host), or when
    --node-mode local / ZEROSWEEP_NODE_MODE=local asks for it.
launch-node: starts the monitors, then torchrun, tees torchrun's output into the run's log, and stops
everything on every way out (success, failure, SIGTERM/SIGINT/SIGHUP; children die with a SIGKILLed launcher).

Outcomes: ok; oom (metrics.json with status "oom", exit 0, so the table shows the row); anything else
copies the run dir's records to <results>/failed/<run>/<timestamp>/ and exits non-zero.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil

from ..jsonio import write_json
from .environment import gpu_inventory, merge_environment, node_environment
from .monitors import NodeMonitors, become_subreaper, parent_death_signal, python_path, start_child

LOCAL_HOST = "127.0.0.1"
TERMINATE_GRACE_S = 15.0  # torchrun's own worker shutdown, well inside SLURM's default KillWait of 30 s
DESCENDANT_SCAN_S = 2.0
# torch's JIT build lock (<TORCH_EXTENSIONS_DIR>/<op>/lock) stays behind when a compiling rank is killed, and
# every later build of that op then waits on it forever. One no process here holds open, older than any
# compile seen (CPUAdam: ~55 s on H100), is stale. A holder on another node is invisible, hence the age.
STALE_LOCK_S = 300.0
LOCK_SCAN_S = 30.0
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# Files of an earlier attempt that must not leak into this one's records.
STALE_ENTRIES = ("records", "monitor", "model", "metrics.json", "env.json", "status.json", "ds_config.json",
                 "srun.log")
# Evidence of running out of memory, in torchrun's logs or srun's stderr.
OOM_LOG_PATTERNS = (
    r"CUDA out of memory",
    r"OutOfMemoryError",
    r"\bMemoryError\b",
    r"can't allocate memory",
    r"Cannot allocate memory",
    r"not enough memory",
    r"oom[-_ ]kill",
)
SRUN_OOM_EXIT = 253  # srun(1): "The value 253 is reserved for out-of-memory errors"
# torchrun's failure summary: a rank killed by SIGKILL is, outside our own shutdown, the kernel OOM killer.
ROOT_CAUSE_SIGKILL = re.compile(r"Root Cause \(first observed failure\):.*?exitcode\s*:\s*-9\b", re.DOTALL)
# Every key of metrics.json, so that OOM rows have the same columns as successful ones.
MEASURED_FIELDS: tuple[str, ...] = (
    "weights", "loss_note", "train_samples", "eval_samples", "global_batch_size", "tokens_per_sample",
    "real_token_fraction", "tokenizer_vocab_size", "model_vocab_size", "n_params", "optimizer_steps",
    "epochs_completed", "steps_per_epoch", "train_loss", "train_runtime",
    "train_samples_per_second", "train_steps_per_second", "eval_loss", "eval_losses", "eval_runtime",
    "eval_samples_per_second", "train_losses", "steady_steps", "steady_seconds", "steady_samples_per_second",
    "steady_tokens_per_second", "flops_per_token", "tflops_per_gpu", "peak_tflops_per_gpu", "peak_tflops_source",
    "mfu", "gpu_name", "phase_seconds",
)


# --- signals --------------------------------------------------------------------------------------


class Shutdown:
    """The first SIGTERM/SIGINT/SIGHUP wins; it is passed on to whatever is running right now."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.requested_at: float | None = None
        self.targets: list[Callable[[], None]] = []

    def install(self) -> None:
        for sig in HANDLED_SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum = signum
            self.requested_at = time.monotonic()
            print(f"[zerosweep] {signal.Signals(signum).name} received: stopping the run", file=sys.stderr,
                  flush=True)
        for terminate in list(self.targets):
            terminate()

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def overdue(self) -> bool:
        return self.requested_at is not None and time.monotonic() - self.requested_at > TERMINATE_GRACE_S


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # children are session (and group) leaders: pgid == pid
    except (ProcessLookupError, PermissionError):
        pass


def _signal_process(process: subprocess.Popen[bytes], sig: int) -> None:
    if process.poll() is None:
        try:
            process.send_signal(sig)
        except ProcessLookupError:
            pass


def exit_code_of(returncode: int) -> int:
    """A child killed by signal N reads as 128+N, as a shell reports it."""
    return 128 - returncode if returncode < 0 else returncode


# --- small helpers ------------------------------------------------------------------------------------


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


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


def node_log_name(node_rank: int, tag: str) -> str:
    """Node 0 logs to train.log (the file people open); node R>0 to train_<tag>.log."""
    return "train.log" if node_rank == 0 else f"train_{tag}.log"


def _visible_gpu_capabilities(visible: str | None) -> list[str]:
    inventory = gpu_inventory()
    gpus = inventory.get("gpus", [])
    if visible:
        wanted = [item.strip() for item in visible.split(",") if item.strip()]
        chosen = [gpu for gpu in gpus if str(gpu["index"]) in wanted or gpu["uuid"] in wanted]
        gpus = chosen or gpus
    if gpus:
        return sorted({gpu["compute_capability"] for gpu in gpus})
    try:
        probe = subprocess.run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
                               check=False, capture_output=True, text=True, timeout=30)
        return sorted({line.strip() for line in probe.stdout.splitlines() if re.fullmatch(r"\d+\.\d+", line.strip())})
    except (OSError, subprocess.TimeoutExpired):
        return []


def cuda_arch_list(visible: str | None, inherited: str | None) -> str | None:
    """TORCH_CUDA_ARCH_LIST for DeepSpeed's op builder: from the GPUs themselves, since the value images set
    (e.g. '9.0a') crashes it (int('0a')); failing that, the inherited value without letter suffixes."""
    capabilities = _visible_gpu_capabilities(visible)
    if capabilities:
        return ";".join(capabilities)
    if inherited:
        return re.sub(r"(\d+\.\d+)[a-zA-Z]+", r"\1", inherited)
    return None


def needs_hub(spec: Mapping[str, Any]) -> bool:
    model, data = spec["model"], spec["data"]
    return model["weights"] == "pretrained" or model["tokenizer"] == "hub" or data["source"] == "squad"


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
    torch_extensions_dir: Path
    cache_dir: Path
    memory_headroom_mb: int | None = None
    cuda_visible_devices: str | None = None
    echo_prefix: bytes = b""
    extra_env: dict[str, str] = field(default_factory=dict)


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
        # This environment's tools first: DeepSpeed's JIT builds run `ninja`, and a different ninja (or
        # compiler) than the one that built the shared extensions rebuilds them.
        "PATH": os.pathsep.join(dict.fromkeys([str(Path(sys.executable).parent),
                                               *os.environ.get("PATH", "").split(os.pathsep)])),
        "ZEROSWEEP_NODE_RANK": str(options.node_rank),
        "ZEROSWEEP_NODE_TAG": options.tag,
        **options.extra_env,
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
    for inherited in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "NCCL_DEBUG", "NCCL_SOCKET_IFNAME"):
        if inherited in environ:
            recorded.setdefault(inherited, environ[inherited])
    return environ, recorded


def locks_held_here() -> set[str]:
    held: set[str] = set()
    for process in psutil.process_iter():
        try:
            held.update(entry.path for entry in process.open_files() if entry.path.endswith("/lock"))
        except psutil.Error:
            continue
    return held


def clear_stale_extension_locks(extensions_dir: Path, max_age_s: float = STALE_LOCK_S) -> list[str]:
    """Remove build locks of killed compiles (see STALE_LOCK_S); returns what was removed."""
    candidates = [lock for lock in extensions_dir.glob("*/lock")
                  if time.time() - lock.stat().st_mtime > max_age_s]
    if not candidates:
        return []
    held = locks_held_here()
    removed = []
    for lock in candidates:
        if str(lock.resolve()) in held or str(lock) in held:
            continue
        try:
            lock.unlink()
        except FileNotFoundError:
            continue
        print(f"[zerosweep] removed stale torch extension lock {lock}", file=sys.stderr, flush=True)
        removed.append(str(lock))
    return removed


def _tee(stream: IO[bytes], log: IO[bytes], prefix: bytes) -> None:
    for line in iter(stream.readline, b""):
        log.write(line)
        log.flush()
        try:
            sys.stdout.buffer.write(prefix + line)
            sys.stdout.buffer.flush()
        except (OSError, ValueError):
            pass  # our stdout may be gone (closed terminal); the log file is what counts


class DescendantTracker:
    """Remembers every process below a root, so none survives it (ranks live in sessions of their own)."""

    def __init__(self, exclude: Iterable[int] = ()) -> None:
        self.known: dict[int, psutil.Process] = {}
        self.exclude = set(exclude)
        self._last_scan = 0.0

    def scan(self, root_pid: int, force: bool = False) -> None:
        if not force and time.monotonic() - self._last_scan < DESCENDANT_SCAN_S:
            return
        self._last_scan = time.monotonic()
        for root in (root_pid, os.getpid()):
            try:
                for child in psutil.Process(root).children(recursive=True):
                    if child.pid not in self.exclude:
                        self.known.setdefault(child.pid, child)
            except psutil.Error:
                continue

    def kill_survivors(self) -> list[int]:
        killed = []
        for process in self.known.values():
            try:
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    process.kill()
                    killed.append(process.pid)
            except psutil.Error:
                continue
        for pid in killed:  # reap what became our child (we are a subreaper)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        return killed


def run_node(options: NodeOptions, shutdown: Shutdown) -> int:
    """Monitors + torchrun on this node; returns the node's exit code and leaves records/node<R>.json."""
    run_dir = options.run_dir
    spec = json.loads((run_dir / "run_spec.json").read_text(encoding="utf-8"))
    become_subreaper()
    started = time.monotonic()
    record: dict[str, Any] = {
        "node_rank": options.node_rank, "tag": options.tag, "host": socket.gethostname(),
        "log": node_log_name(options.node_rank, options.tag), "nnodes": options.nnodes,
        "gpus_per_node": options.gpus_per_node, "rdzv_endpoint": options.endpoint, "started_at": _now_iso(),
    }
    environ, recorded_env = torchrun_environment(spec, options)
    command = torchrun_command(options)
    record.update({"torchrun_command": command, "environment_variables": recorded_env})
    monitors = NodeMonitors(run_dir, options.tag, spec["monitor"], spec["runtime"]["device"])
    tracker = DescendantTracker()
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
                shutdown.targets.append(lambda: _signal_group(started_torchrun.pid, signal.SIGTERM))
                if shutdown.requested:  # a signal that came while we were starting it
                    _signal_group(torchrun.pid, signal.SIGTERM)
                monitors.start_cpu(torchrun.pid)
                tracker.exclude = monitors.pids()
                assert torchrun.stdout is not None
                tee = threading.Thread(target=_tee, args=(torchrun.stdout, log, options.echo_prefix), daemon=True)
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
                        if shutdown.overdue() and not escalated:
                            escalated = True
                            tracker.scan(torchrun.pid, force=True)
                            _signal_group(torchrun.pid, signal.SIGKILL)
                            tracker.kill_survivors()
        finally:
            if torchrun is not None:
                if torchrun.poll() is None:  # an exception in this loop: do not leave torchrun behind
                    _signal_group(torchrun.pid, signal.SIGKILL)
                    torchrun.wait()
                tracker.scan(torchrun.pid, force=True)
            leftovers = tracker.kill_survivors()
            if tee is not None:
                tee.join(timeout=10)
            record["monitors"] = monitors.stop()
            record["killed_leftover_pids"] = leftovers
            record["removed_stale_locks"] = removed_locks
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
        "finished_at": _now_iso(),
        "duration_s": time.monotonic() - started,
        "environment": node_environment(),
    })
    write_json(run_dir / "records" / f"node{options.node_rank}.json", record)
    return code


# --- the job ------------------------------------------------------------------------------------------


def load_spec(args: argparse.Namespace) -> dict[str, Any]:
    if args.spec_json is not None:
        spec: dict[str, Any] = json.loads(args.spec_json)
    else:
        spec = json.loads(Path(args.spec_file).read_text(encoding="utf-8"))
    return spec


def spec_problem(spec: Mapping[str, Any]) -> str | None:
    """Settings that cannot run, said before anything starts."""
    if spec["runtime"]["device"] == "cpu" and spec["training"]["precision"] == "fp16":
        return "training.precision fp16 needs a GPU; use bf16 or fp32 with runtime.device cpu"
    return None


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

        point = MatrixPoint(**{key: value for key, value in spec["point"].items() if key != "world_size"})
        write_json(run_dir / "ds_config.json", render(point), sort_keys=False)


def choose_mode(nnodes: int, requested: str) -> str:
    if nnodes == 1:
        return "single-node"
    if requested == "local":
        return "local-nodes"
    in_allocation = "SLURM_JOB_ID" in os.environ and shutil.which("srun") is not None
    if requested == "srun" and not in_allocation:
        raise SystemExit("launch: --node-mode srun needs a SLURM allocation (SLURM_JOB_ID) and srun on PATH")
    return "srun" if in_allocation else "local-nodes"


def _local_gpu_slices(nnodes: int, gpus_per_node: int) -> list[str | None]:
    """Emulated nodes on one GPU host each get their own GPUs."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        devices = [item.strip() for item in visible.split(",") if item.strip()]
    else:
        devices = [str(gpu["index"]) for gpu in gpu_inventory().get("gpus", [])]
    needed = nnodes * gpus_per_node
    if len(devices) < needed:
        raise RuntimeError(f"{nnodes} emulated nodes x {gpus_per_node} GPUs need {needed} GPUs, "
                           f"this host shows {len(devices)}")
    return [",".join(devices[r * gpus_per_node:(r + 1) * gpus_per_node]) for r in range(nnodes)]


def _node_command(args: argparse.Namespace, run_dir: Path, nnodes: int, gpus: int, endpoint: str, rdzv_id: str,
                  extensions: Path, cache: Path) -> list[str]:
    command = [sys.executable, "-m", "zerosweep", "launch-node", "--run-dir", str(run_dir), "--nnodes", str(nnodes),
               "--gpus-per-node", str(gpus), "--rdzv-endpoint", endpoint, "--rdzv-id", rdzv_id,
               "--torch-extensions-dir", str(extensions), "--cache-dir", str(cache)]
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
                _signal_process(process, signal.SIGTERM)
        if shutdown.overdue():
            for process in processes:
                _signal_process(process, signal.SIGKILL)
        time.sleep(0.2)
    return [exit_code_of(int(process.returncode)) for process in processes]


def _run_srun(command: list[str], run_dir: Path, shutdown: Shutdown) -> int:
    # No thread runs yet in this process (the tee starts below): preexec_fn is safe.
    srun = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True,
                            preexec_fn=parent_death_signal(signal.SIGTERM))  # noqa: PLW1509
    shutdown.targets.append(lambda: _signal_process(srun, signal.SIGTERM))  # srun passes it to every task
    assert srun.stdout is not None
    with open(run_dir / "srun.log", "wb") as log:
        tee = threading.Thread(target=_tee, args=(srun.stdout, log, b""), daemon=True)
        tee.start()
        killed = False
        while srun.poll() is None:
            if shutdown.overdue() and not killed:
                killed = True
                _signal_process(srun, signal.SIGKILL)
            time.sleep(0.2)
        tee.join(timeout=10)
    return exit_code_of(int(srun.returncode))


def oom_evidence(run_dir: Path) -> list[str]:
    evidence = [f"records/{path.name}" for path in sorted((run_dir / "records").glob("oom_rank*.json"))]
    for log in sorted(run_dir.glob("train*.log")) + sorted(run_dir.glob("srun.log")):
        text = log.read_text(encoding="utf-8", errors="replace")
        for pattern in OOM_LOG_PATTERNS:
            match = re.search(pattern, text)
            if match:
                evidence.append(f"{log.name}: {match.group(0)!r}")
        if ROOT_CAUSE_SIGKILL.search(text):
            evidence.append(f"{log.name}: a rank was killed by SIGKILL (exitcode -9)")
    return evidence


def metrics_skeleton(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The run's settings, flat, plus every measured field as null (filled from rank 0's record)."""
    from ..plan.matrix import MatrixPoint

    point_fields = {key: value for key, value in spec["point"].items() if key != "world_size"}
    point = MatrixPoint(**point_fields)
    model, data, training = spec["model"], spec["data"], spec["training"]
    metrics: dict[str, Any] = {
        "run_id": spec["run_id"],
        "label": point.label,
        "status": None,
        "error": None,
        **point_fields,
        "world_size": point.world_size,
        "device": spec["runtime"]["device"],
        "precision": training["precision"],
        "model_name": model["name"],
        "architecture": model["architecture"],
        "tokenizer": model["tokenizer"],
        "data_source": data["source"],
        "max_length": data["max_length"],
        "samples_per_gpu": data["samples_per_gpu"],
        "per_device_batch_size": training["per_device_batch_size"],
        "gradient_accumulation_steps": training["gradient_accumulation_steps"],
        "learning_rate": training["learning_rate"],
        "weight_decay": training["weight_decay"],
        "epochs": training["epochs"],
        "max_steps": training.get("max_steps"),
        "warmup_steps": training.get("warmup_steps", 0),
        "seed": training.get("seed"),
    }
    metrics.update({name: None for name in MEASURED_FIELDS})
    # Known before training: what an OOM row still reports.
    metrics["weights"] = model["weights"]
    metrics["train_samples"] = data["samples_per_gpu"] * point.world_size
    metrics["eval_samples"] = data["eval_samples"]
    metrics["global_batch_size"] = (training["per_device_batch_size"] * training["gradient_accumulation_steps"]
                                    * point.world_size)
    metrics["tokens_per_sample"] = data["max_length"]
    return metrics


def _max_of(records: list[dict[str, Any]], key: str) -> float | None:
    values = [record[key] for record in records if record.get(key) is not None]
    return max(values) if values else None


def merge_metrics(spec: Mapping[str, Any], status: str, error: str | None, train: Mapping[str, Any] | None,
                  memory: list[dict[str, Any]], ooms: list[dict[str, Any]]) -> dict[str, Any]:
    metrics = metrics_skeleton(spec)
    if train:
        metrics.update({key: value for key, value in train.items() if key not in ("rank_info", "torch_build")})
    elif ooms:
        metrics["phase_seconds"] = ooms[0].get("phase_seconds")  # which phases finished before memory ran out
    if metrics["gpu_name"] is None:
        metrics["gpu_name"] = next((record["gpu_name"] for record in memory if record.get("gpu_name")), None)
    metrics["status"] = status
    metrics["error"] = error
    metrics["torch_memory"] = memory
    metrics["node_ranks"] = sorted({record["node_rank"] for record in memory if "node_rank" in record})
    metrics["max_memory_allocated_mib"] = _max_of(memory, "max_memory_allocated_mib")
    metrics["max_memory_reserved_mib"] = _max_of(memory, "max_memory_reserved_mib")
    metrics["max_rss_mib"] = _max_of(memory, "max_rss_mib")
    return metrics


def failed_records_dir(failed_root: Path, run_id: str) -> Path:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return failed_root / run_id / stamp


def save_failed_records(run_dir: Path, target: Path) -> Path:
    """Snakemake deletes a failed job's outputs: keep everything the run wrote (but saved weights)."""
    shutil.copytree(run_dir, target, ignore=shutil.ignore_patterns("model"), dirs_exist_ok=True)
    return target


def finalize(*, spec: Mapping[str, Any], run_dir: Path, shown_run_dir: Path, failed_root: Path, mode: str,
             endpoint: str, node_codes: list[int], shutdown: Shutdown, started: float, started_at: str,
             argv: list[str], problem: str | None) -> int:
    run_id = spec["run_id"]
    nnodes = int(spec["point"]["nodes"])
    trainer_output = run_dir / "model"
    if trainer_output.is_dir() and not any(trainer_output.iterdir()):
        trainer_output.rmdir()  # the Trainer creates its output dir even when it saves nothing
    nodes = [read_json(run_dir / "records" / f"node{rank}.json") or {"node_rank": rank, "status": "missing"}
             for rank in range(nnodes)]
    train = read_json(run_dir / "records" / "train_rank0.json")
    memory = [record for path in sorted(run_dir.glob("monitor/torch_memory_rank*.json"))
              if (record := read_json(path)) is not None]
    memory.sort(key=lambda record: record.get("rank", 0))
    ooms = [record for path in sorted(run_dir.glob("records/oom_rank*.json")) if (record := read_json(path))]
    evidence: list[str] = []
    error: str | None = None
    if problem:
        status, error = "failed", problem
    elif shutdown.requested:
        status = "interrupted"
        error = f"stopped by {signal.Signals(shutdown.signum or signal.SIGTERM).name}"
    elif node_codes and all(code == 0 for code in node_codes) and train and train.get("status") == "ok":
        status = "ok"
    else:
        evidence = oom_evidence(run_dir)
        if mode == "srun" and SRUN_OOM_EXIT in node_codes:
            evidence.append(f"srun exited {SRUN_OOM_EXIT} (its code for out of memory)")
        if evidence:
            status = "oom"
            error = (f"rank {ooms[0].get('rank')}: {ooms[0].get('error_type')}: {ooms[0].get('error')}"
                     if ooms else evidence[0])
        else:
            status = "failed"
            error = (f"node exit codes {node_codes}" if any(node_codes) else
                     "training ended without rank 0's record")
    launcher_code = 0 if status in ("ok", "oom") else (128 + int(shutdown.signum) if shutdown.signum else 1)
    command = shlex.join([sys.executable, "-m", "zerosweep", *argv])
    env = merge_environment(run_id=run_id, argv=argv, command=command, launch_mode=mode, endpoint=endpoint,
                            nodes=[node for node in nodes if "environment" in node], rank_records=memory,
                            torch_build=(train or {}).get("torch_build"))
    write_json(run_dir / "env.json", env)
    logs = sorted(path.name for path in run_dir.glob("train*.log")) + sorted(
        path.name for path in run_dir.glob("srun.log"))
    status_record: dict[str, Any] = {
        "run_id": run_id,
        "status": status,
        "error": error,
        "exit_code": launcher_code,
        "launch_mode": mode,
        "rendezvous_endpoint": endpoint,
        "nodes_expected": nnodes,
        "node_exit_codes": node_codes,
        "started_at": started_at,
        "finished_at": _now_iso(),
        "duration_s": time.monotonic() - started,
        "log": "train.log",
        "logs": logs,
        "oom_evidence": evidence,
        "failed_records": None,
        "nodes": [{key: value for key, value in node.items() if key != "environment"} for node in nodes],
    }
    if status in ("ok", "oom"):
        write_json(run_dir / "metrics.json", merge_metrics(spec, status, error, train, memory, ooms))
        write_json(run_dir / "status.json", status_record)
        print(f"[zerosweep] run {run_id}: {status} in {status_record['duration_s']:.0f} s; "
              f"records in {shown_run_dir}", flush=True)
        return 0
    target = failed_records_dir(failed_root, run_id)
    status_record["failed_records"] = str(target)
    write_json(run_dir / "status.json", status_record)
    saved = save_failed_records(run_dir, target)
    print(f"[zerosweep] run {run_id} {status}: {error}\n  log: {shown_run_dir / 'train.log'}\n"
          f"  records kept in {saved}", file=sys.stderr, flush=True)
    return launcher_code


def launch(args: argparse.Namespace) -> int:
    started, started_at = time.monotonic(), _now_iso()
    spec = load_spec(args)
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
    if problem is None and not shutdown.requested:
        try:
            mode = choose_mode(nnodes, args.node_mode)
            head = rendezvous_host() if mode == "srun" else LOCAL_HOST
            endpoint = f"{head}:{free_port('' if mode == 'srun' else LOCAL_HOST)}"
            rdzv_id = spec["run_id"]
            print(f"[zerosweep] run {spec['run_id']}: {mode}, {nnodes} node(s) x {gpus} rank(s), "
                  f"rendezvous {endpoint}", flush=True)
            if mode == "single-node":
                options = NodeOptions(run_dir=run_dir, nnodes=1, gpus_per_node=gpus, node_rank=0, endpoint=endpoint,
                                      rdzv_id=rdzv_id, tag=socket.gethostname(), torch_extensions_dir=extensions,
                                      cache_dir=cache, memory_headroom_mb=args.rank_memory_headroom_mb)
                node_codes = [run_node(options, shutdown)]
            elif mode == "local-nodes":
                slices = (_local_gpu_slices(nnodes, gpus) if spec["runtime"]["device"] == "cuda"
                          else [None] * nnodes)
                base = _node_command(args, run_dir, nnodes, gpus, endpoint, rdzv_id, extensions, cache)
                processes = []
                env = {**os.environ, "PYTHONPATH": python_path(os.environ)}
                for rank in range(nnodes):
                    command = base + ["--node-rank", str(rank), "--node-tag", f"{socket.gethostname()}-node{rank}",
                                      "--echo-prefix", f"[node {rank}] "]
                    if slices[rank]:
                        command += ["--cuda-visible-devices", str(slices[rank])]
                    process = start_child(command, stdout=None, env=env)
                    processes.append(process)
                    shutdown.targets.append(functools.partial(_signal_process, process, signal.SIGTERM))
                node_codes = _wait_local_nodes(processes, shutdown)
            else:
                # The allocation's CPUs per task (the rule passes them): on clusters that bind no CPUs the
                # affinity mask is the whole host, and asking srun for more than was allocated fails the step.
                cpus = args.cpus_per_task or len(os.sched_getaffinity(0))
                # Counts are explicit: the SLURM executor strips SLURM_NNODES/NTASKS/JOB_NODELIST from our
                # environment. --overlap: the executor's own step already holds this node's CPUs and GPUs.
                command = ["srun", f"--nodes={nnodes}", f"--ntasks={nnodes}", "--ntasks-per-node=1",
                           f"--cpus-per-task={cpus}", "--kill-on-bad-exit=1", "--overlap",
                           *_node_command(args, run_dir, nnodes, gpus, endpoint, rdzv_id, extensions, cache)]
                os.environ["PYTHONPATH"] = python_path(os.environ)  # srun exports our environment
                node_codes = [_run_srun(command, run_dir, shutdown)]
        except Exception as error:  # noqa: BLE001  (any launcher bug or setup problem still leaves records)
            problem = f"launcher error: {type(error).__name__}: {error}"
            import traceback

            traceback.print_exc()
    return finalize(spec=spec, run_dir=run_dir, shown_run_dir=shown_run_dir, failed_root=failed_root, mode=mode,
                    endpoint=endpoint, node_codes=node_codes, shutdown=shutdown, started=started,
                    started_at=started_at, argv=argv, problem=problem)


def launch_node(args: argparse.Namespace) -> int:
    shutdown = Shutdown()
    shutdown.install()
    node_rank = args.node_rank if args.node_rank is not None else int(os.environ.get("SLURM_NODEID", "0"))
    options = NodeOptions(
        run_dir=Path(args.run_dir).resolve(), nnodes=args.nnodes, gpus_per_node=args.gpus_per_node,
        node_rank=node_rank, endpoint=args.rdzv_endpoint, rdzv_id=args.rdzv_id,
        tag=args.node_tag or socket.gethostname(), torch_extensions_dir=Path(args.torch_extensions_dir).resolve(),
        cache_dir=Path(args.cache_dir).resolve(), memory_headroom_mb=args.rank_memory_headroom_mb,
        cuda_visible_devices=args.cuda_visible_devices, echo_prefix=args.echo_prefix.encode(),
    )
    return run_node(options, shutdown)


# --- CLI ------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    if command == "launch":
        spec = parser.add_mutually_exclusive_group(required=True)
        spec.add_argument("--spec-json", help="the run's RunSpec.to_json()")
        spec.add_argument("--spec-file", type=Path, help="the same, from a file")
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
    else:
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
        parser.add_argument("--rank-memory-headroom-mb", type=int, default=None)
        parser.add_argument("--echo-prefix", default="", help="prefix for the lines echoed to stdout")


def run(args: argparse.Namespace) -> int:
    return launch(args) if args.command == "launch" else launch_node(args)
