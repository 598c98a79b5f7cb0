#!/usr/bin/env bash
# Set up .venv and run the whole test suite (unit, real CPU DeepSpeed runs, Snakemake end to end,
# and the local SLURM cluster tests, which need root to start munge/slurmctld/slurmd).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup_venv.sh
export PATH="$repo/.venv/bin:$PATH"
# --durations: the slowest tests in the log, to keep the suite well inside CI's limit
python -m pytest -q -ra --durations=20 "$@"
