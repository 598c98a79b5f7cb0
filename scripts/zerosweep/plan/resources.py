"""What a job asks of SLURM: the one place that turns a job's GPUs per node and nodes, and the config's `slurm`
section, into the resources the SLURM executor plugin (2.8) puts on its sbatch line. Every rule that submits
(train, build_op) reads these through thin input functions in rules/common.smk.

The plugin runs sbatch through a shell. What it quotes itself (shlex.quote): the partition (`-p`), the account
(`-A`) and the runtime (`-t`); those stay raw here, or they would be quoted twice and name another partition.
Numbers (CPUs, memory, nodes, tasks) are ints. Everything in `slurm_extra` is pasted in as it is: here each
value is shell-quoted, whatever the schema allows today (a feature expression such as `a100&(ib|eth)` would
otherwise background sbatch or be a syntax error).

How the plugin places a job: without an `mpi` resource the rule runs in `srun -n1 --nodes=1` on ONE node,
whatever `nodes` says. With `mpi` set, the rule's shell runs in the batch script on the first node, and the
launcher starts one node launcher per node itself (`srun --nodes=N --ntasks-per-node=1 ... zerosweep
launch-node`). The plugin refuses mpi with tasks=1, so 1-node jobs leave `mpi` unset (None drops the resource).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# slurm.exclusive when the config leaves it out (schemas/config.schema.yaml says the same; a test compares them)
EXCLUSIVE_DEFAULT = True


@dataclass(frozen=True)
class SlurmOptions:
    """One job's resources, by the names the rules give them (`slurm_partition`, `cpus_per_task`, ...)."""

    partition: str  # raw: the plugin quotes it (-p); "" lets the plugin pick its default
    account: str  # raw: the plugin validates and quotes it (-A); "" lets the plugin guess
    nodes: int
    tasks: int  # one task per node: the node launcher, which starts torchrun's ranks
    mpi: str | None  # "srun" for multi-node jobs, None otherwise (see the module docstring)
    cpus_per_task: int  # CPUs of each node's task: slurm.cpus_per_gpu for each of the node's GPUs
    mem_mb: int
    runtime_min: int  # slurm.time_min x runs x attempt: a job retried after its time limit comes back with more time
    slurm_extra: str  # shell words, each value quoted


def slurm_exclusive(slurm: Mapping[str, Any]) -> bool:
    """slurm.exclusive, its default when unset."""
    value = slurm.get("exclusive")
    return EXCLUSIVE_DEFAULT if value is None else bool(value)


def _option(name: str, value: object) -> str:
    """--name=value as one shell word."""
    return shlex.quote(f"--{name}={value}")


def job_slurm_options(slurm: Mapping[str, Any], *, gpus_per_node: int, nodes: int, exclusive: bool,
                      attempt: int = 1, runs: int = 1) -> SlurmOptions:
    """A job on `nodes` nodes with `gpus_per_node` GPUs each. `exclusive` adds --exclusive (no other job on the
    job's nodes: training jobs ask for it through slurm.exclusive; the one-GPU op build does not). `runs`: the
    runs the job holds (an in-process tune search: its most probes), each given slurm.time_min."""
    if gpus_per_node < 1 or nodes < 1 or attempt < 1 or runs < 1:
        raise ValueError(f"a job needs >= 1 GPU per node, node, attempt and run: got {gpus_per_node}, {nodes}, "
                         f"{attempt}, {runs}")
    # Per node: `gpu`/`gpus` would be job-wide (--gpus), and `gres` with `tasks` makes the plugin add
    # --ntasks-per-gpu.
    extra = [_option("gpus-per-node", gpus_per_node), _option("ntasks-per-node", 1)]
    for key in ("reservation", "constraint"):
        if slurm.get(key):
            extra.append(_option(key, slurm[key]))
    if exclusive:
        extra.append("--exclusive")
    return SlurmOptions(
        partition=str(slurm.get("partition") or ""),
        account=str(slurm.get("account") or ""),
        nodes=nodes,
        tasks=nodes,
        mpi="srun" if nodes > 1 else None,
        cpus_per_task=int(slurm["cpus_per_gpu"]) * gpus_per_node,
        mem_mb=int(slurm["mem_mb_per_node"]),
        runtime_min=int(slurm["time_min"]) * runs * attempt,
        slurm_extra=" ".join(extra),
    )
