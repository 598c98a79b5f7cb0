#!/usr/bin/env bash
# On the device machine (one H200): the workshop's nine single-GPU configurations through the pipeline (local
# executor) with benchmarks/energy/h200_energy.yaml, for energy per sample and the busy fraction (issue 25).
# Resumable: the call stops itself before the device's 10-minute limit (SIGINT: Snakemake cancels the running
# run cleanly); the next call goes on from results/ (a warm machine) or from ENERGY_SEED=<records.tgz> (an
# earlier call's $OUT/records.tgz, on a fresh machine). Carry: .whl (benchmarks/h100/README.md "Rerun it").
set -u
t0=$(date +%s.%N)
source benchmarks/device_env.sh || exit 1
begin_call energy "${ENERGY_SEED:-}" || exit 1
CONFIGS=(--configfile workflow_config.yaml benchmarks/energy/h200_energy.yaml)
python3 -m snakemake results/cache/ops/fused_adam.json results/cache/ops/cpu_adam.json --cores 16 "${CONFIGS[@]}" \
  > "$OUT/ops.txt" 2>&1 || { tail -40 "$OUT/ops.txt"; exit 1; }
timed_pipeline "${ENERGY_TIMEOUT_S:-480}" "$OUT/snakemake_energy.txt" all "$@" "${CONFIGS[@]}"
ls results/runs/ 2>/dev/null | tee "$OUT/runs_done.txt" | wc -l
tar czf "$OUT/records_energy.tgz" --exclude=results/cache --exclude='results/tune*' \
  --exclude='results/runs/*-b[0-9]*' --exclude='results/failed/*-b[0-9]*' results
ls -la "$OUT"
