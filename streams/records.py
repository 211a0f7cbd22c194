"""The stream app's outgoing records that are not deliveries: dead letters and audit details."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from mailferry.schemas.records import DEAD_LETTERS, DeadLetter, Delivery, RawMessage
from mailferry.streams.router import PARSE_DEFECT, Rejected, Routed

MAX_DETAIL = 1000


@dataclass(frozen=True)
class Origin:
    """Where a record was read: a Faust message's coordinates, or a delivery's ``raw_origin``."""

    topic: str
    partition: int
    offset: int
    index: int | None = None  # the mail's place in a packed record (``mailferry.packing``)

    @classmethod
    def parse(cls, text: str | None) -> Origin:
        """``topic/partition/offset`` or, for a packed mail, ``topic/partition/offset/index``
        (a topic name has no ``/``)."""
        parts = (text or "").split("/")
        try:
            if len(parts) == 3:
                return cls(parts[0], int(parts[1]), int(parts[2]))
            if len(parts) == 4:
                return cls(parts[0], int(parts[1]), int(parts[2]), int(parts[3]))
        except ValueError:
            pass
        return cls(text or "unknown", -1, -1)

    def __str__(self) -> str:
        base = f"{self.topic}/{self.partition}/{self.offset}"
        return base if self.index is None else f"{base}/{self.index}"


def dead_letter(
    key: bytes | None,
    raw: RawMessage | None,
    topic: str,
    partition: int,
    offset: int,
    why: Rejected,
    *,
    delivery: Delivery | None = None,
    index: int | None = None,
    now: datetime | None = None,
) -> tuple[bytes, str]:
    """(Avro ``dead_letter`` value, tenant) for a raw record the stream cannot route.

    The raw record travels inside the dead letter (its bytes inline or its blob reference),
    so ``mailferry dlq requeue`` can put it back and nothing is lost. An undecodable record
    has no tenant of its own: the one in its key (``tenant/mailbox``) is used.
    """
    if raw is None and delivery is not None:
        tenant = delivery["tenant"]
    else:
        tenant = raw["tenant"] if raw else (key or b"unknown").decode("utf-8", "replace").partition("/")[0]
    record: DeadLetter = {
        "dead_letter_id": uuid.uuid4().hex,
        "stage": "stream",
        "tenant": tenant or "unknown",
        "error_class": why.error_class,
        "reason_code": why.reason_code,
        "error_message": why.message[:MAX_DETAIL],
        "attempts": 0,
        "origin_topic": topic,
        "origin_partition": partition,
        "origin_offset": offset,
        "origin_index": index,
        "failed_at": now or datetime.now(UTC),
        "first_failed_at": None,
        "delivery": delivery,
        "raw": raw,
    }
    return DEAD_LETTERS.encode(record), tenant or "unknown"


def resolved_details(outcome: Routed, origin: str) -> dict[str, str]:
    """Audit details of a ``resolved`` event: the dedup key of every delivery the message will
    get (none when a rule dropped it). A source with ``delete_when = "delivered"`` deletes the
    message once each of these keys has a ``delivered`` event; the list is not cut, as a cut
    one would let it delete too early."""
    dropped = outcome.resolution.dropped_by is not None
    keys = [] if dropped else sorted({c.dedup_key for c in outcome.candidates})
    return {"origin": origin, "recipients": str(len(keys)), "dedup_keys": "\n".join(keys)}


def routed_details(delivery: Delivery) -> dict[str, str]:
    """Audit details of a ``routed`` event: why this recipient, with which target and flags."""
    reasons = "; ".join(f"{r['kind']}:{r['detail']}" for r in delivery["reasons"])
    defects = [f.removeprefix(PARSE_DEFECT) for f in delivery["flags"] if f.startswith(PARSE_DEFECT)]
    details = {
        "reasons": reasons[:MAX_DETAIL],
        "target": delivery["target"],
        "flags": ",".join(f for f in delivery["flags"] if not f.startswith(PARSE_DEFECT)),
        "delivery_id": delivery["delivery_id"],
        "origin": delivery["raw_origin"] or "",
    }
    if defects:
        details["parse_defects"] = ",".join(defects)[:MAX_DETAIL]
    return details
