"""Reading a bounded range of a topic: from a time (or the start) to a time (or now).

Audit trace, replay and the dead-letter commands all read "what is there now" rather than
follow a live stream; the range is fixed when the scan starts, so a scan always ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from mailferry.config.kafka import KafkaConfig
from mailferry.kafka.clients import new_consumer


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def scan_topic(
    kafka: KafkaConfig,
    servers: list[str],
    topic: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    partitions: list[int] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> Iterator[ConsumerRecord]:
    """Every record of ``topic`` with a timestamp in [since, until), partition by partition.

    ``on_total`` hears the number of offsets in the range once it is fixed (for progress bars).
    """
    consumer = new_consumer(kafka, servers, isolation_level="read_uncommitted", consumer_timeout_ms=5000)
    try:
        available = consumer.partitions_for_topic(topic) or set()
        assigned = [
            TopicPartition(topic, p) for p in sorted(available) if partitions is None or p in partitions
        ]
        if not assigned:
            return
        consumer.assign(assigned)
        begin = consumer.beginning_offsets(assigned)
        end = consumer.end_offsets(assigned)
        if since is not None:
            found = consumer.offsets_for_times({tp: _millis(since) for tp in assigned})
            begin = {tp: (found[tp].offset if found.get(tp) else end[tp]) for tp in assigned}
        if until is not None:
            found = consumer.offsets_for_times({tp: _millis(until) for tp in assigned})
            end = {tp: (found[tp].offset if found.get(tp) else end[tp]) for tp in assigned}
        if on_total is not None:
            on_total(sum(max(0, end[tp] - begin[tp]) for tp in assigned))
        for tp in assigned:
            if begin[tp] >= end[tp]:
                continue
            consumer.assign([tp])
            consumer.seek(tp, begin[tp])
            empty_polls = 0
            while consumer.position(tp) < end[tp] and empty_polls < 5:
                batch = consumer.poll(timeout_ms=1000, max_records=500)
                empty_polls = 0 if batch else empty_polls + 1
                for record in batch.get(tp, []):
                    if record.offset >= end[tp]:
                        break
                    yield record
    finally:
        consumer.close()
