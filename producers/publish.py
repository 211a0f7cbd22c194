"""Everything a fetch pass sends to Kafka, and the one wait that makes deletion safe.

A pass sends its raw records, fetch-state records and audit events without waiting, then
calls ``confirm``: only when every future resolved does the pass touch the source. The
producer is idempotent with ``acks=all`` (``mailferry.kafka.clients``).

A pass's audit events travel packed (``mailferry.audit.EventPacks``), as the stream's do:
one record per mail would cost a record's work here and in the broker for every mail.
"""

from __future__ import annotations

from kafka import KafkaProducer

from mailferry.audit import EventName, EventPacks, audit_event, event_pack_limit
from mailferry.config import MailferryConfig
from mailferry.errors import MailferryError
from mailferry.kafka.confirm import ConfirmedSends
from mailferry.kafka.topics import AUDIT, FETCH_STATE, RAW, full_name
from mailferry.mail.message_id import normalise_message_id
from mailferry.producers.state import MailboxState, encode_state, partition_of, set_records
from mailferry.raw_sends import RawSends, make_producer, pack_limit, partition_count
from mailferry.rawrecord import encode_raw, raw_key
from mailferry.schemas.records import FetchState, RawMessage

__all__ = ["Batch", "Publisher", "make_producer", "pack_limit"]


class Batch:
    """The sends of one pass (or one step of it) that must all be acknowledged together."""

    def __init__(self, publisher: Publisher, state: MailboxState) -> None:
        self._publisher = publisher
        self._state = state
        self._sends: ConfirmedSends[None] = ConfirmedSends(publisher.producer)
        self._state_updates: list[tuple[str, FetchState | None]] = []
        self._raw: RawSends[None] | None = None  # made by the first mail
        self._events = EventPacks(publisher.audit_pack_bytes)

    @property
    def tenant(self) -> str:
        return self._state.tenant

    @property
    def mailbox(self) -> str:
        return self._state.mailbox

    def raw(self, key: bytes, record: RawMessage) -> None:
        """A mail under its dedup shard ``key``, packed with others for its partition
        (``mailferry.raw_sends``); ``confirm`` sends what is left, a lone mail as a plain record."""
        if self._raw is None:
            p = self._publisher
            self._raw = RawSends(self._sends, p.raw_topic, p.partitions(p.raw_topic), p.pack_limit)
        self._raw.add(key, encode_raw(record))

    def state(self, key: str, record: FetchState | None) -> None:
        """A fetch-state record (``None``: forget the message).

        Held back until ``confirm`` has seen every raw record acknowledged: a state record
        saying "fetched" must never reach Kafka for a raw record that did not.
        """
        self._state_updates.append((key, record))

    def _send_states(self) -> list[tuple[str, list[tuple[str, FetchState | None]]]]:
        """One set record for the pass, and tombstones of the sets earlier passes made unneeded."""
        p = self._publisher
        partition = partition_of(raw_key(self.tenant, self.mailbox), p.partitions(p.state_topic))
        written = []
        for key, record, items in set_records(self.tenant, self.mailbox, self._state_updates):
            self._sends.send(p.state_topic, key=key.encode(), value=encode_state(record), partition=partition)
            written.append((key, items))
        for key in self._state.unneeded():
            self._sends.send(p.state_topic, key=key.encode(), value=None, partition=partition)
            written.append((key, []))
        return written

    def audit(
        self,
        event: EventName,
        *,
        message_id: str | None = None,
        sha256: str | None = None,
        details: dict[str, str] | None = None,
    ) -> None:
        """An audit event, sent with the others of the pass in an ``audit_batch`` record when
        the pack is full or at ``confirm``."""
        key, value = audit_event(
            event,
            stage="fetch",
            tenant=self.tenant,
            mailbox_id=self.mailbox,
            message_id=normalise_message_id(message_id),
            sha256=sha256,
            details=details,
        )
        self._send_events(self._events.add(key, value))

    def _send_events(self, packs: list[tuple[bytes, bytes]]) -> None:
        for key, value in packs:
            self._sends.send(self._publisher.audit_topic, key=key, value=value)

    def confirm(self, timeout: float = 60.0) -> None:
        """Wait for every raw record and audit event, then write and wait for the state records.

        Raises the Kafka mapper's error if Kafka did not acknowledge something; the local
        state is updated only when everything was.
        """
        if self._raw is not None:
            self._raw.flush()
        self._send_events(self._events.drain())
        self._wait(timeout)
        if self._state_updates:
            written = self._send_states()
            self._wait(timeout)
            for key, items in written:
                if items:
                    self._state.apply_set(key, items)
                else:
                    self._state.apply(key, None)
        self._state_updates.clear()

    def _wait(self, timeout: float) -> None:
        if not len(self._sends):
            return
        try:
            self._sends.confirm("records of the pass", timeout)
        except MailferryError:
            self._state_updates.clear()
            raise


class Publisher:
    """Shared by all passes of a worker (kafka-python's producer is thread-safe)."""

    def __init__(self, config: MailferryConfig, producer: KafkaProducer) -> None:
        self.producer = producer
        self.raw_topic = full_name(config.kafka, RAW)
        self.state_topic = full_name(config.kafka, FETCH_STATE)
        self.audit_topic = full_name(config.kafka, AUDIT)
        self.pack_limit = pack_limit(config)
        self.audit_pack_bytes = event_pack_limit(config.kafka)
        self._partitions: dict[str, int] = {}

    def partitions(self, topic: str) -> int:
        """How many partitions ``topic`` has, asked once (``raw_sends.partition_count``)."""
        count = self._partitions.get(topic)
        if count is None:
            count = self._partitions[topic] = partition_count(self.producer, topic)
        return count

    def state_partitions(self) -> int:
        return self.partitions(self.state_topic)

    def batch(self, state: MailboxState) -> Batch:
        return Batch(self, state)

    def close(self, timeout: float = 30.0) -> None:
        self.producer.close(timeout=timeout)
