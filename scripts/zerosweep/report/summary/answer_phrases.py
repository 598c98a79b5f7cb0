"""Phrases of summary.md: numbers, steady figures with their interval, a pair's verdict in words (only what the
test supports), links to the tune studies' recommendations."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeGuard

from ... import records as f
from ..interval_text import interval_text
from ..statistics import Verdict


def fmt_mib(value: float) -> str:
    return f"{value:,.0f} MiB"


def fmt_pct(fraction: float, sign: bool = False) -> str:
    return f"{100 * fraction:{'+' if sign else ''}.1f} %"


def fmt_change(old: float, new: float) -> str:
    return fmt_pct((new - old) / old, sign=True)


def is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def steady_text(row: dict[str, Any]) -> str:
    """'54.1 [53.3, 58.4]' where the row has an interval (report/interval_text), else the plain figure."""
    value, low, high = row[f.STEADY_SAMPLES_PER_SECOND], row.get(f.STEADY_SAMPLES_PER_SECOND_LOW), \
        row.get(f.STEADY_SAMPLES_PER_SECOND_HIGH)
    if is_number(low) and is_number(high):
        return interval_text(value, low, high, digits=1)
    return f"{value:.2f}"


def verdict_phrase(verdict: Verdict | None, what: str) -> str | None:
    """A pair's verdict (answers.pair_verdict) in words, bold only where the test found a difference, followed by
    the change with its interval, the ratio's estimator and the test as `Verdict.text` writes them."""
    if verdict is None:
        return None
    detail = verdict.text().removeprefix(verdict.verdict)  # ': +12.3 % [+8.0 %, +16.9 %] (estimator; test)'
    if verdict.verdict == "within noise":
        return f"{what} within the noise{detail}"
    if verdict.verdict == "untested":
        return f"{what} difference untested{detail}"
    return f"**{verdict.verdict}**{detail}"


def recommendations(paths: Sequence[Path], out: Path | None) -> list[str]:
    """One link per built tune study's recommendation (results/tune/<study>/recommendation.md), relative to
    summary.md so the link works wherever results/ is copied."""
    lines = []
    for path in sorted(paths):
        study = path.parent.name
        target = path if out is None else Path(os.path.relpath(path, out.parent))
        lines.append(f"- Tune study `{study}`: [recommendation]({target.as_posix()})")
    return lines
