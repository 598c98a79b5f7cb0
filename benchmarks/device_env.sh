# Sourced by the device scripts (from the repository root): the wheels the image lacks (.whl, carried), installed
# into /tmp/site once per machine. Only once: reinstalling on a warm machine rewrites deepspeed's op sources, and
# the next run that loads an op then recompiles it (seen on the H100: 46 s and 54 s of setup in the first run of
# a call, against 4-15 s for the runs after the ahead-of-time build).
stamp=$(ls -l .whl | md5sum | cut -d' ' -f1)
if [ "$(cat /tmp/site/.zerosweep-wheels 2>/dev/null)" != "$stamp" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || return 1
  echo "$stamp" > /tmp/site/.zerosweep-wheels
fi
export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1
# seed_results <records.tgz>: on a machine without results/runs (a fresh one), start from an earlier call's
# records; every file gets one mtime, so that Snakemake's mtime trigger reruns nothing that finished.
seed_results() {
  if [ -n "${1:-}" ] && [ ! -d results/runs ]; then
    tar xzf "$1" || return 1
    find results -exec touch -h {} +
  fi
}
# Hopper (H100 and H200 are both sm_90): DeepSpeed's JIT ops and inductor build for it alone.
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
# begin_call <name> [records.tgz]: what every runner does first. Each runner works in its own copy of the tree,
# /tmp/zerosweep-<name>, so that one runner's results never stand for another's on a warm machine (run ids do not
# carry the model: qwen2's workshop runs would otherwise find BLOOM's energy runs done). The code is refreshed
# every call with an old mtime (2000-01-01), so that it never looks newer than the records it made; results/ is
# seeded there on a fresh machine, results/cache shared by all, $OUT made, and the lock of a call cut off earlier removed.
begin_call() {
  local dir=/tmp/zerosweep-$1 seed=${2:-}
  [ -z "$seed" ] || seed=$(realpath "$seed") || return 1
  mkdir -p "$dir" || return 1
  tar --exclude=./results --exclude=./.snakemake --exclude=./.whl --mtime=2000-01-01 -cf - . | tar -xf - -C "$dir" \
    || return 1
  cd "$dir" || return 1
  seed_results "$seed" || return 1
  # the ops are built once per machine, whichever runner comes first (results/cache is outside every seed)
  mkdir -p results /tmp/zerosweep-cache && { [ -e results/cache ] || ln -s /tmp/zerosweep-cache results/cache; } \
    || return 1
  mkdir -p "$OUT"
  rm -rf .snakemake/locks
}
# timed_pipeline <timeout_s> <log> <target> [snakemake args...]: the resumable stage of every runner: Snakemake
# stopped by SIGINT before the device's 10-minute limit (it cancels the running job cleanly; the next call goes
# on), its errors shown, and "setup_s=... pipeline_s=... rc=..." appended to $OUT/timing.txt (setup from $t0).
# The limit is also cut to what is left of CALL_BUDGET_S (default 540) since $t0: a first call on a fresh machine
# spends about 90 s on wheels and ops before its pipeline starts (seen on an H100: the call then ran into the
# device's 600-s limit before it wrote its records, and they were lost).
CALL_BUDGET_S=${CALL_BUDGET_S:-540}
call_seconds_left() {
  echo $(( CALL_BUDGET_S - ($(date +%s) - ${t0%.*}) ))
}
timed_pipeline() {
  local limit=$1 log=$2 target=$3 t1 t2 rc left
  shift 3
  left=$(call_seconds_left)
  [ "$left" -lt "$limit" ] && limit=$left
  [ "$limit" -gt 30 ] || { echo "timed_pipeline: only ${limit}s of the call left"; return 1; }
  t1=$(date +%s.%N)
  timeout -s INT -k 30 "$limit" python3 -m snakemake "$target" --cores 16 --rerun-incomplete --keep-going "$@" \
    > "$log" 2>&1
  rc=$?
  grep -B2 -A12 -E "Error|Exception" "$log" | head -80
  t2=$(date +%s.%N)
  python3 -c "print(f\"setup_s={$t1-$t0:.1f} pipeline_s={$t2-$t1:.1f} rc=$rc\")" | tee -a "$OUT/timing.txt"
}
