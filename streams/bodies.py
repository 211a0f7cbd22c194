"""Where a delivery's body travels: inline in the record, or once in the blob store.

A message's deliveries used to carry its bytes inline, one copy per recipient: a 400 KB
message with 10,000 recipients wrote 6 GB of deliver records. A message with more than one
recipient now puts its body in the blob store once and every delivery carries the same
reference, so the deliver topic grows with the number of recipients, not with recipients
times size. A single-recipient message stays inline: one copy, and no blob to write or read.

The same move rescues a record a topic refuses for its size: by reference it is small.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from mailferry.schemas.codec import Record
from mailferry.schemas.records import Delivery


class BlobWriter(Protocol):
    def put(self, data: bytes) -> str: ...


def needs_sharing(deliveries: list[Delivery]) -> bool:
    """Whether ``shared_body`` has a blob to write (the caller then runs it in a thread: a
    thread hop per mail cost more than routing it)."""
    return len(deliveries) > 1 and deliveries[0]["inline"] is not None


def shared_body(deliveries: list[Delivery], blobs: BlobWriter) -> list[Delivery]:
    """The deliveries of one message, with its body in the blob store once they are more than one."""
    if not needs_sharing(deliveries):
        return deliveries
    inline = deliveries[0]["inline"]
    assert inline is not None
    reference = blobs.put(bytes(inline))
    return [{**delivery, "inline": None, "blob_ref": reference} for delivery in deliveries]


def by_reference(record: Mapping[str, Any], blobs: BlobWriter) -> Record | None:
    """A copy of a raw or delivery record with its inline body in the blob store, or None
    when it has none inline. Content-addressed: putting the same body again costs nothing."""
    inline = record.get("inline")
    if inline is None:
        return None
    return {**record, "inline": None, "blob_ref": blobs.put(bytes(inline))}


def dead_letter_by_reference(record: Record, blobs: BlobWriter) -> Record | None:
    """A dead letter whose raw record and delivery carry their bodies by reference, or None
    when neither has a body inline."""
    slim = dict(record)
    for part in ("raw", "delivery"):
        if record.get(part) is not None:
            moved = by_reference(record[part], blobs)
            if moved is not None:
                slim[part] = moved
    return slim if slim != record else None
