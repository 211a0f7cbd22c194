"""The outputs of one input record, gathered while it is processed and packed at its end.

Every mail costs the stream a delivery per recipient and a few audit events; sent one per
record, those records are most of the worker's cost (docs/benchmarks/stream.md). So what one
raw record (one mail or a pack) causes leaves as:

- one ``deliver`` record per deliver partition (``DELIVERY_PACK``), at the partition Kafka's
  default partitioner gives its key ``tenant/recipient``, so one recipient's deliveries stay
  on one partition and in order, packed or not;
- one ``audit`` record (``AUDIT_PACK``) with its events in order.

No pack is built past ``limit`` bytes (the smallest of the topics' record limits and the
producer's batch, less Kafka's headers): more items go in the next record, as the fetcher's
``mailferry.packing.Packer`` does. A pack of one is the plain single record. Unpacked
(``packed=False``), every item is its own record, as before packing.

No I/O here: the stream app sends what ``close`` returns before Faust commits the raw offset.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailferry.packing import AUDIT_PACK, DELIVERY_PACK, Packer, PackFormat
from mailferry.shard import partition_for

_AUDIT = 0  # the audit pack's bucket: one per input record, its partition left to Kafka
PARTITION_CACHE = 10_000  # keys remembered; a full cache starts afresh


class Partitions:
    """Kafka's default partition of a deliver key (``partition_for``), remembered per key.

    The key is ``tenant/recipient``, so one mailbox's key comes back with every mail it
    gets, and kafka-python's murmur2 is pure Python (1.6 % of the worker's time). Bounded:
    past ``limit`` keys it forgets them all, so a flood of distinct recipients costs what
    it cost before, never memory."""

    def __init__(self, partitions: int, limit: int = PARTITION_CACHE) -> None:
        self.partitions = partitions
        self.limit = limit
        self._known: dict[bytes, int] = {}

    def __call__(self, key: bytes) -> int:
        partition = self._known.get(key)
        if partition is None:
            if len(self._known) >= self.limit:
                self._known.clear()
            partition = self._known[key] = partition_for(key, self.partitions)
        return partition


@dataclass(frozen=True)
class Outgoing:
    key: bytes | None
    value: bytes
    partition: int | None  # None: Kafka's partitioner decides from the key


@dataclass(frozen=True)
class Outputs:
    deliveries: list[Outgoing]
    audit: list[Outgoing]


class Collector:
    def __init__(self, *, deliver_partitions: int, limit: int, packed: bool) -> None:
        self.deliver_partitions = deliver_partitions
        self.partition_of = Partitions(deliver_partitions)
        self.packed = packed
        self._deliveries = Packer(limit, linger=float("inf"))
        self._audit = Packer(limit, linger=float("inf"))
        self._closed: tuple[list[Outgoing], list[Outgoing]] = ([], [])

    def delivery(self, key: bytes, value: bytes) -> None:
        partition = self.partition_of(key) if self.packed else None
        self._add(self._deliveries, self._closed[0], DELIVERY_PACK, partition, key, value)

    def audit(self, key: bytes, value: bytes) -> None:
        self._add(self._audit, self._closed[1], AUDIT_PACK, None, key, value)

    def _add(
        self,
        packer: Packer,
        out: list[Outgoing],
        form: PackFormat,
        partition: int | None,
        key: bytes,
        value: bytes,
    ) -> None:
        if not self.packed:
            out.append(Outgoing(key, value, partition))
            return
        bucket = _AUDIT if partition is None else partition
        for pack in packer.add(bucket, key, value, 0.0):
            out.append(Outgoing(pack.key, form.pack(pack.values), partition))

    def close(self) -> Outputs:
        """Everything gathered, ready to send in this order; the collector starts empty again."""
        deliveries, audit = self._closed
        for pack in self._deliveries.drain():
            deliveries.append(Outgoing(pack.key, DELIVERY_PACK.pack(pack.values), pack.partition))
        for pack in self._audit.drain():
            audit.append(Outgoing(pack.key, AUDIT_PACK.pack(pack.values), None))
        self._closed = ([], [])
        return Outputs(deliveries, audit)
