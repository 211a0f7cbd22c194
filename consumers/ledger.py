"""The delivery ledger: what happened to each (target mailbox, dedup key), kept in Kafka.

Processing is at-least-once: a worker that dies after writing a message and before
committing its offset sees the record again. The ledger, a compacted topic keyed by
``tenant/target/mailbox/dedup key``, is what keeps that second sight from writing a second
copy. It is a write-ahead log (see ``ledger_state``): an attempt on a target that can be
asked is recorded, and acknowledged, before the write; its outcome after it.

Ownership follows the partition: an entry goes to the ledger partition of the same number
as the delivery's partition on the deliver topic (and its retry tiers), so the one worker
that owns that partition is the only writer of its entries. A worker reads the topic whole
at start-up and then follows it; when it is given a partition, ``sync`` reads that ledger
partition to its current end before any record of it is worked, so the lookup is what the
previous owner left, not a follower's lagging view. Its own writes enter its view as it
sends them (the follower skips their echo, marked by the writer header).

Entries made together on one partition (an attempt batch's write-ahead entries, its
delivered entries) go as one pack record (``begin_many``, ``record_many``): one Kafka record
per entry was the deliver worker's largest cost per delivery after the target itself. A pack
is never compacted into anything (its key is its own), so the topic keeps about one record
per batch and per kind, where single entries compacted to one record per delivery.

Memory: one 16-byte digest and a small int per delivery; about 150 MB per million.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import NamedTuple

from kafka import KafkaProducer, TopicPartition
from kafka.producer.future import FutureRecordMetadata

from mailferry.config.kafka import KafkaConfig
from mailferry.consumers.ledger_state import (
    DELIVERED,
    State,
    attempt_state,
    decode,
    decode_pack,
    encode,
    encode_pack,
    moved_state,
)
from mailferry.errors import TransientError
from mailferry.kafka.clients import new_consumer
from mailferry.kafka.topics import DELIVERY_LEDGER, full_name, pack_limit

log = logging.getLogger(__name__)
WRITER_HEADER = "mf-writer"
PACK_HEADER = "mf-ledger-pack"
_ENTRY_OVERHEAD = 16  # JSON brackets, quotes and the generation, per entry of a pack


class Entry(NamedTuple):
    """One entry to write; ``partition`` is its delivery's (None: by key, never packed)."""

    key: bytes
    delivery_id: str
    partition: int | None
    generation: int = 0


def ledger_key(tenant: str, target: str, mailbox: str, dedup_key: str) -> bytes:
    return f"{tenant}/{target}/{mailbox.lower()}/{dedup_key}".encode()


def _digest(key: bytes) -> bytes:
    return hashlib.blake2b(key, digest_size=16).digest()


class Ledger:
    """In-memory view of the ledger topic, followed by a background thread."""

    def __init__(
        self,
        kafka: KafkaConfig,
        servers: list[str],
        producer: KafkaProducer,
        *,
        urgent: KafkaProducer | None = None,
    ) -> None:
        """``urgent`` (no linger) sends the write-ahead, moved and forget entries, in the order
        they are made; the delivered entries, waited for only before an offset commit, go
        through ``producer`` and share its requests (one request per entry cost the worker
        more CPU than the entries themselves). A delivered entry is the last of its key
        (later records of the delivery are skipped), and the write-ahead entry before it
        was acknowledged before the target write, so the order per key holds."""
        self.topic = full_name(kafka, DELIVERY_LEDGER)
        self.writer_id = uuid.uuid4().hex.encode()
        self._pack_limit = pack_limit(kafka, DELIVERY_LEDGER)
        self._pack_numbers = itertools.count()
        self._producer = producer
        self._urgent = urgent or producer
        self._states: dict[bytes, int] = {}
        self._lock = threading.Lock()
        self._claimed: set[bytes] = set()
        self._claimed_changed = threading.Condition()
        self._stop = threading.Event()
        self._sync_lock = threading.Lock()
        self._sync_wanted: dict[int, threading.Event] = {}
        self._sync_targets: dict[int, tuple[int, threading.Event]] = {}
        self._consumer = new_consumer(kafka, servers, isolation_level="read_uncommitted")
        self._assigned: list[TopicPartition] = []
        self._thread: threading.Thread | None = None

    def partitions(self) -> int:
        return len(self._consumer.partitions_for_topic(self.topic) or ())

    def load(self, timeout_s: float = 120.0) -> int:
        """Read the topic to its current end, then follow it; returns the entries loaded."""
        partitions = self._consumer.partitions_for_topic(self.topic) or set()
        assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        if not assigned:
            raise TransientError(f"ledger topic {self.topic} does not exist: run `mailferry topics ensure`")
        self._assigned = assigned
        self._consumer.assign(assigned)
        self._consumer.seek_to_beginning(*assigned)
        end = self._consumer.end_offsets(assigned)
        deadline = time.monotonic() + timeout_s
        while any(self._consumer.position(tp) < end[tp] for tp in assigned):
            if time.monotonic() > deadline:
                raise TransientError(f"ledger topic {self.topic}: not read to its end in {timeout_s}s")
            self._absorb(self._consumer.poll(timeout_ms=500, max_records=5000), echoes=True)
        self._thread = threading.Thread(target=self._follow, name="ledger-follow", daemon=True)
        self._thread.start()
        return len(self._states)

    def _absorb(self, batch: dict[TopicPartition, list[object]], *, echoes: bool = False) -> None:
        with self._lock:
            for records in batch.values():
                for record in records:
                    key = getattr(record, "key", None)
                    if key is None:
                        continue
                    headers = dict(getattr(record, "headers", None) or [])
                    if not echoes and headers.get(WRITER_HEADER) == self.writer_id:
                        continue  # our own write, in our view since we sent it
                    value = getattr(record, "value", None)
                    if PACK_HEADER in headers:
                        for entry_key, state in decode_pack(value):
                            self._apply(_digest(entry_key), state)
                    else:
                        self._apply(_digest(key), decode(value))

    def _apply(self, digest: bytes, state: State) -> None:
        if state is None:
            self._states.pop(digest, None)
        else:
            self._states[digest] = state

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                self._start_syncs()
                self._absorb(self._consumer.poll(timeout_ms=200, max_records=5000))
                self._finish_syncs()
            except Exception as exc:  # keep following; a gap only costs a target-side check
                log.warning("ledger follow: %s", exc)
                self._stop.wait(1.0)

    # -- the owner's barrier ----------------------------------------------------------------

    def sync(self, partitions: Iterable[int], timeout_s: float = 60.0) -> None:
        """Return once the view holds every entry of ``partitions`` written before this call.

        Called when a partition is assigned: the previous owner finished (or died) before
        the partition was given up, so its entries are all on the topic by now.
        """
        events = []
        with self._sync_lock:
            for partition in set(partitions):
                event = threading.Event()
                self._sync_wanted[partition] = event
                events.append(event)
        deadline = time.monotonic() + timeout_s
        for event in events:
            if not event.wait(max(0.0, deadline - time.monotonic())):
                raise TransientError(
                    f"ledger topic {self.topic}: partitions not read to their end in {timeout_s}s"
                )

    def _start_syncs(self) -> None:
        with self._sync_lock:
            wanted, self._sync_wanted = self._sync_wanted, {}
        if not wanted:
            return
        tps = [TopicPartition(self.topic, p) for p in wanted]
        end = self._consumer.end_offsets(tps)
        with self._sync_lock:
            for tp in tps:
                self._sync_targets[tp.partition] = (end[tp], wanted[tp.partition])

    def _finish_syncs(self) -> None:
        with self._sync_lock:
            targets = list(self._sync_targets.items())
        for partition, (end, event) in targets:
            if self._consumer.position(TopicPartition(self.topic, partition)) >= end:
                event.set()
                with self._sync_lock:
                    self._sync_targets.pop(partition, None)

    # -- one delivery -----------------------------------------------------------------------

    @contextmanager
    def claim(self, keys: Iterable[bytes]) -> Iterator[None]:
        """Hold ``keys`` (distinct) while one attempt checks and writes them.

        The same delivery can be in flight twice in one worker (a stream replay put it on
        the topic again, or its original and its retry record are read together); without
        the claim both copies would pass the check before either wrote. All keys are taken
        at once, or none, so two batches never wait for each other.
        """
        digests = {_digest(key) for key in keys}
        with self._claimed_changed:
            while digests & self._claimed:
                self._claimed_changed.wait()
            self._claimed |= digests
        try:
            yield
        finally:
            with self._claimed_changed:
                self._claimed -= digests
                self._claimed_changed.notify_all()

    def state(self, key: bytes) -> State:
        with self._lock:
            return self._states.get(_digest(key))

    def contains(self, key: bytes) -> bool:
        return self.state(key) == DELIVERED

    def moved(self, key: bytes, generation: int, delivery_id: str, partition: int) -> FutureRecordMetadata:
        """The delivery now lives in the retry record of ``generation`` (already acknowledged)."""
        return self._send(
            key, partition, "moved", generation, delivery_id, moved_state(generation), urgent=True
        )

    def record(self, key: bytes, delivery_id: str, *, partition: int | None = None) -> FutureRecordMetadata:
        """The delivered entry; the caller waits for the acknowledgement before committing."""
        return self._send(key, partition, "delivered", 0, delivery_id, DELIVERED)

    def begin_many(self, entries: Sequence[Entry]) -> list[FutureRecordMetadata]:
        """The write-ahead entries of a batch, packed per partition; a future per entry. The
        caller waits for them before writing to the target."""
        return self._send_many("attempt", entries, attempt_state, urgent=True)

    def record_many(self, entries: Sequence[Entry]) -> list[FutureRecordMetadata]:
        """The delivered entries of a batch, packed per partition; a future per entry."""
        return self._send_many("delivered", entries, lambda _generation: DELIVERED)

    def forget(self, key: bytes, partition: int) -> FutureRecordMetadata:
        """Clear the entry (a dead letter): a requeued record starts afresh. A kept
        ``forgotten`` entry, not a tombstone: a pack holding the key outlives a tombstone."""
        return self._send(key, partition, "forgotten", 0, "", None, urgent=True)

    def _send(
        self,
        key: bytes,
        partition: int | None,
        kind: str,
        generation: int,
        delivery_id: str,
        state: State,
        *,
        urgent: bool = False,
    ) -> FutureRecordMetadata:
        value = encode(kind, generation, delivery_id, datetime.now(UTC).isoformat())
        future = (self._urgent if urgent else self._producer).send(
            self.topic, key=key, value=value, partition=partition, headers=[(WRITER_HEADER, self.writer_id)]
        )
        with self._lock:
            self._apply(_digest(key), state)
        return future

    def _send_many(
        self, kind: str, entries: Sequence[Entry], state_of: Callable[[int], State], *, urgent: bool = False
    ) -> list[FutureRecordMetadata]:
        """One record per partition and ``_pack_limit`` bytes; an entry alone, or one without
        a partition, goes as a single entry (what a release before packs reads, too)."""
        futures: list[FutureRecordMetadata | None] = [None] * len(entries)
        at = datetime.now(UTC).isoformat()
        for partition, chunk in _packs(entries, self._pack_limit):
            pack = [entries[i] for i in chunk]
            if partition is None or len(pack) == 1:
                for i, e in zip(chunk, pack, strict=True):
                    state = state_of(e.generation)
                    futures[i] = self._send(
                        e.key, e.partition, kind, e.generation, e.delivery_id, state, urgent=urgent
                    )
                continue
            value = encode_pack(kind, [(e.key, e.generation, e.delivery_id) for e in pack], at)
            headers = [(WRITER_HEADER, self.writer_id), (PACK_HEADER, b"1")]
            pack_key = b"~pack/%s/%d" % (self.writer_id, next(self._pack_numbers))
            future = (self._urgent if urgent else self._producer).send(
                self.topic, key=pack_key, value=value, partition=partition, headers=headers
            )
            with self._lock:
                for e in pack:
                    self._apply(_digest(e.key), state_of(e.generation))
            for i in chunk:
                futures[i] = future
        return [f for f in futures if f is not None]

    def flush(self, timeout_s: float) -> None:
        self._urgent.flush(timeout=timeout_s)
        self._producer.flush(timeout=timeout_s)

    def __len__(self) -> int:
        with self._lock:
            return len(self._states)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._consumer.close()


def _packs(entries: Sequence[Entry], limit: int) -> Iterator[tuple[int | None, list[int]]]:
    """Indexes of ``entries`` per partition, cut where a pack would pass ``limit`` bytes."""
    by_partition: dict[int | None, list[int]] = {}
    for i, entry in enumerate(entries):
        by_partition.setdefault(entry.partition, []).append(i)
    for partition, indexes in by_partition.items():
        chunk: list[int] = []
        size = 0
        for i in indexes:
            entry_size = len(entries[i].key) + len(entries[i].delivery_id) + _ENTRY_OVERHEAD
            if chunk and size + entry_size > limit:
                yield partition, chunk
                chunk, size = [], 0
            chunk.append(i)
            size += entry_size
        yield partition, chunk
