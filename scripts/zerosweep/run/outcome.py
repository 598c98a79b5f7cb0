"""How a run ended: ok, oom, interrupted or failed, from the evidence the ranks, torchrun and srun left."""

from __future__ import annotations

import re
from pathlib import Path

# Evidence of running out of memory, in torchrun's logs or srun's stderr.
OOM_LOG_PATTERNS = (
    r"CUDA out of memory",
    r"OutOfMemoryError",
    r"\bMemoryError\b",
    r"can't allocate memory",
    r"Cannot allocate memory",
    r"not enough memory",
    r"oom[-_ ]kill",
)
SRUN_OOM_EXIT = 253  # srun(1): "The value 253 is reserved for out-of-memory errors"
# torchrun's failure summary: a rank killed by SIGKILL is, outside our own shutdown, the kernel OOM killer.
ROOT_CAUSE_SIGKILL = re.compile(r"Root Cause \(first observed failure\):.*?exitcode\s*:\s*-9\b", re.DOTALL)


def oom_evidence(run_dir: Path) -> list[str]:
    evidence = [f"records/{path.name}" for path in sorted((run_dir / "records").glob("oom_rank*.json"))]
    for log in sorted(run_dir.glob("train*.log")) + sorted(run_dir.glob("srun.log")):
        text = log.read_text(encoding="utf-8", errors="replace")
        for pattern in OOM_LOG_PATTERNS:
            match = re.search(pattern, text)
            if match:
                evidence.append(f"{log.name}: {match.group(0)!r}")
        if ROOT_CAUSE_SIGKILL.search(text):
            evidence.append(f"{log.name}: a rank was killed by SIGKILL (exitcode -9)")
    return evidence
