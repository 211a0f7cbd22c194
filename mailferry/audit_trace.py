"""``mailferry audit trace``: every event of one message, from the retained audit topic.

A message is named by its Message-ID, a dedup key, its content hash, a delivery id or a
dead-letter id. With an audit index (``mailferry audit index``) the trace asks it for
positions and reads only those offsets, widening once per round to the content hashes and
Message-IDs the events found so far carry, so that fetch events (which know only the hash)
and deliveries (which know the dedup key) join into one story. Without a reachable index it
scans a bounded time range (``--since``, default ``audit_index.scan_window``) and says so.

A position may be a pack holding several messages' events. The reader returns each position
once, so every event read is kept and matched again as later rounds widen the keys: an event
of the message that shares a pack with an earlier round's find is not lost.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from mailferry.audit import ReadEvent, address, read_events
from mailferry.audit_index.access import IndexAccess
from mailferry.audit_index.keys import (
    SIGHTED,
    key_hash,
    matches,
    query_keys,
    related_keys,
)
from mailferry.audit_index.positions import PositionReader
from mailferry.config.kafka import KafkaConfig
from mailferry.kafka.scan import scan_topic
from mailferry.kafka.topics import AUDIT, full_name
from mailferry.schemas import UnknownSchemaError

MAX_ROUNDS = 4
__all__ = ["Trace", "trace", "trace_message"]


@dataclass
class Trace:
    events: list[ReadEvent]
    via: Literal["index", "scan"]
    notes: list[str] = field(default_factory=list)


def _decoded(record: Any, tenant: str | None) -> list[ReadEvent]:
    try:
        events = read_events(record)
    except UnknownSchemaError:
        return []
    return [event for event in events if tenant is None or event["tenant"] == tenant]


def _events(
    kafka: KafkaConfig, servers: list[str], since: datetime | None, tenant: str | None
) -> Iterator[ReadEvent]:
    for record in scan_topic(kafka, servers, full_name(kafka, AUDIT), since=since):
        yield from _decoded(record, tenant)


def _ordered(found: dict[str, ReadEvent]) -> list[ReadEvent]:
    return sorted(found.values(), key=lambda e: (e["at"], address(e)))


def _by_index(
    kafka: KafkaConfig, servers: list[str], wanted: str, tenant: str | None, index: IndexAccess
) -> Trace:
    keys = set(query_keys(wanted))
    asked: set[str] = set()
    found: dict[str, ReadEvent] = {}
    read: list[ReadEvent] = []  # a pack holds other messages' events: kept for later rounds
    with PositionReader(kafka, servers, full_name(kafka, AUDIT)) as reader:
        for _ in range(MAX_ROUNDS):
            new = keys - asked
            if not new:
                break
            asked |= new
            for record in reader.read(index.lookup([key_hash(k) for k in sorted(new)])):
                read.extend(_decoded(record, tenant))
            found |= {e["event_id"]: e for e in read if e["event_id"] not in found and matches(e, asked)}
            keys |= related_keys(found.values())
        notes = []
        sighted = [key_hash(k) for k in sorted(asked) if k.startswith(SIGHTED)]
        first = index.first_sighting(sighted) if found or sighted else None
        if first is not None:
            start = reader.log_start([first.position.partition]).get(first.position.partition, 0)
            if first.position.offset < start:
                seen = datetime.fromtimestamp(first.first_at_ms / 1000, UTC)
                lost = "all its events are" if not found else "its older events are"
                notes.append(
                    f"first seen {seen:%Y-%m-%d %H:%M:%S} UTC; {lost} beyond the audit topic's retention"
                )
    return Trace(_ordered(found), "index", [f"from the audit index {index.name}", *notes])


def _by_scan(
    kafka: KafkaConfig, servers: list[str], wanted: str, tenant: str | None, since: datetime | None
) -> Trace:
    keys = set(query_keys(wanted))
    found: dict[str, ReadEvent] = {}
    for event in _events(kafka, servers, since, tenant):
        if matches(event, keys):
            found[event["event_id"]] = event
    related = related_keys(found.values()) - keys
    if related:
        keys |= related
        for event in _events(kafka, servers, since, tenant):
            if event["event_id"] not in found and matches(event, keys):
                found[event["event_id"]] = event
    scope = f"since {since:%Y-%m-%d %H:%M:%S %Z}".rstrip() if since else "over the whole retained topic"
    return Trace(_ordered(found), "scan", [f"no audit index reachable: scanned {scope}"])


def trace_message(
    kafka: KafkaConfig,
    servers: list[str],
    wanted: str,
    *,
    tenant: str | None = None,
    since: datetime | None = None,
    index: IndexAccess | None = None,
) -> Trace:
    """The events of the message ``wanted``, oldest first, and how they were found."""
    if index is not None:
        return _by_index(kafka, servers, wanted, tenant, index)
    return _by_scan(kafka, servers, wanted, tenant, since)


def trace(
    kafka: KafkaConfig,
    servers: list[str],
    wanted: str,
    *,
    tenant: str | None = None,
    since: datetime | None = None,
) -> list[ReadEvent]:
    """The events of ``wanted`` by a scan (tests, the demo): no index needed."""
    return trace_message(kafka, servers, wanted, tenant=tenant, since=since).events
