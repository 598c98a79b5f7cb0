"""A run's memory peak per device: which monitor's figure counts, in which order, for every reader (the tune
search, the study tables' memory verdict, `compare`).

On a GPU the exact NVML peak comes first (fast samples: it catches spikes between nvidia-smi's 5 s samples), then
nvidia-smi's; torch's reserved peak is the last resort (it misses what lies outside the caching allocator: the
CUDA context, NCCL's buffers). On CPU ranks the device is the host: the largest rank's resident peak
(getrusage). Figures from different monitors are not compared with each other: a table or comparison takes the
first source in the order that every one of its runs has (`shared_peak_source`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# (summary.json section, key) -> what the figure is, best first
NVML_PEAK = ("nvml", "peak_mib")
NVIDIA_SMI_PEAK = ("gpu", "peak_mib")
TORCH_RESERVED_PEAK = ("torch", "max_reserved_mib")
RANK_RSS_PEAK = ("torch", "max_rss_mib")
PEAK_LABELS = {
    NVML_PEAK: "exact peak (NVML)",
    NVIDIA_SMI_PEAK: "peak GPU memory (nvidia-smi)",
    TORCH_RESERVED_PEAK: "torch's reserved peak",
    RANK_RSS_PEAK: "largest rank's resident peak (getrusage)",
}
# What the GPU monitors measured: the study tables' memory verdicts use these only (their CPU memory is a column
# of its own), so a CPU run's row has no memory verdict.
GPU_MONITORS = (NVML_PEAK, NVIDIA_SMI_PEAK)
DEVICE_ORDER = {"cuda": (*GPU_MONITORS, TORCH_RESERVED_PEAK), "cpu": (RANK_RSS_PEAK,)}

Source = tuple[str, str]


@dataclass(frozen=True)
class RunPeak:
    mib: float
    source: Source

    @property
    def name(self) -> str:
        """'nvml.peak_mib': the section and key it was read from."""
        return ".".join(self.source)

    @property
    def label(self) -> str:
        return PEAK_LABELS[self.source]


def device_order(record: Mapping[str, Any]) -> tuple[Source, ...]:
    return DEVICE_ORDER["cuda" if (record.get("setup") or {}).get("device") == "cuda" else "cpu"]


def peak_from(record: Mapping[str, Any], source: Source) -> float | None:
    section = record.get(source[0])
    value = section.get(source[1]) if isinstance(section, Mapping) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def run_peak(record: Mapping[str, Any], order: Iterable[Source] | None = None) -> RunPeak | None:
    """What one device of the run held at most: the first source in `order` (default: the device's) the record
    has; None when it has none."""
    for source in device_order(record) if order is None else order:
        value = peak_from(record, source)
        if value is not None:
            return RunPeak(value, source)
    return None


def shared_peak_source(records: Iterable[Mapping[str, Any]], order: Iterable[Source] = GPU_MONITORS) -> Source | None:
    """The first source in `order` that every record with any of them has (so that their peaks compare; a record
    with none, e.g. a CPU run among GPU monitors, stays without a figure); None when no source is shared."""
    order = tuple(order)
    runs = [run for run in records if run_peak(run, order) is not None]
    if not runs:
        return None
    return next((source for source in order if all(peak_from(run, source) is not None for run in runs)), None)
