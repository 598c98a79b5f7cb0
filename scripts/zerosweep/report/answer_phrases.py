"""Phrases of summary.md: numbers, steady figures with their interval, a table verdict in words (only what the
test supports), links to the tune studies' recommendations."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeGuard

from .. import records as f


def fmt_mib(value: float) -> str:
    return f"{value:,.0f} MiB"


def fmt_pct(fraction: float, sign: bool = False) -> str:
    return f"{100 * fraction:{'+' if sign else ''}.1f} %"


def fmt_change(old: float, new: float) -> str:
    return fmt_pct((new - old) / old, sign=True)


def is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def steady_text(row: dict[str, Any]) -> str:
    """'42.7 ± 1.3' where the row has an interval, else the plain figure."""
    value, low, high = row[f.STEADY_SAMPLES_PER_SECOND], row.get(f.STEADY_SAMPLES_PER_SECOND_LOW), \
        row.get(f.STEADY_SAMPLES_PER_SECOND_HIGH)
    if is_number(low) and is_number(high):
        return f"{value:.1f} ± {(high - low) / 2:.1f}"
    return f"{value:.2f}"


def verdict_phrase(row: dict[str, Any], what: str) -> str | None:
    """The table's verdict of `row` against its reference row, with the difference and its interval; words like
    "faster" or "more memory" only where the test found a difference (table notes name the test)."""
    names = {"throughput": (f.THROUGHPUT_VERDICT, f.THROUGHPUT_RATIO, f.THROUGHPUT_RATIO_LOW, f.THROUGHPUT_RATIO_HIGH),
             "memory": (f.MEMORY_VERDICT, f.MEMORY_RATIO, f.MEMORY_RATIO_LOW, f.MEMORY_RATIO_HIGH)}[what]
    verdict, ratio, low, high = (row.get(name) for name in names)
    if verdict is None or verdict == "reference":
        return None
    difference = "" if not is_number(ratio) else f"{fmt_pct(ratio - 1, sign=True)}"
    # An untested row's interval, where it has one, is a single run's within-run interval (report/statistics).
    label = "within-run 95 % CI" if verdict == "untested" else "95 % CI"
    interval = "" if not (is_number(low) and is_number(high)) else \
        f", {label} {fmt_pct(low - 1, sign=True)} to {fmt_pct(high - 1, sign=True)}"
    detail = f" ({difference}{interval})" if difference else ""
    if verdict == "within noise":
        return f"{what} within the noise{detail}"
    if verdict == "untested":
        return f"{what} difference untested (a verdict needs >= 2 runs per row){detail}"
    return f"**{verdict}**{detail}"


def recommendations(paths: Sequence[Path], out: Path | None) -> list[str]:
    """One link per built tune study's recommendation (results/tune/<study>/recommendation.md), relative to
    summary.md so the link works wherever results/ is copied."""
    lines = []
    for path in sorted(paths):
        study = path.parent.name
        target = path if out is None else Path(os.path.relpath(path, out.parent))
        lines.append(f"- Tune study `{study}`: [recommendation]({target.as_posix()})")
    return lines
