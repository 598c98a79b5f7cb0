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
t1=$(date +%s.%N)
left=${TUNE_TIMEOUT_S:-520}
for study in tune_cmp_in_process tune_cmp_separate; do
  began=$(date +%s)
  timeout -s INT -k 30 "$left" python3 -m snakemake "results/tune/$study/recommendation.md" --cores 16 \
    --rerun-incomplete --keep-going "$@" "${CONFIGS[@]}" > "$OUT/snakemake_$study.txt" 2>&1
  echo "$study rc=$? s=$(( $(date +%s) - began ))" | tee -a "$OUT/timing.txt"
  grep -B2 -A12 -E "Error|Exception" "$OUT/snakemake_$study.txt" | head -40
  [ -d "results/tune/$study" ] && cp -r "results/tune/$study" "$OUT/"
  left=$(( left - ($(date +%s) - began) ))
  [ "$left" -gt 60 ] || break
done
t2=$(date +%s.%N)
python3 -c "print(f\"setup_s={$t1-$t0:.1f} pipeline_s={$t2-$t1:.1f}\")" | tee -a "$OUT/timing.txt"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee -a "$OUT/timing.txt"
python3 - > "$OUT/compare.md" <<'PY'
import json
from pathlib import Path

def searches(study):
    return {path.stem: json.loads(path.read_text()) for path in sorted(Path(f"results/tune/{study}/search").glob("*.json"))}

fast, reference = searches("tune_cmp_in_process"), searches("tune_cmp_separate")
print("| point | in-process boundary | found by | probes (in-process + ordinary) | device-s | "
      "separate-process boundary | probes | device-s | same |")
print("|---|---|---|---|---|---|---|---|---|")
for point in sorted(set(fast) | set(reference)):
    a, b = fast.get(point, {}), reference.get(point, {})
    print(f"| {point} | {a.get('max_fit')} (OOM {a.get('first_oom')}) | {a.get('boundary_found_by')} | "
          f"{a.get('probes_in_process')} + {a.get('probes_separate_process')} | {a.get('device_seconds')} | "
          f"{b.get('max_fit')} (OOM {b.get('first_oom')}) | {b.get('probes_separate_process')} | "
          f"{b.get('device_seconds')} | {a and b and a['max_fit'] == b['max_fit']} |")
for name, found in (("in-process", fast), ("separate-process", reference)):
    seconds = [s["device_seconds"] for s in found.values()]
    if seconds and None not in seconds:
        print(f"\n{name}: {sum(seconds):.0f} device-s over {len(seconds)} configurations, "
              f"{sum(seconds) / len(seconds) / 60:.2f} GPU-min each")
PY
cat "$OUT/compare.md"
tar czf "$OUT/records.tgz" --exclude=results/cache results
ls -la "$OUT"
