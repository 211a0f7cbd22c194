"""Everything a fetch pass sends to Kafka, and the one wait that makes deletion safe.

A pass sends its raw records, fetch-state records and audit events without waiting, then
calls ``confirm``: only when every future resolved does the pass touch the source. The
producer is idempotent with ``acks=all`` (``mailferry.kafka.clients``).
"""

from __future__ import annotations

import time
from typing import Any

from kafka import KafkaProducer

from mailferry.audit import EventName, audit_event
from mailferry.config import MailferryConfig
from mailferry.errors import MailferryError, TransientError
from mailferry.kafka.clients import new_producer
from mailferry.kafka.confirm import ConfirmedSends
from mailferry.kafka.topics import AUDIT, FETCH_STATE, RAW, full_name, topic_settings
from mailferry.mail.message_id import normalise_message_id
from mailferry.packing import Pack, Packer, pack_value
from mailferry.producers.state import MailboxState, encode_state, partition_of, set_records
from mailferry.rawrecord import encode_raw, raw_key
from mailferry.schemas.codec import Record
from mailferry.shard import partition_for

BATCH_SIZE = 4 * 1024 * 1024
LINGER_MS = 100
PACK_LINGER = 0.05  # seconds a pack of raw mails waits for more before it goes
PACK_MARGIN = 64 * 1024  # below the topic's record limit: Kafka's own record and batch headers


def make_producer(config: MailferryConfig, servers: list[str], **overrides: Any) -> KafkaProducer:
    """The fetch role's producer: idempotent, ``acks=all``, tuned for few large requests.

    Messages are often larger than the 16 KiB default batch, which would mean one request per
    record. Batches of up to 4 MiB (never above what the topics accept) and a 100 ms linger
    let a pass travel in a few large requests, which costs less CPU per record both here and
    in the broker (measured: ``benchmarks/fetch_throughput.py``). The linger adds no latency
    to a pass: ``Batch.confirm`` flushes.
    """
    accepted = min(topic_settings(config.kafka, name).max_message_bytes for name in (RAW, AUDIT, FETCH_STATE))
    batch_size = max(64 * 1024, min(BATCH_SIZE, accepted - 64 * 1024))
    tuned: dict[str, Any] = {
        "delivery_timeout_ms": 60_000,
        "request_timeout_ms": 20_000,
        "batch_size": batch_size,
        "linger_ms": LINGER_MS,
        "metrics_enabled": False,  # client-side metrics cost ~10% of the CPU per record
    }
    return new_producer(config.kafka, servers, **(tuned | overrides))


def pack_limit(config: MailferryConfig) -> int:
    """The most bytes of mail one packed raw record carries: below what the topic and one
    producer batch take, less room for Kafka's own headers."""
    accepted = min(BATCH_SIZE, topic_settings(config.kafka, RAW).max_message_bytes)
    return accepted - min(PACK_MARGIN, accepted // 8)


class Batch:
    """The sends of one pass (or one step of it) that must all be acknowledged together."""

    def __init__(self, publisher: Publisher, state: MailboxState) -> None:
        self._publisher = publisher
        self._state = state
        self._sends: ConfirmedSends[None] = ConfirmedSends(publisher.producer)
        self._state_updates: list[tuple[str, Record | None]] = []
        self._packer = Packer(publisher.pack_limit, PACK_LINGER)

    @property
    def tenant(self) -> str:
        return self._state.tenant

    @property
    def mailbox(self) -> str:
        return self._state.mailbox

    def raw(self, key: bytes, record: Record) -> None:
        """A mail under its dedup shard ``key``: every copy of a message, from any mailbox,
        goes to the one partition whose dedup table knows the earlier ones.

        Mails for one partition are packed into one record (``mailferry.packing``) until
        the pack is full or has waited ``PACK_LINGER``; ``confirm`` sends what is left, a
        lone mail as a plain record."""
        p = self._publisher
        partition = partition_for(key, p.partitions(p.raw_topic))
        for pack in self._packer.add(partition, key, encode_raw(record), time.monotonic()):
            self._send_pack(pack)

    def _send_pack(self, pack: Pack) -> None:
        p = self._publisher
        self._sends.send(p.raw_topic, key=pack.key, value=pack_value(pack.values), partition=pack.partition)

    def state(self, key: str, record: Record | None) -> None:
        """A fetch-state record (``None``: forget the message).

        Held back until ``confirm`` has seen every raw record acknowledged: a state record
        saying "fetched" must never reach Kafka for a raw record that did not.
        """
        self._state_updates.append((key, record))

    def _send_states(self) -> list[tuple[str, list[tuple[str, Record | None]]]]:
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
        p = self._publisher
        key, value = audit_event(
            event,
            stage="fetch",
            tenant=self.tenant,
            mailbox_id=self.mailbox,
            message_id=normalise_message_id(message_id),
            sha256=sha256,
            details=details,
        )
        self._sends.send(p.audit_topic, key=key, value=value)

    def confirm(self, timeout: float = 60.0) -> None:
        """Wait for every raw record and audit event, then write and wait for the state records.

        Raises the Kafka mapper's error if Kafka did not acknowledge something; the local
        state is updated only when everything was.
        """
        for pack in self._packer.drain():
            self._send_pack(pack)
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
        self._partitions: dict[str, int] = {}

    def partitions(self, topic: str) -> int:
        """How many partitions ``topic`` has (asked once: mailferry never adds partitions to a
        topic in use, as that would move mailboxes to other partitions)."""
        count = self._partitions.get(topic)
        if count is None:
            found = self.producer.partitions_for(topic)
            if not found:
                raise TransientError(f"topic {topic} has no partitions (yet)")
            count = self._partitions[topic] = len(found)
        return count

    def state_partitions(self) -> int:
        return self.partitions(self.state_topic)

    def batch(self, state: MailboxState) -> Batch:
        return Batch(self, state)

    def close(self, timeout: float = 30.0) -> None:
        self.producer.close(timeout=timeout)
