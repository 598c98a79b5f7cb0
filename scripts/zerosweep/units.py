"""Units shared by every layer: one definition of each, so a MiB is the same number everywhere."""

from __future__ import annotations

from typing import Final

MIB: Final = 2**20  # bytes in a mebibyte; nvidia-smi, NVML, psrecord and torch peaks are reported in MiB
GIB: Final = 2**30
