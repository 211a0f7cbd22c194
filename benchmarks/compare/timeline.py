"""When each stage of a mailferry row finished, from the audit events it wrote.

The row's wall time says how long the whole flow took, not which stage held it up. Every
stage writes audit events with their time (``fetched``, ``routed``, ``delivered``), so
reading the audit topic before the broker stops shows when each stage handled its first,
middle and last message, counted from the moment the corpus appeared in the source.
The ``fetched`` events are also given per mailbox (first/last): a mailbox whose first
fetch comes late was waiting for its poll timer, not working.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from mailferry.audit import read_events
from mailferry.config.kafka import EmbeddedKafka
from mailferry.kafka.clients import new_consumer
from mailferry.kafka.embedded import EmbeddedBroker

STAGES = ("fetched", "routed", "delivered")
Times = dict[str, list[float]]


def stage_times(state_dir: Path, topic: str, began: float) -> tuple[Times, Times]:
    """Seconds after ``began`` of every fetched/routed/delivered event, sorted per event, and
    of the ``fetched`` events per mailbox."""
    broker = EmbeddedBroker(EmbeddedKafka(), state_dir / "kafka")
    servers = [broker.address]
    consumer = new_consumer(broker.client_config(), servers, topics=[topic], consumer_timeout_ms=3000)
    times: Times = {name: [] for name in STAGES}
    mailboxes: Times = {}
    try:
        for event in (e for record in consumer for e in read_events(record)):
            at: datetime = event["at"]
            if event["event"] in times and at.timestamp() >= began:
                times[event["event"]].append(at.timestamp() - began)
                if event["event"] == "fetched":
                    mailboxes.setdefault(event["mailbox_id"] or "?", []).append(at.timestamp() - began)
    finally:
        consumer.close()
    return {name: sorted(v) for name, v in times.items()}, {name: sorted(v) for name, v in mailboxes.items()}


def describe(times: Times, mailboxes: Times | None = None) -> str:
    """'fetched 0.4/1.1/2.0 s, routed …' (first/median/last); then 'fetched per mailbox
    (first/last): a 0.0/1.2 s, …'."""
    parts = []
    for name, values in times.items():
        if values:
            parts.append(f"{name} {values[0]:.1f}/{values[len(values) // 2]:.1f}/{values[-1]:.1f} s")
    text = "stages first/median/last: " + ", ".join(parts) if parts else "no audit events"
    if mailboxes:
        boxes = ", ".join(f"{name} {v[0]:.1f}/{v[-1]:.1f} s" for name, v in sorted(mailboxes.items()))
        text += f"; fetched per mailbox first/last: {boxes}"
    return text
