"""What the stream app writes besides the table: deliveries and audit events, gathered per
input record (``collector``), and dead letters, sent at once.

A mixin of ``StreamApp``: tests swap the app's topics for channels after it is built, so
these methods read them from the app each time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import faust

from mailferry.audit import audit_event
from mailferry.schemas.records import DELIVERIES, Delivery, RawMessage
from mailferry.streams.collector import Collector
from mailferry.streams.outbox import Outbox
from mailferry.streams.records import Origin, dead_letter, routed_details
from mailferry.streams.router import Candidate, Rejected, Routed


@dataclass
class Counters:
    routed: int = 0
    duplicates: int = 0
    reprocessed: int = 0
    purged: int = 0
    dead_lettered: int = 0
    dropped_by_rule: int = 0
    transient_retries: int = 0
    last_error: str | None = None
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())


class Outputs:
    app: faust.App
    deliver_topic: Any
    dlt_topic: Any
    audit_topic: Any
    collector: Collector
    outbox: Outbox
    counters: Counters
    _collecting: bool

    async def _emit(self, candidate: Candidate, extra: dict[str, str]) -> None:
        delivery = candidate.delivery
        key = f"{delivery['tenant']}/{delivery['recipient']}".encode()
        value = DELIVERIES.encode(delivery)
        self.collector.delivery(key, value)
        self.counters.routed += 1
        await self._audit_delivery("routed", delivery, details=routed_details(delivery) | extra)

    async def _dead_letter(
        self,
        key: bytes | None,
        raw: RawMessage | None,
        origin: Origin,
        why: Rejected,
        *,
        delivery: Delivery | None = None,
    ) -> None:
        self.counters.dead_lettered += 1
        record, tenant = dead_letter(
            key,
            raw,
            origin.topic,
            origin.partition,
            origin.offset,
            why,
            delivery=delivery,
            index=origin.index,
        )
        await self._send(self.dlt_topic, key=key, value=record)
        await self._audit(
            "dead-lettered",
            tenant,
            mailbox_id=raw["mailbox_id"] if raw else None,
            sha256=raw["sha256"] if raw else None,
            details={
                "error_class": why.error_class,
                "reason_code": why.reason_code,
                "error_message": why.message[:500],
                "origin": str(origin),
            },
        )

    async def _dead_letter_refused(self, key: bytes | None, delivery: Delivery, why: str) -> None:
        origin = Origin.parse(delivery["raw_origin"])
        await self._dead_letter(
            key, None, origin, Rejected("permanent", "record-refused", why), delivery=delivery
        )

    async def _send(self, topic: Any, *, key: bytes | None, value: bytes) -> None:
        await self.outbox.send(topic, key=key, value=value)

    async def _send_bytes(self, topic: str, key: bytes | None, value: bytes) -> None:
        await self.outbox.send(self.app.topic(topic), key=key, value=value)

    async def _audit_delivery(self, event: Any, delivery: Delivery, *, details: dict[str, str]) -> None:
        await self._audit(
            event,
            delivery["tenant"],
            mailbox_id=delivery["mailbox_id"],
            message_id=delivery["message_id"],
            sha256=delivery["sha256"],
            dedup_key=delivery["dedup_key"],
            recipient=delivery["recipient"],
            details=details,
        )

    async def _audit_routing(
        self, event: Any, raw: RawMessage, outcome: Routed, *, details: dict[str, str], **kwargs: Any
    ) -> None:
        """An audit event about how one raw message was routed."""
        await self._audit(
            event,
            raw["tenant"],
            mailbox_id=raw["mailbox_id"],
            message_id=outcome.message_id,
            sha256=raw["sha256"],
            details=details,
            **kwargs,
        )

    async def _audit(self, event: Any, tenant: str, **kwargs: Any) -> None:
        key, value = audit_event(event, stage="stream", tenant=tenant, **kwargs)
        if self._collecting:
            self.collector.audit(key, value)
        else:  # a rescue's dead letter, after its record was done
            await self._send(self.audit_topic, key=key, value=value)

    def _note_error(self, text: str) -> None:
        self.counters.last_error = text
