"""Audit events: every stage says what it did to a message, and why.

Events are keyed so that all events of one message land in one partition in order:
by ``tenant/<message key>`` where the message key is the normalised Message-ID when there
is one, else the SHA-256 of the content. Under load the stream writes the events one input
record caused as one ``audit_batch`` record (keyed like its first event), so an event may sit
in another message's partition; readers therefore go through ``read_events``, and the audit
index, not the key, finds a message's events.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, cast

from mailferry.config.kafka import KafkaConfig
from mailferry.kafka.topics import AUDIT, pack_limit
from mailferry.packing import AUDIT_PACK, PACK_OVERHEAD, origin_of
from mailferry.schemas.records import AUDIT_EVENTS, AuditEvent

EventName = Literal[
    "fetched",
    "duplicate",
    "routed",
    "delivered",
    "retried",
    "dead-lettered",
    "source-deleted",
    "skipped",
    "error",
    "imported",
    "replayed",
    "paused",
    "resumed",
    "size-mismatch",
    "resolved",
]
Stage = Literal["fetch", "stream", "deliver", "import", "replay", "dlq"]


def message_key(tenant: str, message_id: str | None, sha256: str | None) -> str:
    """The audit topic key of a message: its Message-ID, or its content hash without one."""
    return f"{tenant}/{message_id or ('sha256:' + (sha256 or 'unknown'))}"


def audit_event(
    event: EventName,
    *,
    stage: Stage,
    tenant: str,
    mailbox_id: str | None = None,
    message_id: str | None = None,
    sha256: str | None = None,
    dedup_key: str | None = None,
    recipient: str | None = None,
    details: dict[str, str] | None = None,
    at: datetime | None = None,
) -> tuple[bytes, bytes]:
    """(key, Avro value) of one audit event, ready to send to the audit topic."""
    record: AuditEvent = {
        "event_id": uuid.uuid4().hex,
        "event": event,
        "at": at or datetime.now(UTC),
        "stage": stage,
        "tenant": tenant,
        "mailbox_id": mailbox_id,
        "message_id": message_id,
        "sha256": sha256,
        "dedup_key": dedup_key,
        "recipient": recipient,
        "details": {k: str(v) for k, v in (details or {}).items()},
    }
    key = message_key(tenant, message_id, sha256).encode()
    return key, AUDIT_EVENTS.encode(record)


def event_pack_limit(kafka: KafkaConfig) -> int:
    """Bytes of events per ``audit_batch`` record (``pack_limit`` of the audit topic: a few
    hundred events)."""
    return pack_limit(kafka, AUDIT)


class EventPacks:
    """Encoded events gathered into ``audit_batch`` records of at most ``limit`` bytes, each
    keyed by its first event: a writer with many events (a fetch pass, an import) sends a
    few records instead of one per event. A limit of 0 sends every event alone."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._values: list[bytes] = []
        self._key = b""
        self._size = PACK_OVERHEAD

    def add(self, key: bytes, value: bytes) -> list[tuple[bytes, bytes]]:
        """The pack this event closed, if any, as (key, value) ready to send."""
        closed = self.drain() if self._values and self._size + len(value) > self.limit else []
        if not self._values:
            self._key = key
        self._values.append(value)
        self._size += len(value)
        return closed

    def drain(self) -> list[tuple[bytes, bytes]]:
        if not self._values:
            return []
        pack = (self._key, AUDIT_PACK.pack(self._values))
        self._values, self._size = [], PACK_OVERHEAD
        return [pack]

    def __len__(self) -> int:
        return len(self._values)


class AuditRecord(Protocol):
    """What ``read_events`` needs of a consumed record (kafka-python's ``ConsumerRecord``)."""

    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def value(self) -> bytes | None: ...


class ReadEvent(AuditEvent):
    """An audit event as ``read_events`` returns it: with its address on the topic."""

    _offset: str  # partition/offset, and /index inside a pack


def read_events(record: AuditRecord) -> list[ReadEvent]:
    """The events of one audit-topic record, in order: one for a plain record, every event of
    a pack. Each carries its address in ``_offset``: ``partition/offset``, and ``/index``
    inside a pack. A tombstone holds none.

    Raises ``UnknownSchemaError`` for a value that is neither form."""
    if record.value is None:
        return []
    events = cast(list[ReadEvent], AUDIT_PACK.unpack(record.value))
    base = f"{record.partition}/{record.offset}"
    for index, event in enumerate(events):
        event["_offset"] = origin_of(base, index, len(events))
    return events


def address(event: Mapping[str, Any]) -> tuple[int, ...]:
    """(partition, offset[, index]) of an event ``read_events`` returned: sorts numerically."""
    return tuple(int(part) for part in str(event["_offset"]).split("/"))
