#!/usr/bin/env bash
# On the device machine (one H100): the tune study (ZeRO 0-3 x offload none/cpu, bloom-560m, seq 512), local
# executor. Resumable: each call stops itself before the device's 10-minute limit (SIGINT: Snakemake cancels
# the running probe cleanly) and leaves results + compiled ops in $OUT/state.tar; carry that file back as
# .tunestate/state.tar and call again; finished probes are reused, the search goes on where it stopped.
# Carry: .whl (wheels the image lacks, as for benchmarks/h100) and, from the second call on, .tunestate.
set -u
t0=$(date +%s.%N)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1
[ -f .tunestate/state.tar ] && tar xf .tunestate/state.tar
mkdir -p "$OUT"
rm -rf .snakemake/locks  # a previous call on this warm machine may have been cut off
TARGET=results/tune/tune_bloom560m/recommendation.md
t1=$(date +%s.%N)
timeout -s INT -k 30 "${TUNE_TIMEOUT_S:-500}" python3 -m snakemake "$TARGET" --cores 16 --rerun-incomplete \
  --keep-going "$@" --configfile workflow_config.yaml benchmarks/tune/h100_tune.yaml
rc=$?
t2=$(date +%s.%N)
python3 -c "print(f\"setup_s={$t1-$t0:.1f} pipeline_s={$t2-$t1:.1f} rc=$rc\")" | tee -a "$OUT/timing.txt"
ls results/tune/probes/ 2>/dev/null | tee "$OUT/probes_done.txt" | wc -l
tar cf "$OUT/state.tar" results .snakemake/metadata 2>/dev/null
[ -f "$TARGET" ] && cp -r results/tune/tune_bloom560m "$OUT/"
tar czf "$OUT/records.tgz" --exclude=results/cache results
ls -la "$OUT"
