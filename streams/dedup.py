"""Deduplication keys and the first-sighting decision, with no I/O.

The key is (tenant, recipient, normalised Message-ID), or the content hash when the
Message-ID is missing or invalid (its canonical form is ``mailferry.mail.message_id``'s,
the form these keys always had). Message-ID alone would be wrong: a catch-all holds one
copy per recipient with the same Message-ID, and each recipient must get theirs.

The window is a sliding one per key, measured from the first sighting, so a duplicate is
recognised however the two sightings fall relative to calendar or tumbling-window edges.
Seeing the same raw record again (same origin topic/partition/offset) is at-least-once
reprocessing after a restart, not a duplicate: it is forwarded again and delivery, which
is idempotent, keeps it single.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal


def dedup_key(tenant: str, recipient: str, message_id: str | None, sha256: str) -> str:
    return f"{tenant}/{recipient}/{message_id or 'sha256:' + sha256}"


@dataclass(frozen=True)
class Sighting:
    """What the dedup table remembers about the first copy of a key."""

    first_seen_ms: int
    origin: str  # raw topic/partition/offset
    mailbox_id: str
    delivery_id: str

    def to_value(self) -> dict[str, Any]:
        """The table value (the table's JSON serializer writes it to the changelog)."""
        return {
            "first_seen_ms": self.first_seen_ms,
            "origin": self.origin,
            "mailbox_id": self.mailbox_id,
            "delivery_id": self.delivery_id,
        }

    @classmethod
    def from_value(cls, value: object) -> Sighting | None:
        """Read a table value; an unreadable entry yields None so it cannot block delivery."""
        if value is None:
            return None
        try:
            fields = json.loads(value) if isinstance(value, bytes | str) else value
            if not isinstance(fields, dict):
                return None
            return cls(
                first_seen_ms=int(fields["first_seen_ms"]),
                origin=str(fields["origin"]),
                mailbox_id=str(fields["mailbox_id"]),
                delivery_id=str(fields["delivery_id"]),
            )
        except (ValueError, KeyError, TypeError):
            return None


Verdict = Literal["first", "reprocessed", "duplicate", "expired"]


def decide(previous: Sighting | None, *, now_ms: int, window_ms: int, origin: str) -> Verdict:
    """What to do with a copy given the table's entry for its key.

    ``first``/``expired``: forward and remember this sighting; ``reprocessed``: forward
    and keep the entry; ``duplicate``: drop.
    """
    if previous is None:
        return "first"
    if previous.origin == origin:
        return "reprocessed"
    if now_ms - previous.first_seen_ms >= window_ms:
        return "expired"
    return "duplicate"
