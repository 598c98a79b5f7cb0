#!/usr/bin/env bash
# On the device machine (one H200): issue 24's non-BLOOM model (benchmarks/models/h200_qwen2.yaml). STAGE=workshop
# (default): the four single-GPU workshop studies; STAGE=tune: the lever tune. Resumable like the other runners:
# the call stops itself before the device's 10-minute limit; MODELS_SEED=<records.tgz> on a fresh machine.
# Carry: .whl (benchmarks/h100/README.md "Rerun it").
set -u
t0=$(date +%s.%N)
source benchmarks/device_env.sh || exit 1
begin_call models "${MODELS_SEED:-}" || exit 1
CONFIGS=(--configfile workflow_config.yaml studies/tune_levers.yaml benchmarks/models/h200_qwen2.yaml)
case "${STAGE:-workshop}" in
  workshop) TARGET=all; OPS=(results/cache/ops/fused_adam.json results/cache/ops/cpu_adam.json) ;;
  tune) TARGET=results/tune/tune_levers/recommendation.md; OPS=(results/cache/ops/fused_adam.json) ;;
  *) echo "STAGE must be workshop or tune"; exit 2 ;;
esac
python3 -m snakemake "${OPS[@]}" --cores 16 "${CONFIGS[@]}" > "$OUT/ops.txt" 2>&1 || { tail -40 "$OUT/ops.txt"; exit 1; }
timed_pipeline "${MODELS_TIMEOUT_S:-480}" "$OUT/snakemake_${STAGE:-workshop}.txt" "$TARGET" "$@" "${CONFIGS[@]}"
ls results/runs/ 2>/dev/null | tee "$OUT/runs_done.txt" | wc -l
tar czf "$OUT/records.tgz" --exclude=results/cache results
ls -la "$OUT"
