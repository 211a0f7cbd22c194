"""What the stream app does with a record Kafka refused for what it is (too large, say).

One refused record must not stop every tenant: the worker would read the same input
again after each restart and be refused again. Instead, by the topic it was for:

- a delivery (on the deliver topic) is sent again with its body in the
  blob store; when it already had it there, the delivery goes to the dead-letter topic
  with reason ``record-refused``, from where ``mailferry dlq requeue`` can put it back;
- a dead letter is sent again with its bodies in the blob store;
- an audit event is dropped with an error in the log (it describes a message, it is not one).

Anything else (a table's changelog) is not rescued: the outbox then blocks the commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mailferry.schemas.codec import DEAD_LETTER, DELIVERY, Record, codec
from mailferry.streams.bodies import BlobWriter, by_reference, dead_letter_by_reference

log = logging.getLogger(__name__)

REASON = "record-refused"

Send = Callable[[str, bytes | None, bytes], Awaitable[None]]
DeadLetterDelivery = Callable[[bytes | None, Record, str], Awaitable[None]]


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
        if topic in self.roles.deliveries:
            delivery = codec(DELIVERY).decode(value)
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
