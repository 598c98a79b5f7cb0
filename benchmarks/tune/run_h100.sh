#!/usr/bin/env bash
# On the device machine (one H100): the tune study (ZeRO 0-3 x offload none/cpu, bloom-560m, seq 512), local
# executor. Resumable: each call stops itself before the device's 10-minute limit (SIGINT: Snakemake cancels
# the running probe cleanly); on a warm machine the next call goes on from results/, finished probes reused.
# TUNE_SEED=<records.tgz>: on a machine without results/tune, start from an earlier call's $OUT/records.tgz
# (e.g. benchmarks/tune/data/records.tgz); pass --rerun-triggers mtime so that Snakemake judges the seeded
# probes by their files (the seed has no .snakemake metadata).
# Carry: .whl (wheels the image lacks, as for benchmarks/h100).
set -u
t0=$(date +%s.%N)
source benchmarks/device_env.sh || exit 1
if [ -n "${TUNE_SEED:-}" ] && [ ! -d results/tune ]; then
  tar xzf "$TUNE_SEED" || exit 1
  find results -exec touch -h {} +  # newer than this checkout's files: mtime must not make the seed stale
fi
mkdir -p "$OUT"
rm -rf .snakemake/locks  # a previous call on this warm machine may have been cut off
TARGET=results/tune/tune_bloom560m/recommendation.md
CONFIGS=(--configfile workflow_config.yaml benchmarks/tune/h100_tune.yaml)
t1=$(date +%s.%N)
# The seed lacks the compiled ops (results/cache): build them in a Snakemake call of their own, since ops built
# within the tune call would count as "updated by another job" and retrain every seeded probe.
python3 -m snakemake results/cache/ops/fused_adam.json results/cache/ops/cpu_adam.json --cores 16 "${CONFIGS[@]}" \
  || exit 1
timeout -s INT -k 30 "${TUNE_TIMEOUT_S:-500}" python3 -m snakemake "$TARGET" --cores 16 --rerun-incomplete \
  --keep-going "$@" "${CONFIGS[@]}"
rc=$?
t2=$(date +%s.%N)
python3 -c "print(f\"setup_s={$t1-$t0:.1f} pipeline_s={$t2-$t1:.1f} rc=$rc\")" | tee -a "$OUT/timing.txt"
ls results/tune/probes/ 2>/dev/null | tee "$OUT/probes_done.txt" | wc -l
[ -f "$TARGET" ] && cp -r results/tune/tune_bloom560m "$OUT/"
tar czf "$OUT/records.tgz" --exclude=results/cache results
ls -la "$OUT"
