"""Can `snakemake --executor slurm` follow its jobs on this cluster? Decided before anything is submitted.

The SLURM executor plugin (2.8) learns that a job ended from `sacct` or `squeue`. Without slurmdbd
(AccountingStorageType=accounting_storage/none) `sacct` knows no job, and the plugin then waits forever for
jobs that have long finished. `squeue` works everywhere, but only while finished jobs stay listed
(MinJobAge); when MinJobAge is below 3 x the first-check delay the plugin silently switches back to `sacct`.
This module reads the cluster's settings and names the setting to change instead of letting Snakemake hang.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping

NO_ACCOUNTING = "accounting_storage/none"
# The plugin's rule (snakemake_executor_plugin_slurm.Executor.check_active_jobs): squeue only when
# MinJobAge >= 3 x init seconds.
MIN_JOB_AGE_FACTOR = 3


class UntrackableCluster(RuntimeError):
    """Snakemake could not follow its jobs on this cluster; the message names the setting to change."""


def parse_scontrol_config(text: str) -> dict[str, str]:
    """`scontrol show config` as {key: value} (lines `Key = Value`)."""
    config: dict[str, str] = {}
    for line in text.splitlines():
        key, separator, value = line.partition("=")
        if separator and key.strip() and " " not in key.strip():
            config[key.strip()] = value.strip()
    return config


def scontrol_config() -> dict[str, str]:
    if shutil.which("scontrol") is None:
        raise UntrackableCluster("--executor slurm: `scontrol` is not on PATH; run Snakemake on a SLURM login node")
    result = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise UntrackableCluster(f"--executor slurm: `scontrol show config` failed: {result.stderr.strip()}")
    return parse_scontrol_config(result.stdout)


def _seconds(value: str | None) -> int | None:
    """'300 sec' -> 300 (scontrol's format for MinJobAge); None when absent or unreadable."""
    match = re.match(r"\s*(\d+)", value or "")
    return int(match.group(1)) if match else None


def untrackable_reason(status_command: str | None, init_seconds: int, config: Mapping[str, str],
                       sacct_on_path: bool) -> str | None:
    """Why the plugin would lose track of finished jobs with these settings, or None when it will not."""
    if config.get("AccountingStorageType", NO_ACCOUNTING) != NO_ACCOUNTING:
        return None  # slurmdbd: sacct works, and so does squeue
    min_job_age = _seconds(config.get("MinJobAge"))
    if status_command == "sacct":
        return ("--slurm-status-command sacct on a cluster without accounting (AccountingStorageType="
                f"{NO_ACCOUNTING}): sacct never sees a job end and Snakemake would wait forever; "
                "use --slurm-status-command squeue (the workflow profile profiles/default does)")
    if min_job_age is None or min_job_age < MIN_JOB_AGE_FACTOR * init_seconds:
        fallback = ("the plugin would switch back to sacct, which sees no job end without accounting"
                    if sacct_on_path else "finished jobs would leave squeue before Snakemake sees them end")
        limit = (min_job_age or 0) // MIN_JOB_AGE_FACTOR
        return (f"--slurm-status-command squeue with slurm.conf MinJobAge={min_job_age} s, below "
                f"{MIN_JOB_AGE_FACTOR} x --slurm-init-seconds-before-status-checks={init_seconds}: {fallback}; "
                f"pass --slurm-init-seconds-before-status-checks {max(limit, 1)} or less, or ask for MinJobAge "
                f">= {MIN_JOB_AGE_FACTOR * init_seconds}")
    return None


def check_slurm_tracking(status_command: str | None, init_seconds: int) -> None:
    """Raise UntrackableCluster when the plugin could not follow this cluster's jobs."""
    reason = untrackable_reason(status_command, init_seconds, scontrol_config(), shutil.which("sacct") is not None)
    if reason is not None:
        raise UntrackableCluster(f"--executor slurm cannot track jobs on this cluster: {reason}")
