"""The ``mailferry audit index`` role: keeps the index file in step with the audit topic.

It assigns itself every partition of the topic (no consumer group: the index file holds its
own offsets, committed in the same transaction as the rows, so a crash never indexes an
event twice or skips one). Several indexers, each with its own folder, are independent
replicas. Deleting the folder and starting again rebuilds the index from what is retained.

Every event of a pack is filed under the pack's (partition, offset): a position names a
record, and the trace picks the events it wants out of it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from kafka import TopicPartition

from mailferry.audit import read_events
from mailferry.audit_index.keys import SIGHTED, event_keys, key_hash
from mailferry.audit_index.store import IndexStore
from mailferry.config.kafka import KafkaConfig
from mailferry.kafka.clients import new_consumer
from mailferry.schemas import UnknownSchemaError

log = logging.getLogger(__name__)

MAX_RECORDS = 5000
POLL_MS = 500
PARTITION_REFRESH_S = 30.0


@dataclass
class IndexStats:
    events: int = 0
    keys: int = 0
    undecodable: int = 0
    purged: int = 0


class Indexer:
    def __init__(
        self,
        kafka: KafkaConfig,
        servers: list[str],
        topic: str,
        store: IndexStore,
        *,
        purge_interval: float = 3600.0,
        max_records: int = MAX_RECORDS,
    ) -> None:
        self.topic = topic
        self.store = store
        self.stats = IndexStats()
        self.purge_interval = purge_interval
        self._consumer = new_consumer(
            kafka, servers, isolation_level="read_uncommitted", max_poll_records=max_records
        )
        self._assigned: set[int] = set()

    def close(self) -> None:
        self._consumer.close()

    def _refresh_assignment(self) -> None:
        partitions = self._consumer.partitions_for_topic(self.topic) or set()
        if partitions == self._assigned:
            return
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        progress = self.store.progress()
        start = self._consumer.beginning_offsets(tps)
        for tp in tps:
            # past the log start when retention ran while the indexer was down
            self._consumer.seek(tp, max(progress.get(tp.partition, 0), start[tp]))
        self._assigned = set(partitions)
        log.info("indexing %s partitions %s", self.topic, sorted(partitions))

    def step(self) -> int:
        """Index what one poll returns; the number of events indexed."""
        if not self._assigned:
            self._refresh_assignment()
        batches = self._consumer.poll(timeout_ms=POLL_MS)
        rows: list[tuple[int, int, int]] = []
        sightings: list[tuple[int, int, int, int]] = []
        progress: dict[int, int] = {}
        count = 0
        for tp, records in batches.items():
            for record in records:
                progress[tp.partition] = record.offset + 1
                try:
                    events = read_events(record)
                except (UnknownSchemaError, ValueError, EOFError):
                    self.stats.undecodable += 1
                    continue
                count += len(events)
                for event in events:
                    at_ms = int(event["at"].timestamp() * 1000)
                    for key in event_keys(event):
                        hashed = key_hash(key)
                        rows.append((hashed, tp.partition, record.offset))
                        if key.startswith(SIGHTED):
                            sightings.append((hashed, at_ms, tp.partition, record.offset))
        if progress:
            self.store.add(rows, sightings, progress)
            self.stats.events += count
            self.stats.keys += len(rows)
        return count

    def purge(self) -> int:
        tps = [TopicPartition(self.topic, p) for p in sorted(self._assigned)]
        if not tps:
            return 0
        start = {tp.partition: o for tp, o in self._consumer.beginning_offsets(tps).items()}
        dropped = self.store.purge(start)
        self.stats.purged += dropped
        return dropped

    def caught_up(self) -> bool:
        """Whether every partition is indexed up to its end (for tests and benchmarks)."""
        self._refresh_assignment()
        if not self._assigned:
            return False
        tps = [TopicPartition(self.topic, p) for p in sorted(self._assigned)]
        end = self._consumer.end_offsets(tps)
        progress = self.store.progress()
        start = self._consumer.beginning_offsets(tps)
        return all(max(progress.get(tp.partition, 0), start[tp]) >= end[tp] for tp in tps)

    def catch_up(self, timeout: float = 60.0) -> None:
        """Index until every partition is indexed to its end (tests, benchmarks, rebuilds)."""
        deadline = time.monotonic() + timeout
        while not self.caught_up():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the audit index did not catch up with {self.topic} in {timeout} s")
            self.step()

    def run(self, stop: threading.Event, *, on_step: Callable[[IndexStats], None] | None = None) -> None:
        next_refresh = 0.0
        next_purge = time.monotonic() + self.purge_interval
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_refresh:
                self._refresh_assignment()
                next_refresh = now + PARTITION_REFRESH_S
            if not self._assigned:
                stop.wait(1.0)
                continue
            self.step()
            if on_step is not None:
                on_step(self.stats)
            if time.monotonic() >= next_purge:
                dropped = self.purge()
                log.info("purged %d index rows beyond the topic's retention", dropped)
                next_purge = time.monotonic() + self.purge_interval
