"""The delivery ledger: which (target mailbox, dedup key) pairs were written, kept in Kafka.

Processing is at-least-once: a worker that dies after writing a message and before
committing its offset sees the record again. The ledger, a compacted topic keyed by
``tenant/target/mailbox/dedup key``, is what keeps that second sight from writing a second
copy: every worker reads it whole at start-up and then follows it, and checks it before
each write. Entries are written (and acknowledged) before the offset is committed.

Memory: one 16-byte digest per delivered message; a million deliveries cost about 100 MB
with Python's set overhead. Compaction keeps the topic itself at one record per key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from kafka import KafkaProducer, TopicPartition
from kafka.producer.future import FutureRecordMetadata

from mailferry.config.kafka import KafkaConfig
from mailferry.errors import TransientError
from mailferry.kafka.clients import new_consumer
from mailferry.kafka.topics import DELIVERY_LEDGER, full_name

log = logging.getLogger(__name__)


def ledger_key(tenant: str, target: str, mailbox: str, dedup_key: str) -> bytes:
    return f"{tenant}/{target}/{mailbox.lower()}/{dedup_key}".encode()


def _digest(key: bytes) -> bytes:
    return hashlib.blake2b(key, digest_size=16).digest()


class Ledger:
    """In-memory view of the ledger topic, followed by a background thread."""

    def __init__(self, kafka: KafkaConfig, servers: list[str], producer: KafkaProducer) -> None:
        self.topic = full_name(kafka, DELIVERY_LEDGER)
        self._producer = producer
        self._seen: set[bytes] = set()
        self._lock = threading.Lock()
        self._claimed: set[bytes] = set()
        self._claimed_changed = threading.Condition()
        self._stop = threading.Event()
        self._consumer = new_consumer(kafka, servers, isolation_level="read_uncommitted")
        self._thread: threading.Thread | None = None

    def load(self, timeout_s: float = 120.0) -> int:
        """Read the topic to its current end, then follow it; returns the entries loaded."""
        partitions = self._consumer.partitions_for_topic(self.topic) or set()
        assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        if not assigned:
            raise TransientError(f"ledger topic {self.topic} does not exist: run `mailferry topics ensure`")
        self._consumer.assign(assigned)
        self._consumer.seek_to_beginning(*assigned)
        end = self._consumer.end_offsets(assigned)
        deadline = datetime.now(UTC).timestamp() + timeout_s
        while any(self._consumer.position(tp) < end[tp] for tp in assigned):
            if datetime.now(UTC).timestamp() > deadline:
                raise TransientError(f"ledger topic {self.topic}: not read to its end in {timeout_s}s")
            self._absorb(self._consumer.poll(timeout_ms=500, max_records=5000))
        self._thread = threading.Thread(target=self._follow, name="ledger-follow", daemon=True)
        self._thread.start()
        return len(self._seen)

    def _absorb(self, batch: dict[TopicPartition, list[object]]) -> None:
        with self._lock:
            for records in batch.values():
                for record in records:
                    key = getattr(record, "key", None)
                    if key is None:
                        continue
                    if getattr(record, "value", None) is None:
                        self._seen.discard(_digest(key))
                    else:
                        self._seen.add(_digest(key))

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                self._absorb(self._consumer.poll(timeout_ms=500, max_records=5000))
            except Exception as exc:  # keep following; a gap only costs a target-side check
                log.warning("ledger follow: %s", exc)
                self._stop.wait(1.0)

    @contextmanager
    def claim(self, key: bytes) -> Iterator[None]:
        """Hold ``key`` while one attempt checks and writes it.

        The same delivery can be in flight twice (a stream replay put it on the topic
        again); without the claim both copies would pass the check before either wrote.
        """
        digest = _digest(key)
        with self._claimed_changed:
            while digest in self._claimed:
                self._claimed_changed.wait()
            self._claimed.add(digest)
        try:
            yield
        finally:
            with self._claimed_changed:
                self._claimed.discard(digest)
                self._claimed_changed.notify_all()

    def contains(self, key: bytes) -> bool:
        with self._lock:
            return _digest(key) in self._seen

    def record(self, key: bytes, delivery_id: str) -> FutureRecordMetadata:
        """Send one entry; the caller waits for the acknowledgement before committing."""
        value = json.dumps({"delivery_id": delivery_id, "at": datetime.now(UTC).isoformat()}).encode()
        future = self._producer.send(self.topic, key=key, value=value)
        with self._lock:
            self._seen.add(_digest(key))
        return future

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._consumer.close()
