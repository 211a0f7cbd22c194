"""``mailferry audit trace``: every event of one message, from the retained audit topic.

A message is named by its Message-ID or by a dedup key. Stages that see a message before
its headers are parsed (fetch, import) know only its SHA-256, so the trace reads the topic
twice: once to find the events that name the message and collect its content hashes, once
more for the events that carry only one of those hashes. Two bounded passes keep memory
flat however large the audit topic is.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from mailferry.config.kafka import KafkaConfig
from mailferry.kafka.scan import scan_topic
from mailferry.kafka.topics import AUDIT, full_name
from mailferry.mail.message_id import same_message_id
from mailferry.schemas import AUDIT_EVENT, UnknownSchemaError, codec


def _events(
    kafka: KafkaConfig, servers: list[str], since: datetime | None, tenant: str | None
) -> Iterator[dict[str, Any]]:
    decoder = codec(AUDIT_EVENT)
    for record in scan_topic(kafka, servers, full_name(kafka, AUDIT), since=since):
        try:
            event = decoder.decode(record.value)
        except UnknownSchemaError:
            continue
        if tenant is None or event["tenant"] == tenant:
            event["_offset"] = f"{record.partition}/{record.offset}"
            yield event


def trace(
    kafka: KafkaConfig,
    servers: list[str],
    wanted: str,
    *,
    tenant: str | None = None,
    since: datetime | None = None,
) -> list[dict[str, Any]]:
    """The events of the message ``wanted`` (a Message-ID or a dedup key), oldest first."""
    hashes: set[str] = set()
    found: dict[str, dict[str, Any]] = {}
    for event in _events(kafka, servers, since, tenant):
        names = (
            event.get("dedup_key") == wanted
            or (event.get("message_id") and same_message_id(event["message_id"], wanted))
            or event.get("sha256") == wanted
        )
        if names:
            found[event["event_id"]] = event
            if event.get("sha256"):
                hashes.add(event["sha256"])
    if hashes:
        for event in _events(kafka, servers, since, tenant):
            if event.get("sha256") in hashes and event["event_id"] not in found:
                found[event["event_id"]] = event
    return sorted(found.values(), key=lambda e: (e["at"], e["_offset"]))
