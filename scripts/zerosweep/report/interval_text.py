"""How an estimate with its interval is written, everywhere a person reads one (tables, plots' captions,
summary.md, the tune recommendation): `54.1 [53.3, 58.4]`, the interval's ends as they are.

A `± half-width` would read as a symmetric interval: for a min-max of 53.25-58.39 around a median of 54.1 it
shows 51.5-56.7, neither end of the data. The ends are printed instead, at the figure's precision.
"""

from __future__ import annotations

import math
from typing import Any


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def interval_text(value: float, low: float | None = None, high: float | None = None, digits: int = 1,
                  suffix: str = "") -> str:
    """'54.1 [53.3, 58.4]' (`suffix` after each number, e.g. ' %'); the plain figure where an end is missing."""
    text = f"{value:.{digits}f}{suffix}"
    if not (_number(low) and _number(high)):
        return text
    return f"{text} [{low:.{digits}f}{suffix}, {high:.{digits}f}{suffix}]"


def change_interval_text(ratio: float, low: float | None = None, high: float | None = None) -> str:
    """A ratio as a signed change with its interval: '+12.3 % [+8.0 %, +16.9 %]'."""
    text = f"{100 * (ratio - 1):+.1f} %"
    if not (_number(low) and _number(high)):
        return text
    return f"{text} [{100 * (low - 1):+.1f} %, {100 * (high - 1):+.1f} %]"  # type: ignore[operator]
