"""Figures as a store manager reads them: durations in minutes and hours, shares in percent, `-` for none."""

from __future__ import annotations

import math
from typing import Any

MISSING = "-"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def duration(seconds: float | None) -> str:
    """1163 -> '19 min 23 s'; 5400 -> '1 h 30 min'; 200000 -> '2 d 7 h'; None -> '-'."""
    if _missing(seconds):
        return MISSING
    s = round(float(seconds))  # type: ignore[arg-type]
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min" + (f" {s % 60} s" if s % 60 else "")
    if s < 86400:
        return f"{s // 3600} h" + (f" {s % 3600 // 60} min" if s % 3600 // 60 else "")
    return f"{s // 86400} d" + (f" {s % 86400 // 3600} h" if s % 86400 // 3600 else "")


def percent(share: float | None) -> str:
    """0.2634 -> '26%'; 0.0004 -> '0.04%'; None -> '-'."""
    if _missing(share):
        return MISSING
    value = 100 * float(share)  # type: ignore[arg-type]
    return f"{value:.0f}%" if value >= 10 or value == 0 else f"{value:.2g}%"


def text(value: Any) -> str:
    """Any cell: '-' for missing, 'yes'/'no' for booleans, else str()."""
    if _missing(value):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
