"""Which fetched messages are delivered to every recipient: the audit topic, read by the fetcher.

A source with ``delete_when = "delivered"`` (the brief's stricter policy, offered for
single-broker deployments) leaves a message on the server until the stream's ``resolved``
event for it is known and every dedup key that event lists has a ``delivered`` event. A
recipient dropped as a duplicate counts once the earlier copy with that key was delivered; a
message dead-lettered anywhere stays on the server until someone deals with it.

The audit topic is keyed by message, not by mailbox, so every partition is read. One consumer
per fetch worker follows it from the oldest pending message's fetch time; what was read is
kept, so each check only reads what arrived since the last one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from kafka import KafkaConsumer, TopicPartition

from mailferry.audit import read_events
from mailferry.config.kafka import KafkaConfig
from mailferry.errors import TransientError
from mailferry.kafka.clients import new_consumer
from mailferry.kafka.topics import AUDIT, full_name
from mailferry.schemas.records import AuditEvent, FetchState

K = TypeVar("K", bound=Hashable)
CLOCK_MARGIN = timedelta(minutes=5)
"""Read from this long before the oldest pending fetch: audit events carry the producing
host's clock, which may lag the fetcher's."""


@dataclass
class Deliveries:
    """What the audit topic said so far (pure; fed event by event)."""

    resolved: dict[tuple[str, str, str], set[str]] = field(default_factory=dict)
    delivered: set[tuple[str, str]] = field(default_factory=set)

    def add(self, event: AuditEvent) -> None:
        tenant, kind, sha256, dedup_key = event["tenant"], event["event"], event["sha256"], event["dedup_key"]
        if kind == "resolved" and event["stage"] == "stream" and sha256:
            keys = {k for k in event["details"].get("dedup_keys", "").split("\n") if k}
            where = (tenant, str(event["mailbox_id"]), sha256)
            # a message the stream routed twice (a replay, a restart) waits for both routings
            self.resolved.setdefault(where, set()).update(keys)
        elif kind == "delivered" and dedup_key:
            self.delivered.add((tenant, dedup_key))

    def settled(self, tenant: str, mailbox: str, sha256: str) -> bool:
        keys = self.resolved.get((tenant, mailbox, sha256))
        return keys is not None and all((tenant, key) in self.delivered for key in keys)


class DeliveryWatch:
    """Thread-safe: the passes of every mailbox of a worker ask it (one consumer, one lock)."""

    def __init__(self, kafka: KafkaConfig, servers: list[str], timeout: float = 60.0) -> None:
        self._kafka = kafka
        self._servers = servers
        self._timeout = timeout
        self._lock = threading.Lock()
        self._consumer: KafkaConsumer | None = None
        self._since: datetime | None = None
        self._seen = Deliveries()

    def settled(self, tenant: str, mailbox: str, shas: Iterable[str], since: datetime) -> set[str]:
        """The subset of ``shas`` (messages of one mailbox fetched at ``since`` or later)
        delivered to every recipient, as far as the audit topic says now."""
        with self._lock:
            self._catch_up(since - CLOCK_MARGIN)
            return {sha for sha in shas if self._seen.settled(tenant, mailbox, sha)}

    def _catch_up(self, since: datetime) -> None:
        consumer = self._consumer
        if consumer is None:
            consumer = self._consumer = new_consumer(self._kafka, self._servers)
        topic = full_name(self._kafka, AUDIT)
        if self._since is None or since < self._since:
            available = consumer.partitions_for_topic(topic)
            if not available:
                raise TransientError(f"topic {topic} does not exist (yet)")
            partitions = [TopicPartition(topic, p) for p in sorted(available)]
            consumer.assign(partitions)
            starts = consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in partitions})
            for tp in partitions:
                found = starts.get(tp)
                if found is None:
                    consumer.seek_to_end(tp)
                else:
                    consumer.seek(tp, found.offset)
            self._since = since
        ends = consumer.end_offsets(list(consumer.assignment()))
        deadline = time.monotonic() + self._timeout
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                raise TransientError(f"reading {topic} took longer than {self._timeout:.0f} s")
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    for event in read_events(record):
                        self._seen.add(event)

    def delivered(self, tenant: str, mailbox: str, entries: Mapping[K, FetchState]) -> list[K]:
        """The keys of the fetch-state ``entries`` whose message is delivered everywhere."""
        known = {key: sha256 for key, r in entries.items() if (sha256 := r["sha256"])}
        if not known:
            return []
        since = min(entries[key]["first_seen_at"] for key in known)
        done = self.settled(tenant, mailbox, set(known.values()), since)
        return [key for key, sha256 in known.items() if sha256 in done]

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None
