#!/usr/bin/env bash
# Quick start: set up .venv and run the offline CPU demo (tiny BLOOM, synthetic SQuAD-format data)
# through the whole workflow: training runs, memory parsing, tables, plots, summary and the HTML report.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup_venv.sh
export PATH="$repo/.venv/bin:$PATH"
snakemake -n --workflow-profile profiles/cpu-demo | tail -n 20
snakemake matrix --workflow-profile profiles/cpu-demo --quiet rules
snakemake all --workflow-profile profiles/cpu-demo "$@"
snakemake --workflow-profile profiles/cpu-demo --report results/report.html
echo
cat results/summary.md
echo "Tables: results/tables/  Plots: results/plots/  Report: results/report.html"
