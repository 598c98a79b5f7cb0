"""Is the results directory usable? Checked before the first job starts, so that a read-only, unwritable or full
results/ is named at once instead of failing every training run after its start-up (or, worse, mid-run)."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from ..units import MIB

# What one run writes at most on the test and H100 runs (logs, monitors, records: well under 50 MiB), with room.
MIN_FREE_MIB = 100


class UnusableResults(RuntimeError):
    """The results directory cannot take the workflow's outputs; the message names it and says why."""


def check_results_dir(results: Path, min_free_mib: int = MIN_FREE_MIB) -> None:
    """Create `results` if needed, write and remove a probe file in it, and require `min_free_mib` free."""
    results = Path(results)
    try:
        results.mkdir(parents=True, exist_ok=True)
        probe = results / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"zerosweep")
        probe.unlink()
    except OSError as error:
        reason = {errno.EROFS: "it is on a read-only filesystem", errno.EACCES: "no permission to write there",
                  errno.ENOSPC: "its filesystem is full", errno.EDQUOT: "the disk quota is exhausted"}.get(
            error.errno or 0, error.strerror or str(error))
        raise UnusableResults(f"results directory {results.resolve()}: cannot write to it ({reason})") from None
    free_mib = shutil.disk_usage(results).free / MIB
    if free_mib < min_free_mib:
        raise UnusableResults(f"results directory {results.resolve()}: only {free_mib:.1f} MiB free on its "
                              f"filesystem, runs need at least {min_free_mib} MiB; free space or make results/ a "
                              "link to a larger filesystem")
