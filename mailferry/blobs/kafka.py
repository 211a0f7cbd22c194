"""Kind ``kafka``: the claim check lives in Kafka itself, nothing else to run or back up.

Content goes in chunks to the ``blobs`` topic, every chunk keyed by the digest and sent to
one partition derived from it; a record on the compacted ``blobs.index`` topic then says
where they are (partition, first and last offset). A reader looks the digest up in the
index it follows, reads that offset range, keeps the records with its key in sequence
order (writers of other blobs interleave in the same partition) and checks the digest as
it streams. Both topics keep the longer of ``raw``'s and ``deliver.dlt``'s retention plus
the 7-day in-flight window (``topics.blob_retention_ms``), so a blob outlives the records
that refer to it; ``blobs prune`` has nothing to do for this kind.

Memory stays bounded both ways: a put spools to a temp file first (the key is the digest,
known only at the end) and sends it a chunk at a time through the producer's bounded
buffer; a read fetches at most a couple of chunks ahead.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from mailferry.blobs.base import (
    CHUNK,
    BlobCorruptError,
    BlobNotFoundError,
    digest_of,
    reference_of,
    verified_chunks,
)
from mailferry.blobs.spool import spool, spool_verified
from mailferry.config.kafka import KafkaConfig
from mailferry.errors import TransientError
from mailferry.kafka.clients import new_consumer, new_producer
from mailferry.kafka.errors import classify
from mailferry.kafka.topics import BLOBS, BLOBS_INDEX, full_name

RECORD_OVERHEAD = 64 * 1024  # key, headers and batch framing around one chunk
SEQ = "seq"
READ_STALL_SECONDS = 60.0
IN_FLIGHT = 8  # chunks sent but not acknowledged: what a put holds in memory


@dataclass(frozen=True)
class Location:
    partition: int
    first: int
    last: int
    size: int
    chunks: int
    written_ms: int

    def encode(self) -> bytes:
        return json.dumps(self.__dict__, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, value: bytes) -> Location | None:
        """None for a value this version cannot read (the index is topic input too)."""
        try:
            fields = json.loads(value)
            return cls(**{name: int(fields[name]) for name in cls.__dataclass_fields__})
        except (ValueError, TypeError, KeyError):
            return None


def partition_for(digest: str, partitions: int) -> int:
    """Every chunk of a blob in one partition, the same for every writer of that content."""
    return int(digest[:8], 16) % partitions


def chunk_size_for(wanted: int, max_message_bytes: int) -> int:
    return max(1024, min(wanted, max_message_bytes - RECORD_OVERHEAD))


@contextmanager
def _kafka_errors(action: str) -> Iterator[None]:
    """Kafka's errors at this boundary, by the Kafka mapper: mostly outages (the message is
    retried later); refused credentials or ACLs pause the role instead of failing each message."""
    try:
        yield
    except KafkaError as exc:
        raise classify(exc, f"blob store kafka: {action}") from exc


class KafkaBlobStore:
    def __init__(
        self,
        kafka: KafkaConfig,
        servers: list[str],
        *,
        chunk_size: int = CHUNK,
        spool_dir: Path | None = None,
        refresh_after: timedelta = timedelta(days=1),
    ) -> None:
        self.kafka = kafka
        self.servers = servers
        self.topic = full_name(kafka, BLOBS)
        self.index_topic = full_name(kafka, BLOBS_INDEX)
        settings = kafka.topics.overrides.get(BLOBS, kafka.topics.defaults)
        self.chunk_size = chunk_size_for(chunk_size, settings.max_message_bytes)
        self.spool_dir = spool_dir
        self.refresh_after_ms = int(refresh_after / timedelta(milliseconds=1))
        self._lock = threading.Lock()
        self._producer: KafkaProducer | None = None
        self._index_reader: KafkaConsumer | None = None
        self._index: dict[str, Location] = {}

    # --- writing ------------------------------------------------------------------------

    def _producer_now(self) -> KafkaProducer:
        with self._lock:
            if self._producer is None:
                self._producer = new_producer(
                    self.kafka,
                    self.servers,
                    max_request_size=self.chunk_size + RECORD_OVERHEAD,
                    batch_size=64 * 1024,
                )
            return self._producer

    def put_chunks(self, chunks: Iterable[bytes]) -> tuple[str, int]:
        spooled = spool(chunks, self.spool_dir)
        with spooled.file:
            known = self._lookup(spooled.digest)
            if known is not None and _now_ms() - known.written_ms < self.refresh_after_ms:
                return reference_of(spooled.digest), spooled.size
            with _kafka_errors("writing a blob"):
                location = self._send(spooled.digest, spooled.size, spooled.file)
        with self._lock:
            self._index[spooled.digest] = location
        return reference_of(spooled.digest), spooled.size

    def _send(self, digest: str, size: int, source: BinaryIO) -> Location:
        producer = self._producer_now()
        key = digest.encode()
        partition = partition_for(digest, len(producer.partitions_for(self.topic)))
        pending: deque[Any] = deque()  # kafka-python futures; its buffer has no bound of its own
        first = last = -1
        seq = 0
        while True:
            chunk = source.read(self.chunk_size)
            if not chunk and seq:
                break
            headers = [(SEQ, str(seq).encode())]
            pending.append(
                producer.send(self.topic, key=key, value=chunk, partition=partition, headers=headers)
            )
            seq += 1
            while len(pending) > IN_FLIGHT or (pending and not chunk):
                last = pending.popleft().get(timeout=120).offset
                first = last if first < 0 else first
            if not chunk:  # empty content: one empty chunk, so it has a location
                break
        producer.flush()
        while pending:
            last = pending.popleft().get(timeout=120).offset
            first = last if first < 0 else first
        location = Location(partition, first, last, size, seq, _now_ms())
        producer.send(self.index_topic, key=key, value=location.encode()).get(timeout=120)
        return location

    def put(self, data: bytes) -> str:
        return self.put_chunks([data])[0]

    # --- the index ----------------------------------------------------------------------

    def _lookup(self, digest: str) -> Location | None:
        with self._lock:
            found = self._index.get(digest)
            if found is None:
                with _kafka_errors("reading the blob index"):
                    self._catch_up()
                found = self._index.get(digest)
            return found

    def _catch_up(self) -> None:
        """Read the index from where it was left to its end now (caller holds the lock)."""
        if self._index_reader is None:
            reader = new_consumer(self.kafka, self.servers)
            partitions = [
                TopicPartition(self.index_topic, p)
                for p in reader.partitions_for_topic(self.index_topic) or ()
            ]
            if not partitions:
                reader.close()
                raise BlobNotFoundError(
                    f"topic {self.index_topic} does not exist: run `mailferry topics ensure`"
                )
            reader.assign(partitions)
            reader.seek_to_beginning(*partitions)
            self._index_reader = reader
        reader = self._index_reader
        partitions = list(reader.assignment())
        ends = reader.end_offsets(partitions)
        deadline = time.monotonic() + READ_STALL_SECONDS
        while any(reader.position(tp) < ends[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise TransientError("blob index: no progress reading to its end", reason_code="blob-store")
            for records in reader.poll(timeout_ms=500).values():
                for record in records:
                    if record.key is None or record.value is None:
                        continue
                    location = Location.decode(record.value)
                    if location is not None:
                        self._index[record.key.decode(errors="replace")] = location

    # --- reading ------------------------------------------------------------------------

    def _records(self, digest: str, location: Location) -> Iterator[bytes]:
        window = 2 * (self.chunk_size + RECORD_OVERHEAD)  # at most about two chunks fetched ahead
        with _kafka_errors("reading a blob"):
            consumer = new_consumer(
                self.kafka, self.servers, max_partition_fetch_bytes=window, fetch_max_bytes=window
            )
        try:
            tp = TopicPartition(self.topic, location.partition)
            consumer.assign([tp])
            with _kafka_errors("reading a blob"):
                if consumer.beginning_offsets([tp])[tp] > location.first:
                    raise BlobNotFoundError(f"blob sha256:{digest} has left {self.topic} (retention)")
                consumer.seek(tp, location.first)
            key = digest.encode()
            seq = 0
            deadline = time.monotonic() + READ_STALL_SECONDS
            while seq < location.chunks:
                with _kafka_errors("reading a blob"):
                    batch = consumer.poll(timeout_ms=500, max_records=1).get(tp, [])
                if not batch and time.monotonic() > deadline:
                    raise TransientError(
                        f"blob sha256:{digest}: no progress reading {tp}", reason_code="blob-store"
                    )
                for record in batch:
                    deadline = time.monotonic() + READ_STALL_SECONDS
                    if record.offset > location.last:
                        raise BlobCorruptError(
                            f"blob sha256:{digest}: {seq} of {location.chunks} chunks in {tp}"
                        )
                    if record.key != key:
                        continue
                    if dict(record.headers).get(SEQ) != str(seq).encode():
                        raise BlobCorruptError(f"blob sha256:{digest}: chunk {seq} out of order in {tp}")
                    seq += 1
                    yield record.value or b""
        finally:
            consumer.close()

    def iter_chunks(self, reference: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """The stored chunks as they are (``chunk_size`` is the local kind's read size)."""
        digest = digest_of(reference)
        location = self._lookup(digest)
        if location is None:
            raise BlobNotFoundError(f"blob {reference} is not in {self.index_topic}")
        yield from verified_chunks(digest, self._records(digest, location), self.topic)

    def open(self, reference: str) -> BinaryIO:
        digest = digest_of(reference)
        location = self._lookup(digest)
        if location is None:
            raise BlobNotFoundError(f"blob {reference} is not in {self.index_topic}")
        return spool_verified(digest, self._records(digest, location), self.spool_dir, self.topic)

    def read(self, reference: str) -> bytes:
        with self.open(reference) as handle:
            return handle.read()

    def exists(self, reference: str) -> bool:
        return self._lookup(digest_of(reference)) is not None

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close()
            if self._index_reader is not None:
                self._index_reader.close()
            self._producer = self._index_reader = None


def _now_ms() -> int:
    return int(time.time() * 1000)
