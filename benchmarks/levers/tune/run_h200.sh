#!/usr/bin/env bash
# On the device machine (one H200): the tune_levers study (studies/tune_levers.yaml) through the pipeline, local
# executor. Resumable: each call stops itself before the device's 10-minute limit (SIGINT: Snakemake cancels the
# running probe cleanly); the next call goes on from results/ (a warm machine) or from TUNE_SEED=<records.tgz>
# (an earlier call's $OUT/records.tgz, on a fresh machine). Extra arguments go to Snakemake (e.g. a target).
# Carry: .whl (the wheels the image lacks: benchmarks/h100/README.md "Rerun it").
set -u
t0=$(date +%s.%N)
source benchmarks/device_env.sh || exit 1
begin_call lever-tune "${TUNE_SEED:-}" || exit 1
TARGET=${TUNE_TARGET:-results/tune/tune_levers/recommendation.md}
CONFIGS=(--configfile workflow_config.yaml studies/tune_levers.yaml benchmarks/levers/tune/h200_tune_levers.yaml)
python3 -m snakemake results/cache/ops/fused_adam.json --cores 16 "${CONFIGS[@]}" || exit 1
timed_pipeline "${TUNE_TIMEOUT_S:-480}" "$OUT/snakemake.txt" "$TARGET" "$@" "${CONFIGS[@]}"
ls results/runs/ 2>/dev/null | tee "$OUT/runs_done.txt" | wc -l
ls results/tune/probes/ 2>/dev/null | wc -l
[ -d results/tune/tune_levers ] && cp -r results/tune/tune_levers "$OUT/tune_levers"
tar czf "$OUT/records.tgz" --exclude=results/cache results
ls -la "$OUT"
