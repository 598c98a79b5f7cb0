#!/usr/bin/env bash
# On the device machine, after run_pipeline.sh in the same session: the hand-started bare Trainer run of
# each configuration (same ds_config.json as the pipeline's run), one JSON line each into $OUT/bare.jsonl.
set -u
export PYTHONPATH=/tmp/site:$PWD/scripts PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1
export TORCH_CUDA_ARCH_LIST=9.0 TORCH_EXTENSIONS_DIR=$PWD/results/cache/torch_extensions
mkdir -p $OUT
for run in ${RUNS:-base-g1n1 z0-offnone-nopin-g1n1 z1-offnone-nopin-g1n1 z2-offnone-nopin-g1n1 z3-offnone-nopin-g1n1 z1-offcpu-nopin-g1n1 z2-offcpu-nopin-g1n1 z2-offcpu-pin-g1n1 z3-offcpu-nopin-g1n1}; do
    ds=""; [ -f results/runs/$run/ds_config.json ] && ds="--ds-config results/runs/$run/ds_config.json"
    start=$(date +%s)
    python3 -m torch.distributed.run --nproc_per_node 1 benchmarks/h100/bare_trainer.py $ds --max-steps ${MAX_STEPS:-24} \
        > $OUT/bare_$run.log 2>&1
    echo "{\"run\": \"$run\", \"wall_s\": $(( $(date +%s) - start )), \"result\": $(grep '^{' $OUT/bare_$run.log | tail -1 || echo null)}" | tee -a $OUT/bare.jsonl
done
tar czf $OUT/bare_logs.tgz $OUT/bare_*.log 2>/dev/null; rm -f $OUT/bare_*.log
