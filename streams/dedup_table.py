"""The dedup table, written to its changelog once per input record instead of once per key.

Faust sends one changelog record per ``table[key] = value``: one per delivery, the third
record every mail cost the stream. Here a sighting is kept aside while its raw record is
processed (``sighting`` finds it there, so the next mail of the same pack sees it);
``flush_sightings`` writes all the sightings one raw record caused to the local store in one
RocksDB write batch (one write per key cost a write of RocksDB's log, a system call, each)
and sends them as one changelog record, keyed by that record's origin
(``topic/partition/offset``, unique, and the same when the record is read again).
Recovery (an empty data folder, or partitions taken over in a
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
from faust.stores import rocksdb as faust_rocksdb
from faust.types import EventT
from faust.types.tuples import Message

log = logging.getLogger(__name__)

PACK_PREFIX = b"\x00sightings:"  # a dedup key starts with its tenant id, never with NUL
_COMPACT = json.JSONEncoder(separators=(",", ":"))  # Faust's JSON; one encoder, not one per call
_ITEM_OVERHEAD = 8  # JSON brackets, quotes and commas around one [key, value] pair


class DedupTable(faust.Table[bytes, Any]):
    """A Faust table whose writes of one input record reach the changelog as one record."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending: dict[bytes, dict[str, Any]] = {}

    def sighting(self, key: bytes) -> Any:
        """The table's value for ``key``, the current record's own sightings included."""
        pending = self._pending.get(key)
        return pending if pending is not None else self.get(key)

    def remember(self, key: bytes, value: dict[str, Any]) -> None:
        """Keep a sighting of the current record; ``flush_sightings`` stores and sends it."""
        self._pending[key] = value

    def flush_sightings(self, origin: str, partition: int, limit: int) -> int:
        """Store the sightings remembered since the last call in the local store (under
        ``partition``, the raw record's) and send them; returns how many records.

        More than ``limit`` bytes of them go as several records (``origin#1``, ...)."""
        if not self._pending:
            return 0
        pending, self._pending = self._pending, {}
        encoded = {key: _COMPACT.encode(value).encode() for key, value in pending.items()}
        self._store_sightings(partition, pending, encoded)
        chunks: list[list[tuple[str, dict[str, Any]]]] = [[]]
        size = 0
        for key, value in pending.items():
            item = len(key) + len(encoded[key]) + _ITEM_OVERHEAD
            if chunks[-1] and size + item > limit:
                chunks.append([])
                size = 0
            chunks[-1].append((key.decode(), value))
            size += item
        for number, chunk in enumerate(chunks):
            record_key = PACK_PREFIX + (origin if number == 0 else f"{origin}#{number}").encode()
            self.send_changelog(partition, record_key, {"sightings": chunk})
        return len(chunks)

    def _store_sightings(self, partition: int, values: dict[bytes, Any], encoded: dict[bytes, bytes]) -> None:
        """RocksDB (rocksdict): one write batch into the partition's database, the bytes
        Faust's store would write (``tests/stream/test_dedup_store.py`` checks that they
        are); any other store: key by key, as ``table.data[key] = value`` does."""
        store = self.data
        if isinstance(store, faust_rocksdb.Store) and store.use_rocksdict:
            from rocksdict import WriteBatch  # installed: Faust's store uses it

            batch = WriteBatch(raw_mode=True)
            for key, value in encoded.items():
                batch.put(key, value)
            store._db_for_partition(partition).write(batch)
            return
        for key, value in values.items():
            store[key] = value

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
