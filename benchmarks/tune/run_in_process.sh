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
# each study's stage: timed_pipeline (benchmarks/device_env.sh), its limit TUNE_TIMEOUT_S or what is left of the
# call; its timing line after the study's name (setup_s: since the call began)
for study in tune_cmp_in_process tune_cmp_separate; do
  echo "$study" >> "$OUT/timing.txt"
  timed_pipeline "${TUNE_TIMEOUT_S:-520}" "$OUT/snakemake_$study.txt" "results/tune/$study/recommendation.md" "$@" \
    "${CONFIGS[@]}" || break
  [ -d "results/tune/$study" ] && cp -r "results/tune/$study" "$OUT/"
done
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee -a "$OUT/timing.txt"
python3 benchmarks/tune/compare_modes.py results > "$OUT/compare.md"
cat "$OUT/compare.md"
tar czf "$OUT/records.tgz" --exclude=results/cache results
ls -la "$OUT"
