"""The dedup table, written to its changelog once per input record instead of once per key.

Faust sends one changelog record per ``table[key] = value``: one per delivery, the third
record every mail cost the stream. Here a sighting goes into the local store at once (so
the next mail of the same pack, or the next record, sees it) and is kept aside;
``flush_sightings`` sends all the sightings one raw record caused as one changelog record,
keyed by that record's origin (``topic/partition/offset``, unique, and the same when the
record is read again). Recovery (an empty data folder, or partitions taken over in a
rebalance) goes through ``apply_changelog_batch``, which expands such a record back into
one store entry per sighting, in changelog order: the rebuilt table holds what the table
that wrote it held. A per-key record (written before this change) is applied as Faust
applies it, so an old changelog still recovers.

The record goes through Faust's ``send_changelog``: its producer buffer, which Faust flushes
before it commits an offset, and its callback that keeps the changelog offset persisted in
RocksDB. The outbox (``streams.outbox``) watches it like every other send, so the raw offset
is never committed past a sighting Kafka did not take.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import faust
from faust.types import EventT
from faust.types.tuples import Message

log = logging.getLogger(__name__)

PACK_PREFIX = b"\x00sightings:"  # a dedup key starts with its tenant id, never with NUL
_ITEM_OVERHEAD = 8  # JSON brackets, quotes and commas around one [key, value] pair


class DedupTable(faust.Table[bytes, Any]):
    """A Faust table whose writes of one input record reach the changelog as one record."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending: dict[str, dict[str, Any]] = {}

    def remember(self, key: bytes, value: dict[str, Any]) -> None:
        """Store a sighting locally now; it reaches the changelog with ``flush_sightings``.

        Only inside the agent: the local store files it under the current event's partition.
        """
        self.data[key] = value
        self._pending[key.decode()] = value

    def flush_sightings(self, origin: str, partition: int, limit: int) -> int:
        """Send the sightings remembered since the last call; returns how many records.

        More than ``limit`` bytes of them go as several records (``origin#1``, ...)."""
        if not self._pending:
            return 0
        pending, self._pending = list(self._pending.items()), {}
        chunks: list[list[tuple[str, dict[str, Any]]]] = [[]]
        size = 0
        for key, value in pending:
            item = len(key) + len(json.dumps(value)) + _ITEM_OVERHEAD
            if chunks[-1] and size + item > limit:
                chunks.append([])
                size = 0
            chunks[-1].append((key, value))
            size += item
        for number, chunk in enumerate(chunks):
            record_key = PACK_PREFIX + (origin if number == 0 else f"{origin}#{number}").encode()
            self.send_changelog(partition, record_key, {"sightings": chunk})
        return len(chunks)

    def apply_changelog_batch(self, batch: Iterable[EventT[Any]]) -> None:
        super().apply_changelog_batch(self._expanded(batch))

    def _expanded(self, batch: Iterable[EventT[Any]]) -> Iterator[EventT[Any]]:
        for event in batch:
            message = event.message
            if not (message.key or b"").startswith(PACK_PREFIX):
                yield event
                continue
            if message.value is None:
                continue
            try:
                sightings = json.loads(message.value)["sightings"]
                pairs = [(str(key).encode(), value) for key, value in sightings]
            except (ValueError, KeyError, TypeError) as exc:
                log.error("stream: unreadable sightings record at %s/%s: %s", message.tp, message.offset, exc)
                continue
            for key, value in pairs:
                single = Message(
                    message.topic,
                    message.partition,
                    message.offset,
                    message.timestamp,
                    message.timestamp_type,
                    None,
                    key,
                    json.dumps(value).encode(),
                    None,
                    tp=message.tp,
                )
                yield faust.Event(self.app, key, value, None, single)
