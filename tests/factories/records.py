"""Whole, valid records of the Avro schemas (the typed views of ``mailferry.schemas.records``)
for tests that need a record and care about a few of its fields: every field has a plain
default, the fields a test names replace them (``size`` and ``sha256`` follow an ``inline``
body given without them). An unknown field name is refused, so a typo cannot pass for a test
of a field the record does not have."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from mailferry.schemas.records import AuditEvent, DeadLetter, Delivery, RawMessage

T0 = datetime(2026, 12, 3, 14, 0, tzinfo=UTC)
BODY = b"Subject: x\r\n"
BODY_SHA256 = hashlib.sha256(BODY).hexdigest()

View = TypeVar("View", RawMessage, Delivery, AuditEvent, DeadLetter)


def _with(record: View, fields: dict[str, Any]) -> View:
    unknown = sorted(fields.keys() - record.keys())
    if unknown:
        raise TypeError(f"no field {', '.join(unknown)} in a record of {', '.join(record)}")
    return cast(View, {**record, **fields})


def _content(fields: dict[str, Any]) -> dict[str, Any]:
    """``size`` and ``sha256`` of an ``inline`` body among ``fields``, which may override them."""
    body = fields.get("inline")
    if body is None:
        return fields
    return {"size": len(body), "sha256": hashlib.sha256(body).hexdigest(), **fields}


def raw_message(**fields: Any) -> RawMessage:
    """A mail of ``mailferry.raw`` fetched from an IMAP folder, ``BODY`` inline."""
    return _with(
        RawMessage(
            tenant="acme",
            mailbox_id="catchall",
            source_kind="imap",
            folder="INBOX",
            source_uid="7/1",
            size=len(BODY),
            sha256=BODY_SHA256,
            fetched_at=T0,
            inline=BODY,
            blob_ref=None,
            envelope_recipients=[],
            headers_only=False,
            replay_of=None,
            bypass_dedup=False,
            target_override=None,
        ),
        _content(fields),
    )


def delivery(**fields: Any) -> Delivery:
    """A delivery of ``BODY`` inline to alice@acme.example, routed by its envelope."""
    return _with(
        Delivery(
            delivery_id="d1",
            tenant="acme",
            recipient="alice@acme.example",
            target="exchange",
            dedup_key="acme/alice@acme.example/<m1@x>",
            message_id="<m1@x>",
            mailbox_id="catchall",
            size=len(BODY),
            sha256=BODY_SHA256,
            inline=BODY,
            blob_ref=None,
            reasons=[{"kind": "envelope", "detail": "Delivered-To"}],
            flags=[],
            add_headers=[],
            raw_origin=None,
            routed_at=T0,
        ),
        _content(fields),
    )


def audit_event(**fields: Any) -> AuditEvent:
    """The stream's ``routed`` event of ``delivery()``."""
    return _with(
        AuditEvent(
            event_id="e1",
            event="routed",
            at=T0,
            stage="stream",
            tenant="acme",
            mailbox_id="catchall",
            message_id="<m1@x>",
            sha256=None,
            dedup_key=None,
            recipient="alice@acme.example",
            details={},
        ),
        fields,
    )


def dead_letter(**fields: Any) -> DeadLetter:
    """``delivery()`` refused for good by its target (no such mailbox), first try."""
    return _with(
        DeadLetter(
            dead_letter_id="x1",
            stage="deliver",
            tenant="acme",
            error_class="permanent",
            reason_code="no-such-mailbox",
            error_message="550 no such user",
            attempts=1,
            origin_topic="t.deliver",
            origin_partition=0,
            origin_offset=3,
            origin_index=None,
            failed_at=T0,
            first_failed_at=None,
            delivery=delivery(),
            raw=None,
        ),
        fields,
    )
