#!/usr/bin/env bash
# On a device machine: one short ZeRO-2 run through the launcher (monitors restricted to the run's GPU, rank map,
# OMP threads, outcome), and a 2-GPU run on a 1-GPU host, which must fail before launching.
set -u
source benchmarks/device_env.sh || exit 1
export PYTHONPATH=/tmp/site:$PWD/scripts PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=9.0
export TORCH_EXTENSIONS_DIR=$PWD/results/cache/torch_extensions
nvidia-smi -L
spec() {  # point json, run id
python3 - "$1" "$2" <<'PY'
import json, sys, yaml
sys.path.insert(0, "scripts")
from zerosweep.plan.matrix import build_plan
config = yaml.safe_load(open("workflow_config.yaml"))
config["training"]["max_steps"] = 8
config["studies"] = {"smoke": {"title": "smoke", "table": "comparison", **json.loads(sys.argv[1])}}
config["build_studies"] = ["smoke"]
plan = build_plan(config)
print(plan.runs[sys.argv[2]].to_json())
PY
}
for run in z2-offnone-nopin-g1n1:'{"zero_stage":[2]}' z2-offnone-nopin-g2n1:'{"zero_stage":[2],"gpus_per_node":[2]}'; do
  id=${run%%:*}; point=${run#*:}
  timeout 300 python3 -m zerosweep launch --spec-json "$(spec "$point" "$id")" --run-dir results/runs/$id --cpus-per-task 16
  echo "== $id exit $?"
  python3 - results/runs/$id <<'PY'
import json, sys, pathlib
d = pathlib.Path(sys.argv[1])
s = json.loads((d / "status.json").read_text())
print({k: s.get(k) for k in ("status", "outcome", "error", "oom_evidence")})
for n in s["nodes"]:
    print("node", n.get("node_rank"), "gpus", n.get("gpus"), "problem", n.get("gpu_problem"), "monitors", n.get("monitors"),
          "omp", (n.get("environment_variables") or {}).get("OMP_NUM_THREADS"), "oomk", n.get("oom_kills_before"), n.get("oom_kills_after"))
if (d / "env.json").exists():
    print("rank_gpus", json.loads((d / "env.json").read_text()).get("rank_gpus"))
for f in sorted((d / "monitor").glob("*.csv")):
    print(f.name, f.read_text().splitlines()[:3])
PY
done
mkdir -p $OUT; tar czf $OUT/smoke_runs.tgz results/runs
