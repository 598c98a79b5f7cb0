#!/usr/bin/env bash
# After Snakemake was killed outright (SIGKILL, a lost login node) while its SLURM jobs ran:
#   bash scripts/slurm_recover.sh [snakemake options, e.g. --snakefile ...]   # from the working directory
#   snakemake --executor slurm all                                           # the command you ran before
# Cancels this workflow's jobs (the user's jobs whose working directory is this one), waits until they have
# left the queue (each training job's launcher saves its records under results/failed/<run>/), and unlocks
# the working directory. The rerun then submits only the runs that are missing; finished runs stay untouched.
set -euo pipefail
workdir="$(pwd -P)"
active="PENDING,RUNNING,CONFIGURING,COMPLETING,SUSPENDED,REQUEUED,RESIZING"
mine() { squeue --me -h -t "$active" -o "%i %Z" | awk -v dir="$workdir" '$2 == dir {print $1}'; }
jobs="$(mine)"
if [ -n "$jobs" ]; then
    echo "slurm_recover: cancelling this workflow's jobs: $(echo $jobs)"
    scancel $jobs
    for _ in $(seq 300); do
        [ -z "$(mine)" ] && break
        sleep 1
    done
    left="$(mine)"
    if [ -n "$left" ]; then
        echo "slurm_recover: jobs still in the queue after 300 s: $(echo $left)" >&2
        exit 1
    fi
else
    echo "slurm_recover: no job of this workflow ($workdir) in the queue"
fi
snakemake --unlock "$@"
echo "slurm_recover: unlocked; rerun your snakemake command to submit the missing runs"
