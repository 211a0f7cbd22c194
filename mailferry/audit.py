"""Audit events: every stage says what it did to a message, and why.

Events are keyed so that all events of one message land in one partition in order:
by ``tenant/<message key>`` where the message key is the normalised Message-ID when there
is one, else the SHA-256 of the content. ``mailferry audit trace`` relies on that key.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal

from mailferry.schemas.codec import AUDIT_EVENT, Record, codec

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
    record: Record = {
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
    return key, codec(AUDIT_EVENT).encode(record)
