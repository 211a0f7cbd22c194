"""What the stream app does with a record Kafka refused for what it is (too large, say).

One refused record must not stop every tenant: the worker would read the same input
again after each restart and be refused again. Instead, by the topic it was for:

- a delivery (on the deliver topic) is sent again with its body in the
  blob store; when it already had it there, the delivery goes to the dead-letter topic
  with reason ``record-refused``, from where ``mailferry dlq requeue`` can put it back;
- a dead letter is sent again with its bodies in the blob store;
- an audit event is dropped with an error in the log (it describes a message, it is not one).

A pack (``mailferry.packing``; the stream builds none above the topic's limit, so this takes
a limit lowered after the fact) is sent again item by item, by key, which Kafka's partitioner
puts on the pack's partition; an item refused on its own then takes the way above.

Anything else (a table's changelog) is not rescued: the outbox then blocks the commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mailferry.audit import message_key
from mailferry.packing import AUDIT_PACK, DELIVERY_PACK, PackFormat
from mailferry.schemas.codec import DEAD_LETTER, DELIVERY, codec
from mailferry.schemas.records import DELIVERIES, Delivery
from mailferry.streams.bodies import BlobWriter, by_reference, dead_letter_by_reference

log = logging.getLogger(__name__)

REASON = "record-refused"

Send = Callable[[str, bytes | None, bytes], Awaitable[None]]
DeadLetterDelivery = Callable[[bytes | None, Delivery, str], Awaitable[None]]


@dataclass(frozen=True)
class TopicRoles:
    deliveries: frozenset[str]  # the deliver topic
    dead_letters: str
    audit: str


class Rescuer:
    def __init__(
        self, roles: TopicRoles, blobs: BlobWriter, send: Send, dead_letter: DeadLetterDelivery
    ) -> None:
        self.roles = roles
        self.blobs = blobs
        self.send = send
        self.dead_letter = dead_letter
        self.audit_dropped = 0

    async def __call__(self, topic: str, key: bytes | None, value: bytes, why: BaseException) -> bool:
        form = (
            DELIVERY_PACK
            if topic in self.roles.deliveries
            else AUDIT_PACK
            if topic == self.roles.audit
            else None
        )
        if form is not None and await self._unpacked(form, topic, value):
            return True
        if topic in self.roles.deliveries:
            delivery = DELIVERIES.decode(value)
            moved = await asyncio.to_thread(by_reference, delivery, self.blobs)
            if moved is not None:
                await self.send(topic, key, codec(DELIVERY).encode(moved))
            else:
                await self.dead_letter(key, delivery, f"{topic} refused the delivery record: {why!r}")
            return True
        if topic == self.roles.dead_letters:
            slim = await asyncio.to_thread(
                dead_letter_by_reference, codec(DEAD_LETTER).decode(value), self.blobs
            )
            if slim is None:
                return False
            await self.send(topic, key, codec(DEAD_LETTER).encode(slim))
            return True
        if topic == self.roles.audit:
            self.audit_dropped += 1
            log.error("stream: an audit event of %d bytes was refused and dropped: %r", len(value), why)
            return True
        return False

    async def _unpacked(self, form: PackFormat, topic: str, value: bytes) -> bool:
        """Send a pack's items again one by one; False for a single record."""
        items = form.unpack(value)
        if len(items) < 2:
            return False
        single = codec(form.single)
        for item in items:
            if form is DELIVERY_PACK:
                item_key = f"{item['tenant']}/{item['recipient']}"
            else:
                item_key = message_key(item["tenant"], item["message_id"], item["sha256"])
            await self.send(topic, item_key.encode(), single.encode(item))
        return True
