"""Writing mails to ``mailferry.raw``: the one way for every writer that has many of them.

The fetcher's passes and ``mailferry import`` both send a stream of small mails whose
acknowledgement decides something (a source message deleted, a checkpoint moved). Both use
the producer tuned here, pack mails bound for one partition into one record
(``mailferry.packing``), and learn what Kafka kept through ``ConfirmedSends``: one record
per mail would cost the broker and the client a request's work per mail.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from typing import Any, Generic, TypeVar

from kafka import KafkaProducer

from mailferry.config import MailferryConfig
from mailferry.errors import TransientError
from mailferry.kafka.clients import new_producer
from mailferry.kafka.confirm import ConfirmedSends
from mailferry.kafka.topics import AUDIT, FETCH_STATE, RAW, topic_settings
from mailferry.packing import RAW_PACK, Pack, Packer
from mailferry.shard import partition_for

BATCH_SIZE = 4 * 1024 * 1024
LINGER_MS = 100
PACK_LINGER = 0.05  # seconds a pack of raw mails waits for more before it goes
PACK_MARGIN = 64 * 1024  # below the topic's record limit: Kafka's own record and batch headers

Tag = TypeVar("Tag", bound=Hashable)


def make_producer(config: MailferryConfig, servers: list[str], **overrides: Any) -> KafkaProducer:
    """The raw writers' producer: idempotent, ``acks=all``, tuned for few large requests.

    Messages are often larger than the 16 KiB default batch, which would mean one request per
    record. Batches of up to 4 MiB (never above what the topics accept) and a 100 ms linger
    let a pass travel in a few large requests, which costs less CPU per record both here and
    in the broker (measured: ``benchmarks/fetch_throughput.py``). The linger adds no latency
    to a pass: every writer confirms, and confirming flushes.
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


def partition_count(producer: KafkaProducer, topic: str) -> int:
    """How many partitions ``topic`` has (mailferry never adds partitions to a topic in use:
    that would move mailboxes and dedup shards to other partitions)."""
    found = producer.partitions_for(topic)
    if not found:
        raise TransientError(f"topic {topic} has no partitions (yet)")
    return len(found)


class RawSends(Generic[Tag]):
    """Encoded mails packed per raw partition and sent through ``sends``.

    Each mail keeps its own ``tag`` in ``sends``: a pack's record stands for the tags of all
    its mails, so marks given to ``sends.then`` go only after the pack that holds their mail
    was acknowledged. ``flush`` before waiting on ``sends``: it sends the packs still open.
    """

    def __init__(
        self, sends: ConfirmedSends[Tag], topic: str, partitions: int, limit: int, linger: float = PACK_LINGER
    ) -> None:
        self.sends = sends
        self.topic = topic
        self.partitions = partitions
        self._packer = Packer(limit, linger)
        self._tags: dict[int, list[Tag | None]] = {}  # per partition, the tags of its open pack(s)
        self.records = 0  # raw records sent, for reports and tests

    def add(self, key: bytes, value: bytes, tag: Tag | None = None) -> None:
        """A mail under its dedup shard ``key``: every copy of a message, from any mailbox or
        import, goes to the one partition whose dedup table knows the earlier ones."""
        partition = partition_for(key, self.partitions)
        self._tags.setdefault(partition, []).append(tag)
        for pack in self._packer.add(partition, key, value, time.monotonic()):
            self._send(pack)

    def flush(self) -> None:
        for pack in self._packer.drain():
            self._send(pack)

    def _send(self, pack: Pack) -> None:
        waiting = self._tags[pack.partition]
        tags, self._tags[pack.partition] = waiting[: len(pack.values)], waiting[len(pack.values) :]
        self.sends.send(
            self.topic, key=pack.key, value=RAW_PACK.pack(pack.values), partition=pack.partition, tags=tags
        )
        self.records += 1
