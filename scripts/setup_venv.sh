#!/usr/bin/env bash
# Create .venv with zerosweep and its dependencies, CPU build of torch (offline demo, tests, CI).
# Idempotent: a second call only checks. On a GPU cluster install your site's torch first instead.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${ZEROSWEEP_VENV:-$repo/.venv}"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
# torch first and pinned: an unpinned torch (asked for by deepspeed/accelerate) would pull a multi-GB CUDA build.
"$venv/bin/pip" install -q --disable-pip-version-check "torch==2.13.0"
"$venv/bin/pip" install -q --disable-pip-version-check -e "$repo[test]" "torch==2.13.0"
echo "zerosweep environment ready: $venv"
