"""The workshop's analyze_memory.py output, reproduced line for line (tests compare it with the real output).

This is the one place where psrecord's MiB values keep the workshop's "MB" label: it is the workshop's own
printed format. Everywhere else they are named and headed MiB.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def mode_text(modes: Sequence[float]) -> str:
    """The workshop's rendering of the modes: whole numbers joined by ', '."""
    return ", ".join(f"{mode:.0f}" for mode in modes)


def gpu_line(stem: str, index: int, peak: float, average: float, modes: Sequence[float]) -> str:
    return f"[{stem} - GPU {index}] Peak = {peak:.0f} MiB, Avg = {average:.2f} MiB, Mode = {mode_text(modes)} MiB"


def cpu_lines(peak: float, average: float, modes: Sequence[float]) -> list[str]:
    return [
        f"   Peak =    {peak:.0f} MB",
        f"   Average = {average:.2f} MB",
        f"   Mode =    {mode_text(modes)} MB",
    ]


def report(record: Mapping[str, Any]) -> str:
    """The memory part of a run record as the workshop's script prints it, for the job log."""
    lines: list[str] = []
    if record["gpu"]:
        lines += ["", "GPU Memory Usage"] + [gpu["workshop_line"] for gpu in record["gpu"]["gpus"]]
    for node in (record["cpu"] or {}).get("nodes", []):
        lines += ["", f"CPU Memory Usage ({node['file']})"] + node["workshop_lines"]
    return "\n".join(lines)
