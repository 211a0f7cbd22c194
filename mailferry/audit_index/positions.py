"""Reading audit events back from Kafka at positions the index gave.

One message's events sit close together (they share the audit key, or the stream wrote them
in one pack with the events of the same input record), so a seek followed by one small fetch
usually returns all of them; a position is a whole record, which may be a pack of several
messages' events, and the caller keeps only the events it matches; fetches are kept small
(``FETCH_BYTES``) because most of what a fetch returns belongs to other messages. A trace
asks in rounds and its rounds name many of the same positions, so a reader returns each
position once and asks the broker for a partition's first and last offsets once: every
round trip counts against the trace's one-second budget.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator

from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from mailferry.audit_index.store import Position
from mailferry.config.kafka import KafkaConfig
from mailferry.kafka.clients import new_consumer

FETCH_BYTES = 64 * 1024
SEEK_GAP = 200  # offsets: further than this ahead, seek instead of reading through
POLL_MS = 1000
EMPTY_POLLS = 5


class PositionReader:
    def __init__(self, kafka: KafkaConfig, servers: list[str], topic: str) -> None:
        self.topic = topic
        self._consumer = new_consumer(
            kafka, servers, isolation_level="read_uncommitted", max_partition_fetch_bytes=FETCH_BYTES
        )
        self._starts: dict[int, int] = {}
        self._ends: dict[int, int] = {}
        self._returned: set[Position] = set()

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> PositionReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def partitions(self) -> list[int]:
        return sorted(self._consumer.partitions_for_topic(self.topic) or ())

    def log_start(self, partitions: Iterable[int]) -> dict[int, int]:
        """The first retained offset of each partition: below it, history is gone."""
        wanted = set(partitions)
        missing = [TopicPartition(self.topic, p) for p in sorted(wanted - self._starts.keys())]
        if missing:
            found = self._consumer.beginning_offsets(missing)
            self._starts.update({tp.partition: offset for tp, offset in found.items()})
        return {p: self._starts[p] for p in wanted if p in self._starts}

    def _log_end(self, partitions: Iterable[int]) -> dict[int, int]:
        wanted = set(partitions)
        missing = [TopicPartition(self.topic, p) for p in sorted(wanted - self._ends.keys())]
        if missing:
            found = self._consumer.end_offsets(missing)
            self._ends.update({tp.partition: offset for tp, offset in found.items()})
        return {p: self._ends[p] for p in wanted if p in self._ends}

    def read(self, positions: Iterable[Position]) -> Iterator[ConsumerRecord]:
        """The records at ``positions`` that are still retained and that this reader has not
        returned before, partition by partition."""
        wanted: dict[int, list[int]] = defaultdict(list)
        for position in set(positions) - self._returned:
            wanted[position.partition].append(position.offset)
            self._returned.add(position)
        if not wanted:
            return
        start, end = self.log_start(wanted), self._log_end(wanted)
        for partition, offsets in sorted(wanted.items()):
            first, last = start.get(partition, 0), end.get(partition, 0)
            retained = sorted(o for o in offsets if first <= o < last)
            if retained:
                yield from self._read_partition(TopicPartition(self.topic, partition), retained)

    def _read_partition(self, tp: TopicPartition, pending: list[int]) -> Iterator[ConsumerRecord]:
        consumer = self._consumer
        consumer.assign([tp])
        index, empty = 0, 0
        consumer.seek(tp, pending[0])
        while index < len(pending) and empty < EMPTY_POLLS:
            batch = consumer.poll(timeout_ms=POLL_MS).get(tp, [])
            empty = 0 if batch else empty + 1
            for record in batch:
                while index < len(pending) and pending[index] < record.offset:
                    index += 1  # compacted or aborted: that offset holds nothing
                if index < len(pending) and record.offset == pending[index]:
                    yield record
                    index += 1
                if index < len(pending) and pending[index] - record.offset > SEEK_GAP:
                    consumer.seek(tp, pending[index])
                    break
