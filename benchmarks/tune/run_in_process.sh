#!/usr/bin/env bash
# On the device machine (one H100 or H200): issue 23's comparison. The four configurations of
# benchmarks/tune/in_process_compare.yaml searched in-process (tune.search_mode in_process), then by the
# separate-process reference, on the same GPU; the boundaries side by side and each search's cost (device-seconds
# = job wall time x GPUs, probes per configuration) in $OUT/compare.md. Resumable like run_h100.sh: each stage
# stops itself before the device's 10-minute limit (SIGINT: Snakemake cancels the running job cleanly); the next
# call goes on from results/ (warm machine) or TUNE_SEED=<records.tgz> (an earlier call's, fresh machine).
# Ops are built ahead, outside the searches' cost. Carry: .whl (benchmarks/h100/README.md "Rerun it").
set -u
t0=$(date +%s.%N)
source benchmarks/device_env.sh || exit 1
begin_call in-process "${TUNE_SEED:-}" || exit 1
CONFIGS=(--configfile workflow_config.yaml benchmarks/tune/in_process_compare.yaml)
python3 -m snakemake results/cache/ops/fused_adam.json results/cache/ops/cpu_adam.json --cores 16 "${CONFIGS[@]}" \
  || exit 1
t1=$(date +%s.%N)
left=$(call_seconds_left)  # CALL_BUDGET_S since the call began (benchmarks/device_env.sh)
[ "${TUNE_TIMEOUT_S:-520}" -lt "$left" ] && left=${TUNE_TIMEOUT_S:-520}
for study in tune_cmp_in_process tune_cmp_separate; do
  began=$(date +%s)
  timeout -s INT -k 30 "$left" python3 -m snakemake "results/tune/$study/recommendation.md" --cores 16 \
    --rerun-incomplete --keep-going "$@" "${CONFIGS[@]}" > "$OUT/snakemake_$study.txt" 2>&1
  echo "$study rc=$? s=$(( $(date +%s) - began ))" | tee -a "$OUT/timing.txt"
  grep -B2 -A12 -E "Error|Exception" "$OUT/snakemake_$study.txt" | head -40
  [ -d "results/tune/$study" ] && cp -r "results/tune/$study" "$OUT/"
  left=$(( left - ($(date +%s) - began) ))
  [ "$left" -gt 60 ] || break
done
t2=$(date +%s.%N)
python3 -c "print(f\"setup_s={$t1-$t0:.1f} pipeline_s={$t2-$t1:.1f}\")" | tee -a "$OUT/timing.txt"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee -a "$OUT/timing.txt"
python3 benchmarks/tune/compare_modes.py results > "$OUT/compare.md"
cat "$OUT/compare.md"
tar czf "$OUT/records.tgz" --exclude=results/cache results
ls -la "$OUT"
