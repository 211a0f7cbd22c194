"""Reading audit events back from Kafka at positions the index gave.

One message's events sit close together in one partition (they share the audit key), so a
seek followed by one small fetch usually returns all of them; fetches are kept small
(``FETCH_BYTES``) because most of what a fetch returns belongs to other messages.
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
        tps = [TopicPartition(self.topic, p) for p in partitions]
        if not tps:
            return {}
        return {tp.partition: offset for tp, offset in self._consumer.beginning_offsets(tps).items()}

    def read(self, positions: Iterable[Position]) -> Iterator[ConsumerRecord]:
        """The records at ``positions`` that are still retained, partition by partition."""
        wanted: dict[int, list[int]] = defaultdict(list)
        for position in positions:
            wanted[position.partition].append(position.offset)
        start = self.log_start(wanted)
        for partition, offsets in sorted(wanted.items()):
            retained = sorted(o for o in set(offsets) if o >= start.get(partition, 0))
            if retained:
                yield from self._read_partition(TopicPartition(self.topic, partition), retained)

    def _read_partition(self, tp: TopicPartition, offsets: list[int]) -> Iterator[ConsumerRecord]:
        consumer = self._consumer
        consumer.assign([tp])
        end = consumer.end_offsets([tp])[tp]
        pending = [o for o in offsets if o < end]
        index, empty = 0, 0
        if pending:
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
