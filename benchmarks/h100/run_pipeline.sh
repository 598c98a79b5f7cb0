#!/usr/bin/env bash
# On the device machine (one H100): the single-GPU studies through the pipeline, local executor.
# Carry .whl (wheels the image lacks) and, on a second call, .h100state (results of the first).
# EXTRA_CONFIG: a further config overlay (e.g. benchmarks/h100/method_overrides.yaml: repeats + stop when tight).
set -u
t0=$(date +%s.%N)
source benchmarks/device_env.sh || exit 1
python3 -c "import scipy" || { echo "scipy is missing on this image: add its wheel to .whl (README)"; exit 1; }
[ -f .h100state/results.tar ] && tar xf .h100state/results.tar
mkdir -p $OUT
rm -rf .snakemake/locks  # a previous call on this warm machine may have been cut off
python3 benchmarks/h100/nvml_watch.py --out $OUT/nvml_watch.csv & watch=$!
t1=$(date +%s.%N)
timeout -k 20 ${PIPELINE_TIMEOUT_S:-500} python3 -m snakemake ${TARGETS:-all} --cores 16 "$@" --configfile workflow_config.yaml benchmarks/h100/h100_overrides.yaml ${EXTRA_CONFIG:-}
rc=$?
t2=$(date +%s.%N)
kill $watch; wait $watch
python3 -c "print(f\"setup_s={$t1-$t0:.1f} pipeline_s={$t2-$t1:.1f} rc=$rc\")" | tee $OUT/timing.txt
tar czf $OUT/records.tgz --exclude=results/cache --exclude=results/bench results
ls -la $OUT
