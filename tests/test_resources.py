"""zerosweep.plan.resources.job_slurm_options: every option of a job's sbatch line, with shell metacharacters in
each string the config can hold, through the SLURM executor plugin's own submit-string code and a real shell."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from conftest import REPO
from zerosweep.plan.resources import EXCLUSIVE_DEFAULT, SlurmOptions, job_slurm_options, slurm_exclusive

# Each would run a command, background sbatch or split the word if it reached the shell unquoted.
NASTY = {
    "partition": "gpu;touch PWNED",
    "account": "acct$(id>PWNED)&x`id`",  # no space: the plugin splits accounts on spaces and commas
    "reservation": "res`touch PWNED`|y",
    "constraint": "a100&(ib|eth)>PWNED'\"",
}
SLURM: dict[str, Any] = {"time_min": 60, "mem_mb_per_node": 64000, "cpus_per_gpu": 8}


class _Resources(dict):  # type: ignore[type-arg]
    """What the plugin reads of a job's resources: .get() and attribute access."""

    def __getattr__(self, name: str) -> Any:
        return self[name]


def _job(options: SlurmOptions) -> Any:
    resources = _Resources(nodes=options.nodes, tasks=options.tasks, cpus_per_task=options.cpus_per_task,
                           mem_mb=options.mem_mb, runtime=options.runtime_min, slurm_partition=options.partition,
                           slurm_account=options.account, slurm_extra=options.slurm_extra)
    if options.mpi is not None:
        resources["mpi"] = options.mpi
    return SimpleNamespace(resources=resources, threads=options.cpus_per_task)


def sbatch_words(options: SlurmOptions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The words the shell hands sbatch for a job with these options: the plugin's own -p/-A quoting
    (Executor.get_partition_arg / get_account_arg) and submit string, run through bash with printf in place of
    sbatch. The plugin checks an account against `sacctmgr`: a stand-in that knows the configured one."""
    from snakemake_executor_plugin_slurm import Executor
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command

    tools = tmp_path / "bin"
    tools.mkdir(exist_ok=True)
    sacctmgr = tools / "sacctmgr"
    sacctmgr.write_text(f"#!/bin/sh\nprintf '%s\\n' {_sh_quote(options.account)}\n", encoding="utf-8")
    sacctmgr.chmod(sacctmgr.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    job = _job(options)
    executor = SimpleNamespace(_partitions=None, _fallback_partition=None, _fallback_account_arg=None,
                               logger=SimpleNamespace(warning=print, info=print))
    account = next(Executor.get_account_arg(executor, job)) if options.account else ""
    partition = Executor.get_partition_arg(executor, job) if options.partition else ""
    command = get_submit_command(job, {"run_uuid": "u", "slurm_logfile": "l", "comment_str": "c",
                                       "account": account, "partition": partition, "workdir": "w"})
    assert command.startswith("sbatch "), command
    shown = subprocess.run(["bash", "-c", "printf '%s\\n' " + command[len("sbatch "):]], capture_output=True,
                           text=True, timeout=30, check=False, cwd=tmp_path)
    assert shown.returncode == 0, (command, shown.stderr)
    assert not (tmp_path / "PWNED").exists(), command
    return shown.stdout.splitlines()


def _sh_quote(value: str) -> str:
    import shlex

    return shlex.quote(value)


def test_every_string_option_reaches_sbatch_as_the_configured_word(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    options = job_slurm_options({**SLURM, **NASTY}, gpus_per_node=2, nodes=4, exclusive=True, attempt=2)
    assert (options.partition, options.account) == (NASTY["partition"], NASTY["account"])  # the plugin quotes
    words = sbatch_words(options, tmp_path, monkeypatch)
    assert words[words.index("-p") + 1] == NASTY["partition"]
    assert words[words.index("-A") + 1] == NASTY["account"]
    assert f"--reservation={NASTY['reservation']}" in words
    assert f"--constraint={NASTY['constraint']}" in words
    assert words[words.index("-t") + 1] == "120"  # time_min x attempt 2
    assert words[words.index("--mem") + 1] == "64000"
    for word in ("--nodes=4", "--ntasks=4", "--cpus-per-task=16", "--gpus-per-node=2", "--ntasks-per-node=1",
                 "--exclusive"):
        assert words.count(word) == 1, (word, words)


@pytest.mark.parametrize("key", sorted(NASTY))
def test_each_option_alone(key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    options = job_slurm_options({**SLURM, key: NASTY[key]}, gpus_per_node=1, nodes=1, exclusive=False)
    words = sbatch_words(options, tmp_path, monkeypatch)
    flag = {"partition": "-p", "account": "-A"}.get(key)
    if flag:
        assert words[words.index(flag) + 1] == NASTY[key]
    else:
        assert f"--{key}={NASTY[key]}" in words
    assert "--exclusive" not in words


@pytest.mark.parametrize("key", ["time_min", "mem_mb_per_node", "cpus_per_gpu"])
def test_numbers_are_numbers(key: str) -> None:
    """CPUs, memory and runtime reach the sbatch line unquoted (the plugin pastes them): only integers pass."""
    with pytest.raises(ValueError):
        job_slurm_options({**SLURM, key: "8;touch PWNED"}, gpus_per_node=1, nodes=1, exclusive=False)


def test_placement_one_task_per_node() -> None:
    one = job_slurm_options(SLURM, gpus_per_node=4, nodes=1, exclusive=True)
    assert (one.nodes, one.tasks, one.mpi, one.cpus_per_task, one.runtime_min) == (1, 1, None, 32, 60)
    assert one.slurm_extra == "--gpus-per-node=4 --ntasks-per-node=1 --exclusive"
    many = job_slurm_options(SLURM, gpus_per_node=2, nodes=3, exclusive=False, attempt=3)
    assert (many.nodes, many.tasks, many.mpi, many.cpus_per_task, many.runtime_min) == (3, 3, "srun", 16, 180)
    assert many.slurm_extra == "--gpus-per-node=2 --ntasks-per-node=1"
    assert (many.partition, many.account) == ("", "")  # unset: the plugin picks its default partition
    with pytest.raises(ValueError):
        job_slurm_options(SLURM, gpus_per_node=0, nodes=1, exclusive=False)


def test_exclusive_default_is_the_schema_default() -> None:
    schema = yaml.safe_load((REPO / "schemas" / "config.schema.yaml").read_text(encoding="utf-8"))
    exclusive = schema["properties"]["slurm"]["properties"]["exclusive"]
    assert exclusive["type"] == "boolean" and exclusive["default"] is EXCLUSIVE_DEFAULT is True
    assert "--exclusive" in exclusive["description"]
    assert slurm_exclusive(SLURM) is True and slurm_exclusive({**SLURM, "exclusive": None}) is True
    assert slurm_exclusive({**SLURM, "exclusive": False}) is False


def test_a_job_of_several_runs_gets_each_runs_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    options = job_slurm_options(SLURM, gpus_per_node=1, nodes=1, exclusive=False, attempt=2, runs=9)
    assert options.runtime_min == int(SLURM["time_min"]) * 9 * 2
    assert sbatch_words(options, tmp_path, monkeypatch)[sbatch_words(options, tmp_path, monkeypatch).index("-t") + 1] \
        == str(int(SLURM["time_min"]) * 18)
    with pytest.raises(ValueError, match="run"):
        job_slurm_options(SLURM, gpus_per_node=1, nodes=1, exclusive=False, runs=0)
