"""Which GPU samples belong to a run: the GPUs its ranks used, per node (monitor file tag), as NVML indices.

Monitor logs may hold other GPUs (records made before the monitors were restricted log every GPU of the host,
and each emulated node logged all of them): the parser keeps only the run's own. The map comes from env.json's
`rank_gpus` (rank -> GPU UUID and NVML index), or, for older records, from the ranks' torch records (GPU UUID)
and each node's NVML inventory in env.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...jsonio import read_json_or_none
from ...run.gpus import rank_gpu_map


@dataclass(frozen=True)
class RunGpus:
    by_tag: dict[str, frozenset[int]]  # monitor file tag (node tag) -> NVML indices of the run's ranks there
    emulated_nodes: bool  # several nodes emulated on one host (launch mode local-nodes)
    source: str  # env.json rank_gpus | rank records + inventory

    def keeps(self, tag: str, index: int) -> bool:
        """Whether a sample of GPU `index` in the monitor file of `tag` is the run's. A tag no rank names
        (no map could be made) keeps everything: nothing better is known."""
        own = self.by_tag.get(tag)
        return own is None or index in own


def run_gpus(run_dir: Path) -> RunGpus | None:
    """None when nothing ties ranks to GPUs (CPU runs, or no rank recorded its GPU)."""
    env: dict[str, Any] = read_json_or_none(run_dir / "env.json") or {}
    status: dict[str, Any] = read_json_or_none(run_dir / "status.json") or {}
    mapped = env.get("rank_gpus")
    source = "env.json rank_gpus"
    if not mapped:
        ranks = [record for path in sorted((run_dir / "monitor").glob("torch_memory_rank*.json"))
                 if (record := read_json_or_none(path))]
        mapped = rank_gpu_map(ranks, env.get("nodes") or [])
        source = "rank records + inventory"
    by_tag: dict[str, set[int]] = {}
    for entry in mapped:
        if entry.get("gpu_index") is None:
            continue
        by_tag.setdefault(str(entry.get("node_tag") or entry.get("host")), set()).add(int(entry["gpu_index"]))
    if not by_tag:
        return None
    return RunGpus({tag: frozenset(indices) for tag, indices in by_tag.items()},
                   emulated_nodes=status.get("launch_mode") == "local-nodes", source=source)
