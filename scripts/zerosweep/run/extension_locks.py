"""torch's JIT build lock (<TORCH_EXTENSIONS_DIR>/<op>/lock) stays behind when a compiling rank is killed, and
every later build of that op then waits on it forever: find such locks and remove them."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import psutil

# A lock no process here holds open, older than any
# compile seen (CPUAdam: ~55 s on H100), is stale. A holder on another node is invisible, hence the age.
STALE_LOCK_S = 300.0
LOCK_SCAN_S = 30.0


def locks_held_here() -> set[str]:
    held: set[str] = set()
    for process in psutil.process_iter():
        try:
            held.update(entry.path for entry in process.open_files() if entry.path.endswith("/lock"))
        except psutil.Error:
            continue
    return held


def clear_stale_extension_locks(extensions_dir: Path, max_age_s: float = STALE_LOCK_S) -> list[str]:
    """Remove build locks of killed compiles (see STALE_LOCK_S); returns what was removed."""
    candidates = [lock for lock in extensions_dir.glob("*/lock")
                  if time.time() - lock.stat().st_mtime > max_age_s]
    if not candidates:
        return []
    held = locks_held_here()
    removed = []
    for lock in candidates:
        if str(lock.resolve()) in held or str(lock) in held:
            continue
        try:
            lock.unlink()
        except FileNotFoundError:
            continue
        print(f"[zerosweep] removed stale torch extension lock {lock}", file=sys.stderr, flush=True)
        removed.append(str(lock))
    return removed
