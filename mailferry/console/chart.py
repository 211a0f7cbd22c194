"""The throughput chart: delivered and fetched messages per minute as SVG bar geometry.

Pure: counts in, rectangles out; the template draws them, so no JavaScript is needed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

WIDTH, HEIGHT = 720, 160
SERIES = ("fetched", "delivered")


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    series: str
    minute: str
    count: int


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    peak: int
    minutes: int
    totals: dict[str, int]
    width: int = WIDTH
    height: int = HEIGHT


def per_minute(events: Iterable[tuple[str, datetime]], now: datetime, minutes: int) -> Chart:
    """Bars for the ``minutes`` before ``now``, one pair (fetched, delivered) per minute."""
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
    counts: Counter[tuple[str, int]] = Counter()
    for name, at in events:
        slot = int((at - start).total_seconds() // 60)
        if name in SERIES and 0 <= slot < minutes:
            counts[name, slot] += 1
    peak = max(counts.values(), default=0)
    slot_width = WIDTH / minutes
    bar_width = slot_width / len(SERIES)
    bars = []
    for slot in range(minutes):
        label = (start + timedelta(minutes=slot)).strftime("%H:%M")
        for i, name in enumerate(SERIES):
            count = counts[name, slot]
            height = 0.0 if peak == 0 else (HEIGHT - 10) * count / peak
            bars.append(
                Bar(slot * slot_width + i * bar_width, HEIGHT - height, bar_width, height, name, label, count)
            )
    totals = {name: sum(c for (n, _), c in counts.items() if n == name) for name in SERIES}
    return Chart(bars, peak, minutes, totals)
