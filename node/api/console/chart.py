"""The inbox's chart of activity per day, as shapes an SVG template draws (no script needed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Bar", "Chart", "activity_chart"]

WIDTH, HEIGHT = 700, 160
"""The drawing area in SVG units (the SVG scales to the page's width)."""
AXIS = 18
"""Room under the bars for the day labels."""
SERIES = ("completed", "failed", "hits")
"""The bars of each day, left to right: sessions completed, sessions failed, new hits."""


@dataclass(frozen=True)
class Bar:
    """One bar: where it is, which series (its CSS class) and what it counts (its tooltip)."""

    x: float
    y: float
    width: float
    height: float
    series: str
    title: str


@dataclass(frozen=True)
class Chart:
    """Bars, day labels under them, the largest count (the scale) and the data as rows."""

    bars: list[Bar]
    labels: list[tuple[float, str]]
    peak: int
    rows: list[dict[str, Any]]
    width: int = WIDTH
    height: int = HEIGHT


def activity_chart(days: list[dict[str, Any]]) -> Chart:
    """Bars for `days` (oldest first: `day`, `completed`, `failed`, `hits` each)."""
    peak = max((day[series] for day in days for series in SERIES), default=0)
    slot = WIDTH / max(len(days), 1)
    bar = slot * 0.8 / len(SERIES)
    usable = HEIGHT - AXIS
    bars, labels = [], []
    for n, day in enumerate(days):
        left = n * slot + slot * 0.1
        for k, series in enumerate(SERIES):
            count = day[series]
            height = usable * count / peak if peak else 0.0
            noun = "new hits" if series == "hits" else f"sessions {series}"
            bars.append(
                Bar(
                    x=round(left + k * bar, 1),
                    y=round(usable - height, 1),
                    width=round(bar, 1),
                    height=round(height, 1),
                    series=series,
                    title=f"{day['day']}: {count} {noun}",
                )
            )
        labels.append((round(n * slot + slot / 2, 1), day["day"][5:]))  # MM-DD
    return Chart(bars, labels, peak, days)
