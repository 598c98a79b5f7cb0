"""Which GPUs a run uses: the node's GPUs from its visible set, a lease of free GPUs for runs started outside
SLURM, and the rank -> GPU map that ties every rank to one physical GPU (by UUID: CUDA's index within a visible
set is not NVML's index on the host)."""

from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

LEASE_POLL_S = 2.0


class TooFewGpus(RuntimeError):
    """The run needs more GPUs than the host has: it can never start here."""


def visible_entries(visible: str | None) -> list[str] | None:
    """CUDA_VISIBLE_DEVICES as a list (indices or UUIDs); None when unset, [] when set to nothing."""
    if visible is None:
        return None
    return [item.strip() for item in visible.split(",") if item.strip()]


def resolve(entries: Sequence[str], inventory: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The inventory entries (NVML index, UUID, name, ...) of CUDA_VISIBLE_DEVICES-style entries, in their order.
    Indices mean NVML's order, which is CUDA's too: the launcher sets CUDA_DEVICE_ORDER=PCI_BUS_ID."""
    by_index = {str(gpu["index"]): gpu for gpu in inventory}
    by_uuid = {str(gpu["uuid"]): gpu for gpu in inventory}
    resolved = []
    for entry in entries:
        gpu = by_index.get(entry) or by_uuid.get(entry) or next(
            (gpu for uuid, gpu in by_uuid.items() if entry.startswith("GPU-") and uuid.startswith(entry)), None)
        if gpu is None:
            raise ValueError(f"CUDA_VISIBLE_DEVICES entry {entry!r} matches no GPU of this host "
                             f"(NVML sees {sorted(by_index)})")
        resolved.append(dict(gpu))
    return resolved


def node_gpus(visible: str | None, ranks: int, inventory: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The GPUs this node's ranks use: torchrun's local rank r takes cuda:r, the r-th visible GPU."""
    entries = visible_entries(visible)
    if entries is None:
        entries = [str(gpu["index"]) for gpu in inventory]
    if len(entries) < ranks:
        raise TooFewGpus(f"{ranks} rank(s) on this node need {ranks} GPU(s), "
                         f"{len(entries)} visible ({visible if visible is not None else 'all of the host'})")
    return resolve(entries[:ranks], inventory)


@dataclass
class GpuLease:
    """GPUs held for one run by exclusive locks under `lock_dir`, so that two runs started outside SLURM
    (Snakemake's local executor, several jobs at once) never share a GPU. Released when the process ends."""

    lock_dir: Path
    gpus: list[str] = field(default_factory=list)
    _handles: list[IO[str]] = field(default_factory=list, repr=False)

    def acquire(self, needed: int, candidates: Sequence[str], *, run_id: str, wait: bool = True) -> list[str]:
        if needed > len(candidates):
            raise TooFewGpus(f"needs {needed} GPU(s); this host has {len(candidates)} "
                             f"({','.join(candidates) or 'none'} visible)")
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        announced = False
        while True:
            for candidate in candidates:
                if candidate in self.gpus:
                    continue
                handle = open(self.lock_dir / f"{candidate}.lock", "a+", encoding="utf-8")  # noqa: SIM115 (held)
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    handle.close()
                    continue
                handle.seek(0)
                handle.truncate()
                handle.write(f"{run_id} pid {os.getpid()}\n")
                handle.flush()
                self._handles.append(handle)
                self.gpus.append(candidate)
                if len(self.gpus) == needed:
                    return list(self.gpus)
            if not wait:
                taken = len(self.gpus)
                self.release()
                raise TimeoutError(f"run {run_id}: {needed} GPU(s) needed, {taken} free")
            if not announced:
                print(f"[zerosweep] run {run_id}: waiting for {needed - len(self.gpus)} more free GPU(s) of "
                      f"{','.join(candidates)} (held by other runs; locks in {self.lock_dir})",
                      file=sys.stderr, flush=True)
                announced = True
            time.sleep(LEASE_POLL_S)

    def release(self) -> None:
        for handle in self._handles:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
        self._handles.clear()
        self.gpus.clear()


def rank_gpu_map(rank_records: Sequence[Mapping[str, Any]],
                 nodes: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One entry per rank: rank, node rank and tag, host, GPU UUID and the host's NVML index for it.
    `nodes` are env.json's node entries (each with its host's NVML inventory under gpu.gpus)."""
    inventory_of: dict[str, list[Mapping[str, Any]]] = {}
    for node in nodes:
        gpus = (node.get("gpu") or {}).get("gpus") or []
        for key in (node.get("tag"), node.get("host")):
            if key is not None:
                inventory_of.setdefault(str(key), list(gpus))
    mapped = []
    for record in sorted(rank_records, key=lambda record: int(record.get("rank", 0))):
        uuid = record.get("gpu_uuid")
        inventory = inventory_of.get(str(record.get("node_tag"))) or inventory_of.get(str(record.get("host"))) or []
        index = next((int(gpu["index"]) for gpu in inventory if uuid and gpu.get("uuid") == uuid), None)
        mapped.append({"rank": record.get("rank"), "node_rank": record.get("node_rank"),
                       "node_tag": record.get("node_tag"), "host": record.get("host"), "gpu_uuid": uuid,
                       "gpu_index": index, "gpu_name": record.get("gpu_name")})
    return mapped
