#!/usr/bin/env bash
# On the device machine (one H200): the speed_levers study (ZeRO-1, compile x precision x optimizer, repeats 2),
# local executor. Resumable: each call stops itself before the device's 10-minute limit (SIGINT: Snakemake
# cancels the running run cleanly); on a warm machine the next call goes on from results/, finished runs kept.
# LEVERS_SEED=<records.tgz>: on a machine without results/, start from an earlier call's $OUT/records.tgz.
# Carry: .whl (wheels the image lacks, benchmarks/h100/README.md "Rerun it", plus liger-kernel).
set -u
t0=$(date +%s.%N)
source benchmarks/device_env.sh || exit 1
begin_call levers "${LEVERS_SEED:-}" || exit 1
TARGET=results/tables/speed_levers.md
CONFIGS=(--configfile workflow_config.yaml studies/speed_levers.yaml benchmarks/levers/h200_levers.yaml)
python3 -m snakemake results/cache/ops/fused_adam.json --cores 16 "${CONFIGS[@]}" || exit 1
timed_pipeline "${LEVERS_TIMEOUT_S:-480}" "$OUT/snakemake.txt" "$TARGET" "$@" "${CONFIGS[@]}"
ls results/runs/ 2>/dev/null | tee "$OUT/runs_done.txt" | wc -l
[ -f "$TARGET" ] && cp results/tables/speed_levers.* "$OUT/"
tar czf "$OUT/records.tgz" --exclude=results/cache results
ls -la "$OUT"
