"""How a run ended, from evidence, never from words in a log.

Each rank writes records/end_rank<R>.json (run/train.py): `ok`, `cuda_oom` or `host_oom` (from the exception's
type), or `error`. Each node launcher records its cgroup's OOM-kill counter before and after (the kernel OOM
killer leaves no rank record). The job launcher knows whether it was signalled and, under SLURM, whether its
time limit was up. From these:

| outcome      | status      | evidence                                                                  |
| ------------ | ----------- | ------------------------------------------------------------------------- |
| ok           | ok          | every node exited 0 and rank 0 recorded its results                        |
| cuda_oom     | oom         | a rank's end record: torch.OutOfMemoryError on the GPU                     |
| host_oom     | oom         | a rank's end record (MemoryError, CPU allocator), a cgroup OOM kill, or srun's exit 253 |
| time_limit   | interrupted | SIGTERM within TIME_LIMIT_SLACK_S of the SLURM job's end                   |
| cancelled    | interrupted | SIGTERM/SIGINT/SIGHUP otherwise (scancel, Ctrl-C)                          |
| crash        | failed      | anything else, e.g. a rank killed by SIGKILL with no OOM kill recorded     |
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SRUN_OOM_EXIT = 253  # srun(1): "The value 253 is reserved for out-of-memory errors"
TIME_LIMIT_SLACK_S = 90.0  # SLURM signals at the limit; our clock started a little after the job's
OOM_OUTCOMES = ("cuda_oom", "host_oom")
# NCCL allocates its own small device buffers outside torch's allocator; on a full GPU that fails first and
# torch raises DistBackendError "unhandled cuda error ... Last error: Failed to CUDA calloc async 24 bytes"
# (seen on an H100: ZeRO-3 + offload at micro-batch 28, in DeepSpeed's overflow all-reduce).
NCCL_ALLOCATION_FAILED = re.compile(r"Failed to CUDA (?:m|c)alloc|cudaErrorMemoryAllocation")
# torchrun's failure summary names a rank that died by signal 9: told apart from an OOM kill by the cgroup.
ROOT_CAUSE_SIGKILL = re.compile(r"Root Cause \(first observed failure\):.*?exitcode\s*:\s*-9\b", re.DOTALL)


def exception_outcome(error: BaseException) -> str:
    """`cuda_oom`, `host_oom` or `error` for an exception a rank caught. torch raises OutOfMemoryError for the
    CUDA caching allocator and for its CPU allocator; DeepSpeed's pinned and CPU-Adam buffers fail with a
    RuntimeError from the allocator; NCCL's own device allocations fail inside a DistBackendError."""
    import torch
    import torch.distributed

    if isinstance(error, torch.OutOfMemoryError):
        return "cuda_oom" if "CUDA" in str(error) else "host_oom"
    if isinstance(error, MemoryError):
        return "host_oom"
    if isinstance(error, torch.distributed.DistBackendError):
        return "cuda_oom" if NCCL_ALLOCATION_FAILED.search(str(error)) else "error"
    if isinstance(error, RuntimeError):
        text = str(error)
        if "CUDA out of memory" in text or "CUDA error: out of memory" in text:
            return "cuda_oom"
        if "DefaultCPUAllocator" in text or "Cannot allocate memory" in text or "can't allocate memory" in text:
            return "host_oom"
    return "error"


def cgroup_oom_kills() -> int | None:
    """Processes of this process's cgroup (v2, descendants included) killed by any OOM killer so far."""
    try:
        entry = Path("/proc/self/cgroup").read_text(encoding="utf-8").strip().splitlines()
        path = next(line.split("::", 1)[1] for line in entry if line.startswith("0::"))
        for line in Path("/sys/fs/cgroup", path.lstrip("/"), "memory.events").read_text().splitlines():
            key, value = line.split()
            if key == "oom_kill":
                return int(value)
    except (OSError, StopIteration, ValueError):
        pass
    return None


def slurm_seconds_left(job_id: str) -> float | None:
    """Time left of a SLURM job (squeue %L: [D-]H:MM:SS, MM:SS), or None."""
    if shutil.which("squeue") is None:
        return None
    try:
        probe = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%L"], capture_output=True, text=True,
                               timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = probe.stdout.strip()
    match = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)", text)
    if not match:
        return None
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


@dataclass
class Deadline:
    """When the SLURM job's time limit ends (monotonic clock), to tell a time-limit kill from a cancellation."""

    at: float | None = None

    @classmethod
    def of_job(cls, job_id: str | None) -> Deadline:
        left = slurm_seconds_left(job_id) if job_id else None
        return cls(time.monotonic() + left if left is not None else None)

    def reached(self, when: float) -> bool:
        return self.at is not None and when >= self.at - TIME_LIMIT_SLACK_S


@dataclass
class Outcome:
    status: str  # ok | oom | interrupted | failed: what tables and Snakemake act on
    outcome: str  # ok | cuda_oom | host_oom | time_limit | cancelled | crash | config
    error: str | None = None
    evidence: list[str] = field(default_factory=list)


def classify(*, run_dir: Path, nodes: Sequence[Mapping[str, Any]], ends: Sequence[Mapping[str, Any]],
             node_codes: Sequence[int], mode: str, train_ok: bool, problem: str | None, signal_name: str | None,
             time_limit_reached: bool) -> Outcome:
    """`nodes`: the node records; `ends`: the ranks' end records (records/end_rank<R>.json) that were written."""
    if problem:
        return Outcome("failed", "config", problem)
    if signal_name:
        outcome = "time_limit" if time_limit_reached else "cancelled"
        return Outcome("interrupted", outcome, f"stopped by {signal_name}" +
                       (" at the SLURM time limit" if time_limit_reached else ""))
    if node_codes and all(code == 0 for code in node_codes) and train_ok:
        return Outcome("ok", "ok")
    oom_ranks = [end for end in ends if end.get("outcome") in OOM_OUTCOMES]
    if oom_ranks:
        first = oom_ranks[0]
        evidence = [f"records/end_rank{end.get('rank')}.json: {end['outcome']}" for end in oom_ranks]
        return Outcome("oom", str(first["outcome"]),
                       f"rank {first.get('rank')}: {first.get('error_type')}: {first.get('error')}", evidence)
    killed = [f"node {node.get('node_rank')}: cgroup oom_kill +{node['oom_kills_after'] - node['oom_kills_before']}"
              for node in nodes
              if node.get("oom_kills_before") is not None and node.get("oom_kills_after") is not None
              and node["oom_kills_after"] > node["oom_kills_before"]]
    if mode == "srun" and SRUN_OOM_EXIT in node_codes:
        killed.append(f"srun exited {SRUN_OOM_EXIT} (its code for out of memory)")
    if killed:
        return Outcome("oom", "host_oom", f"killed by the kernel OOM killer ({killed[0]})", killed)
    notes = [node["error"] for node in nodes if node.get("error")]
    notes += [f"rank {end.get('rank')}: {end.get('error_type')}: {end.get('error')}"
              for end in ends if end.get("outcome") == "error"]
    for log in sorted(run_dir.glob("train*.log")):
        if ROOT_CAUSE_SIGKILL.search(log.read_text(encoding="utf-8", errors="replace")):
            notes.append(f"{log.name}: a rank was killed by SIGKILL, with no OOM kill recorded")
    if not notes:
        notes.append(f"node exit codes {list(node_codes)}" if any(node_codes)
                     else "training ended without rank 0's record")
    return Outcome("failed", "crash", "; ".join(notes))
