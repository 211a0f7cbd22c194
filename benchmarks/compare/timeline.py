"""When each stage of a mailferry row finished, from the audit events it wrote.

The row's wall time says how long the whole flow took, not which stage held it up. Every
stage writes audit events with their time (``fetched``, ``routed``, ``delivered``), so
reading the audit topic before the broker stops shows when each stage handled its first,
middle and last message, counted from the moment the corpus appeared in the source.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from mailferry.audit import read_events
from mailferry.config.kafka import EmbeddedKafka
from mailferry.kafka.clients import new_consumer
from mailferry.kafka.embedded import EmbeddedBroker

STAGES = ("fetched", "routed", "delivered")


def stage_times(state_dir: Path, topic: str, began: float) -> dict[str, list[float]]:
    """Seconds after ``began`` of every fetched/routed/delivered event, sorted per event."""
    broker = EmbeddedBroker(EmbeddedKafka(), state_dir / "kafka")
    servers = [broker.address]
    consumer = new_consumer(broker.client_config(), servers, topics=[topic], consumer_timeout_ms=3000)
    times: dict[str, list[float]] = {name: [] for name in STAGES}
    try:
        for event in (e for record in consumer for e in read_events(record)):
            at: datetime = event["at"]
            if event["event"] in times and at.timestamp() >= began:
                times[event["event"]].append(at.timestamp() - began)
    finally:
        consumer.close()
    return {name: sorted(values) for name, values in times.items()}


def describe(times: dict[str, list[float]]) -> str:
    """'fetched 0.4/1.1/2.0 s, routed …' (first/median/last)."""
    parts = []
    for name, values in times.items():
        if values:
            parts.append(f"{name} {values[0]:.1f}/{values[len(values) // 2]:.1f}/{values[-1]:.1f} s")
    return "stages first/median/last: " + ", ".join(parts) if parts else "no audit events"
