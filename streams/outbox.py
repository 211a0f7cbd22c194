"""How the stream app's records leave it: straight to Faust's producer, and never an offset
commit after a record Kafka refused.

Faust flushes its producer before it commits an offset, so a record handed to the producer
is in Kafka before the offset of the input that caused it is committed: at-least-once. A
flush does not fail for a record Kafka refused, though (over a topic's ``max.message.bytes``,
say), so Faust alone would commit past it and lose the message. The outbox remembers the
first refused record and makes that flush raise: the commit is skipped, the worker stops,
and the input is read again on restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

import faust

log = logging.getLogger(__name__)


class Outbox:
    def __init__(self, app: faust.App, on_failure: Callable[[str], None]) -> None:
        self.app = app
        self.failure: BaseException | None = None
        self._on_failure = on_failure
        self._guard_commits()

    async def send(self, topic: Any, *, key: bytes | None, value: bytes) -> None:
        """Hand a record to the producer now, without waiting for Kafka's acknowledgement.

        Kafka topics go straight to the producer: ``Topic.send`` adds a future message, a
        channel event and sensor calls per record, measured at about half of the cost of a
        send. In-memory channels (the agents' unit tests) still go through Faust.
        """
        if not isinstance(topic, faust.Topic):
            await topic.send(key=key, value=value, force=True)
            return
        delivered = await self.app.producer.send(topic.get_topic_name(), key, value, None, None, None)
        cast(asyncio.Future[Any], delivered).add_done_callback(self._on_delivered)

    def _on_delivered(self, delivered: asyncio.Future[Any]) -> None:
        if delivered.cancelled() or delivered.exception() is None:
            return
        exc = delivered.exception()
        if self.failure is None:
            self.failure = exc
            self._on_failure(f"send failed: {type(exc).__name__}: {exc}")
            log.error("stream: a record could not be written, no offset is committed from now on: %s", exc)

    def _guard_commits(self) -> None:
        producer = self.app.producer
        flush = producer.flush

        async def checked_flush() -> None:
            await flush()
            if self.failure is not None:
                raise self.failure

        producer.flush = checked_flush  # type: ignore[method-assign]
