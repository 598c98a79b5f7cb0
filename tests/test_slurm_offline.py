"""What the workflow hands SLURM and how it decides whether it can follow its jobs, checked without a cluster:
the train rule's resources as the executor plugin turns them into sbatch options, a constraint expression
through the shell, the tracking check on canned `scontrol show config` output, and the workflow profile's
SLURM-only settings. (tests/test_slurm.py runs the workflow on a real cluster.)"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import conftest
from zerosweep.plan.tracking import parse_scontrol_config, untrackable_reason

sys.path.insert(0, str(Path(__file__).resolve().parent / "slurm"))

from workflow import make_workdir

# --- the train rule's resources, as the SLURM executor turns them into sbatch options (no cluster) ---------

RESOURCES = re.compile(r"^\s+wildcards: run=(\S+)\n(?:\s+threads: (\d+)\n)?\s+resources: (.+)$", re.MULTILINE)


class _Resources(dict):  # type: ignore[type-arg]
    """What the plugin reads of a job's resources: .get() and attribute access."""

    def __getattr__(self, name: str) -> Any:
        return self[name]


def test_train_resources_become_one_task_per_node(tmp_path: Path) -> None:
    """Every run of the shipped matrix: 1-node runs have no `mpi` (the plugin refuses mpi with tasks=1 and runs
    them in `srun -n1` on one node); multi-node runs have mpi, tasks = nodes, one task and G GPUs per node. The
    plugin's own submit-string builder accepts each of them."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command

    result = conftest.run_snakemake("-n", "--forceall")
    assert result.returncode == 0, result.stderr
    train = {}
    for run, threads, text in RESOURCES.findall(result.stdout + result.stderr):
        values: dict[str, Any] = {}
        for item in re.split(r", (?=\w+=)", text):
            key, _, value = item.partition("=")
            values[key] = int(value) if value.isdigit() else value
        if "nodes" in values:
            train[run] = (int(threads or 1), values)
    assert len(train) == 21, sorted(train)
    shipped = make_workdir(tmp_path, {}, tmp_path).plan()
    for run, (threads, resources) in train.items():
        point = shipped.runs[run].point
        assert (resources["nodes"], resources["tasks"]) == (point.nodes, point.nodes), run
        assert resources.get("mpi") == ("srun" if point.nodes > 1 else None), (run, resources)
        assert resources["runtime"] == 60  # slurm.time_min x attempt 1
        assert resources["slurm_extra"] == f"--gpus-per-node={point.gpus_per_node} --ntasks-per-node=1 --exclusive"
        job = type("Job", (), {"resources": _Resources(resources), "threads": threads})()
        command = get_submit_command(job, {"run_uuid": "u", "slurm_logfile": "l", "comment_str": "c",
                                           "account": "", "partition": "", "workdir": "w"})
        cpus = 8 * point.gpus_per_node  # slurm.cpus_per_gpu for each of the node's ranks
        assert f"--nodes={point.nodes} --ntasks={point.nodes} --cpus-per-task={cpus} " in command, command
        assert command.endswith(f"--gpus-per-node={point.gpus_per_node} --ntasks-per-node=1 --exclusive -D w"), command


# One block per job of a dry run: its rule, its wildcards, threads and resources.
JOB = re.compile(r"^rule (\w+):\n(?:\s+\w+: .*\n)*?\s+wildcards: (\w+=\S+)\n(?:\s+threads: (\d+)\n)?"
                 r"\s+resources: (.+)$", re.MULTILINE)


def _dry_run_jobs(*args: str) -> dict[str, tuple[str, int, dict[str, Any]]]:
    """`snakemake -n --executor slurm` (no cluster needed for a dry run): wildcards -> (rule, threads, resources)."""
    result = conftest.run_snakemake("-n", "--forceall", "--executor", "slurm", *args)
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = {}
    for rule, wildcards, threads, text in JOB.findall(result.stdout + result.stderr):
        values: dict[str, Any] = {}
        for item in re.split(r", (?=\w+=)", text):
            key, _, value = item.partition("=")
            values[key] = int(value) if value.isdigit() else value
        jobs[wildcards] = (rule, int(threads or 1), values)
    return jobs


def _sbatch_words(threads: int, resources: dict[str, Any]) -> list[str]:
    """The plugin's own submit string for these resources, through bash with printf in place of sbatch."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command

    job = type("Job", (), {"resources": _Resources(resources), "threads": threads})()
    command = get_submit_command(job, {"run_uuid": "u", "slurm_logfile": "l", "comment_str": "c", "account": "",
                                       "partition": "", "workdir": "w"})
    assert command.startswith("sbatch "), command
    shown = subprocess.run(["bash", "-c", "printf '%s\\n' " + command[len("sbatch "):]], capture_output=True,
                           text=True, timeout=30, check=False)
    assert shown.returncode == 0, (command, shown.stderr)
    return shown.stdout.splitlines()


def test_constraint_expression_reaches_sbatch_as_one_word_from_every_submitting_rule(tmp_path: Path) -> None:
    """SLURM feature expressions use & | ( ): the plugin runs sbatch through a shell, so every rule that submits
    (train, build_op) quotes the constraint (zerosweep.plan.resources); the shell hands sbatch exactly the
    configured expression. build_op once pasted it in unquoted (a bash syntax error; `a100&ib` would have
    put sbatch in the background)."""
    constraint = "a100&(ib|eth)"
    overlay = tmp_path / "constraint.yaml"
    overlay.write_text(f"slurm:\n  constraint: '{constraint}'\n  reservation: maint\n", encoding="utf-8")
    jobs = _dry_run_jobs("results/runs/base-g1n1/metrics.json", "results/cache/ops/cpu_adam.json",
                         "--configfile", str(overlay))
    assert {rule for rule, _, _ in jobs.values()} == {"train", "build_op"}, jobs
    words = {wildcards: _sbatch_words(threads, resources) for wildcards, (_, threads, resources) in jobs.items()}
    for wildcards, shown in words.items():
        assert f"--constraint={constraint}" in shown and "--reservation=maint" in shown, (wildcards, shown)
        assert shown.count("--gpus-per-node=1") == 1 and shown.count("--ntasks-per-node=1") == 1, shown
    # whole nodes for timed runs only (slurm.exclusive, default true); the op build shares its node
    assert {wildcards: "--exclusive" in shown for wildcards, shown in words.items()} == {
        "run=base-g1n1": True, "op=cpu_adam": False}


def test_exclusive_false_lets_training_jobs_share_nodes(tmp_path: Path) -> None:
    overlay = tmp_path / "shared.yaml"
    overlay.write_text("slurm:\n  exclusive: false\n", encoding="utf-8")
    jobs = _dry_run_jobs("results/runs/base-g1n1/metrics.json", "--configfile", str(overlay))
    ((rule, threads, resources),) = jobs.values()
    assert rule == "train" and "--exclusive" not in _sbatch_words(threads, resources)


# --- can Snakemake track jobs on a cluster? (canned `scontrol show config`, no cluster) -----------------------

SCONTROL_NO_DBD = """Configuration data as of 2026-11-24T10:00:00
AccountingStorageType   = accounting_storage/none
MinJobAge               = 300 sec
SlurmctldPort           = 6817
"""


def test_tracking_check_refuses_what_would_hang_and_names_the_setting() -> None:
    config = parse_scontrol_config(SCONTROL_NO_DBD)
    assert config["MinJobAge"] == "300 sec" and config["AccountingStorageType"] == "accounting_storage/none"
    # the profile's squeue with 20 s: fine (300 >= 60)
    assert untrackable_reason("squeue", 20, config, sacct_on_path=True) is None
    # sacct without slurmdbd: waits forever (issue 16)
    reason = untrackable_reason("sacct", 20, config, sacct_on_path=True)
    assert reason and "--slurm-status-command sacct" in reason and "squeue" in reason
    # squeue, but finished jobs leave the queue before 3 x the first-check delay: the plugin would use sacct
    reason = untrackable_reason("squeue", 120, config, sacct_on_path=True)
    assert reason and "MinJobAge=300" in reason and "--slurm-init-seconds-before-status-checks 100" in reason
    assert "switch back to sacct" in reason
    assert "leave squeue" in (untrackable_reason("squeue", 120, config, sacct_on_path=False) or "")
    # with slurmdbd everything is trackable
    accounted = {**config, "AccountingStorageType": "accounting_storage/slurmdbd"}
    assert untrackable_reason("sacct", 120, accounted, sacct_on_path=True) is None


def test_profile_sets_the_job_limit_only_for_slurm() -> None:
    """profiles/default: `jobs` makes Snakemake stop limiting local cores, so it is set for --executor slurm only."""
    from snakemake.profiles import ProfileConfigFileParser

    def parsed(*argv: str) -> dict[str, Any]:
        saved = sys.argv
        sys.argv = ["snakemake", *argv]
        try:
            with open(conftest.REPO / "profiles" / "default" / "config.yaml", encoding="utf-8") as handle:
                return dict(ProfileConfigFileParser().parse(handle))
        finally:
            sys.argv = saved

    for argv in (("--executor", "slurm", "all"), ("--executor=slurm",), ("-e", "slurm")):
        assert (parsed(*argv).get("jobs"), parsed(*argv).get("retries")) == ("50", "1"), argv
    local = parsed("--cores", "2", "all")
    assert "jobs" not in local and "retries" not in local
    assert local["slurm-status-command"] == "squeue" and local["cores"] == "all"
