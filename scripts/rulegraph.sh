#!/usr/bin/env bash
# Regenerate docs/rulegraph.png: the rules of `all` and of the shipped tune studies (tune rules are not in `all`;
# studies/tune_levers.yaml adds the screen and the budget searches, studies/tune_in_process.yaml the in-process search).
# Needs graphviz's `dot` (Debian: apt-get install -y graphviz). --forceall: the graph of a fresh clone, whatever
# results/ this checkout already has.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-.venv/bin/python}"
out="${1:-docs/rulegraph.png}"
dot_file="$(mktemp)"
trap 'rm -f "$dot_file"' EXIT
"$python" -m snakemake --forceall --rulegraph dot --configfile workflow_config.yaml studies/tune_levers.yaml studies/tune_in_process.yaml -- all results/tune/tune_bloom560m/recommendation.md results/tune/tune_levers/recommendation.md results/tune/tune_in_process/recommendation.md > "$dot_file"
dot -Tpng "$dot_file" -o "$out"
echo "$out"
