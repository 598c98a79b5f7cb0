#!/usr/bin/env bash
# On the device machine (one H100):
#   bash benchmarks/h100/run_method.sh fidelity [method_bench.py options]    pipeline vs bare Trainer
#   bash benchmarks/h100/run_method.sh overhead [method_bench.py options]    monitors on/off, logging_steps 1/500
# Carry .whl. Builds DeepSpeed's ops first if this machine has none (so no run's timings include the compiler).
# Returns $OUT/<kind>.tgz (per-run steps.csv, logs, runs.jsonl). A call cut by BENCH_TIMEOUT_S keeps what
# finished; the same command again resumes (results/bench stays on the warm machine). On a fresh machine,
# BENCH_SEED=<a returned <kind>.tgz, carried> unpacks it first, so the runs it holds are not run again.
set -u
kind=$1; shift
source benchmarks/device_env.sh || exit 1
export TORCH_CUDA_ARCH_LIST=9.0 TORCH_EXTENSIONS_DIR=$PWD/results/cache/torch_extensions
python3 -c "import scipy" || { echo "scipy is missing on this image: add its wheel to .whl (benchmarks/h100/README.md)"; exit 1; }
mkdir -p $OUT results/bench
if [ -n "${BENCH_SEED:-}" ] && [ ! -d results/bench/$kind ]; then tar xzf "$BENCH_SEED" -C results/bench || exit 1; fi
for op in ${BENCH_OPS:-fused_adam cpu_adam}; do  # what rule build_op does (BENCH_OPS: only those the runs load)
  [ -f results/cache/ops/$op.json ] || PYTHONPATH=scripts:$PYTHONPATH python3 -m zerosweep build-ops --device cuda \
    --extensions-dir "$TORCH_EXTENSIONS_DIR" --ops $op --out results/cache/ops/$op.json >> $OUT/build_ops.log 2>&1 \
    || { cat $OUT/build_ops.log; exit 1; }
done
timeout -k 20 ${BENCH_TIMEOUT_S:-500} python3 benchmarks/h100/method_bench.py "$kind" --out results/bench/$kind "$@"
echo "method_bench rc=$?"
tar czf $OUT/$kind.tgz -C results/bench $kind
ls -la $OUT
