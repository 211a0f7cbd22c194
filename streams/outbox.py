"""How the stream app's records leave it, and why no offset is committed past a lost one.

Faust flushes its producer before it commits an offset, so a record handed to the producer
is in Kafka before the offset of the input that caused it is committed: at-least-once. A
flush does not fail for a record Kafka refused, though, and a refusal can come two ways:
``send`` raises at once (the client's request limit), or the broker refuses the batch later
(a topic's ``max.message.bytes``). Faust alone would commit past either and lose the message;
a failed write of a table's changelog is only logged by Faust.

So every record the producer takes, the tables' changelog writes included, is watched until
Kafka answers. A record refused for what it is (too large, say) goes to ``rescue``, which
writes it another way (its body by reference, or a dead letter) and the commit waits for
that. Anything else (a changelog write, a rescue that cannot help, a broker that stays
away) makes the flush before the commit raise: the commit is skipped, the worker stops and
the input is read again on restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

import faust
from aiokafka import errors as kafka_errors
from faust.exceptions import ProducerSendError

log = logging.getLogger(__name__)

# refused because of the record itself: sending it again the same way cannot succeed, and
# nothing else is wrong with the topic or the broker
REFUSED_RECORD = (
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordListTooLargeError,
    kafka_errors.RecordTooLargeError,
    kafka_errors.CorruptRecordException,
    kafka_errors.InvalidTimestampError,
)

# (topic, key, value, why) -> True when the record was written another way
Rescue = Callable[[str, bytes | None, bytes, BaseException], Awaitable[bool]]


async def _refuse_all(topic: str, key: bytes | None, value: bytes, why: BaseException) -> bool:
    return False


class Outbox:
    def __init__(
        self, app: faust.App, on_failure: Callable[[str], None], rescue: Rescue = _refuse_all
    ) -> None:
        self.app = app
        self.failure: BaseException | None = None
        self._on_failure = on_failure
        self._rescue = rescue
        self._in_flight: dict[asyncio.Future[Any], tuple[str, bytes | None, bytes]] = {}
        self._rescues: set[asyncio.Task[None]] = set()
        self._watch_sends()
        self._guard_commits()

    async def send(
        self, topic: Any, *, key: bytes | None, value: bytes, partition: int | None = None
    ) -> None:
        """Hand a record to the producer now, without waiting for Kafka's acknowledgement.

        Kafka topics go straight to the producer: ``Topic.send`` adds a future message, a
        channel event and sensor calls per record, measured at about half of the cost of a
        send. In-memory channels (the agents' unit tests) still go through Faust.
        """
        if not isinstance(topic, faust.Topic):
            await topic.send(key=key, value=value, partition=partition, force=True)
            return
        await self.app.producer.send(topic.get_topic_name(), key, value, partition, None, None)

    def _watch_sends(self) -> None:
        """Every record through the producer, ours or a table's changelog, is watched; a
        refusal raised at once becomes a failed future, so both kinds take one path and
        Faust's producer buffer (which writes the changelog) never dies of one."""
        producer = self.app.producer
        send = producer.send

        async def watched_send(
            topic: str, key: bytes | None, value: bytes | None, *args: Any, **kwargs: Any
        ) -> Awaitable[Any]:
            try:
                delivered = cast(asyncio.Future[Any], await send(topic, key, value, *args, **kwargs))
            except ProducerSendError as exc:
                delivered = asyncio.get_running_loop().create_future()
                delivered.set_exception(exc.__cause__ or exc)
            self._in_flight[delivered] = (topic, key, value or b"")
            delivered.add_done_callback(self._settle)
            return delivered

        producer.send = watched_send  # type: ignore[method-assign]

    def _settle(self, delivered: asyncio.Future[Any]) -> None:
        record = self._in_flight.pop(delivered, None)
        if record is None or delivered.cancelled() or delivered.exception() is None:
            return
        exc = cast(BaseException, delivered.exception())
        if not isinstance(exc, REFUSED_RECORD):
            self._fail(exc)
            return
        task = asyncio.ensure_future(self._run_rescue(*record, exc))
        self._rescues.add(task)
        task.add_done_callback(self._rescues.discard)

    async def _run_rescue(self, topic: str, key: bytes | None, value: bytes, why: BaseException) -> None:
        log.warning(
            "stream: %s refused a record of %d bytes (%s), writing it another way", topic, len(value), why
        )
        try:
            rescued = await self._rescue(topic, key, value, why)
        except Exception as exc:
            log.exception("stream: a refused record could not be written another way")
            rescued, why = False, exc
        if not rescued:
            self._fail(why)

    def _fail(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = exc
            self._on_failure(f"send failed: {type(exc).__name__}: {exc}")
            log.error("stream: a record could not be written, no offset is committed from now on: %s", exc)

    def _guard_commits(self) -> None:
        producer = self.app.producer
        flush = producer.flush

        async def checked_flush() -> None:
            while True:
                await flush()
                for delivered in [d for d in self._in_flight if d.done()]:
                    self._settle(delivered)  # before its callback ran
                if not self._rescues:
                    break
                # a rescue sends again: flush once more for what it wrote
                await asyncio.gather(*self._rescues, return_exceptions=True)
            if self.failure is not None:
                raise self.failure

        producer.flush = checked_flush  # type: ignore[method-assign]
