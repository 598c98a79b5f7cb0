#!/usr/bin/env bash
# On the device machine (one H100: the records it starts from are an H100's): issue 25's busy fraction and
# J/sample at tuned boundaries. The separate-process study of benchmarks/tune/in_process_compare.yaml with
# benchmarks/energy/tune_measure.yaml: each configuration's boundary measured by an ordinary run of 40 steps.
# Starts from the comparison's records (benchmarks/tune/in_process/data/records.tgz, or TUNE_SEED=<records.tgz>),
# so that only the four measurement runs are new; resumable like the other runners (benchmarks/device_env.sh).
# Carry: .whl (benchmarks/h100/README.md "Rerun it").
set -u
t0=$(date +%s.%N)
source benchmarks/device_env.sh || exit 1
begin_call tune-measure "${TUNE_SEED:-benchmarks/tune/in_process/data/records.tgz}" || exit 1
CONFIGS=(--configfile workflow_config.yaml benchmarks/tune/in_process_compare.yaml benchmarks/energy/tune_measure.yaml)
python3 -m snakemake results/cache/ops/fused_adam.json results/cache/ops/cpu_adam.json --cores 16 "${CONFIGS[@]}" \
  > "$OUT/ops.txt" 2>&1 || { tail -40 "$OUT/ops.txt"; exit 1; }
# -R tune_recommendation: the measurements are the recommendation's inputs; its records already exist
timed_pipeline "${MEASURE_TIMEOUT_S:-480}" "$OUT/snakemake_measure.txt" results/tune/tune_cmp_separate/recommendation.md \
  -R tune_recommendation "$@" "${CONFIGS[@]}"
nvidia-smi --query-gpu=name,memory.total,uuid --format=csv,noheader | tee -a "$OUT/timing.txt"
[ -d results/tune/tune_cmp_separate ] && cp -r results/tune/tune_cmp_separate "$OUT/"
tar czf "$OUT/records_measure.tgz" --exclude=results/cache results
ls -la "$OUT"
