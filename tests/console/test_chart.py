"""The throughput chart's geometry (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailferry.console.chart import HEIGHT, per_minute

NOW = datetime(2026, 12, 3, 10, 30, 20, tzinfo=UTC)


def test_counts_per_minute_scaled_to_the_peak() -> None:
    events = [("delivered", NOW - timedelta(seconds=5))] * 4 + [
        ("fetched", NOW - timedelta(minutes=2)),
        ("delivered", NOW - timedelta(minutes=2)),
        ("routed", NOW),  # not a series of the chart
        ("delivered", NOW - timedelta(minutes=10)),  # before the window
    ]
    chart = per_minute(events, NOW, minutes=5)
    assert chart.totals == {"fetched": 1, "delivered": 5} and chart.peak == 4
    tallest = [bar for bar in chart.bars if bar.count == 4]
    assert [(b.series, b.minute) for b in tallest] == [("delivered", "10:30")]
    assert tallest[0].height == HEIGHT - 10 and tallest[0].y == 10
    quarter = next(b for b in chart.bars if b.minute == "10:28" and b.series == "delivered")
    assert quarter.height == (HEIGHT - 10) / 4
    assert len(chart.bars) == 10 and chart.bars[0].minute == "10:26"


def test_an_empty_window_draws_no_bar() -> None:
    chart = per_minute([], NOW, minutes=60)
    assert chart.peak == 0 and all(bar.height == 0 for bar in chart.bars)
