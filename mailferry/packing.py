"""Many items in one Kafka record: packing at the writer, unpacking at every reader.

Three topics carry packs under load, each as a batch schema around the single-item schema:
``raw`` (``raw_batch``: the mails a fetcher has for one raw partition), ``deliver``
(``delivery_batch``: the deliveries one raw record caused for one deliver partition) and
``audit`` (``audit_batch``: the events one input record caused). A pack of one is written
as the plain single-item record, the only form written before packing, so both forms are
read everywhere. An item inside a pack is addressed as (offset, index): its origin is
``topic/partition/offset/index``; a plain record keeps ``topic/partition/offset``. Large
mails stay claim checks (``blob_ref``) inside a pack.

Packing costs no second encoding: a pack's Avro body is the array block count, the bodies
of the single-item encodings, and the closing zero block.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import fastavro

from mailferry.schemas.codec import (
    AUDIT_BATCH,
    AUDIT_EVENT,
    DELIVERY,
    DELIVERY_BATCH,
    HEADER_SIZE,
    RAW_BATCH,
    RAW_MESSAGE,
    Record,
    UnknownSchemaError,
    avro_body,
    codec,
)

PACK_OVERHEAD = HEADER_SIZE + 2 * 10  # header, block count, end marker (varints of at most 10 bytes)
_LONG = fastavro.parse_schema("long")


@dataclass(frozen=True)
class PackFormat:
    """How one topic packs: the single-item schema, the batch schema and its array field."""

    single: str
    batch: str
    field: str

    def unpack(self, value: bytes) -> list[Record]:
        """The items of one record, in order (one for a plain record).

        Raises ``UnknownSchemaError`` for anything that is neither form."""
        try:
            return [codec(self.single).decode(value)]
        except UnknownSchemaError as single:
            try:
                items: list[Record] = codec(self.batch).decode(value)[self.field]
            except UnknownSchemaError:
                raise single from None
            return items

    def pack(self, singles: list[bytes]) -> bytes:
        """One record for already encoded single-item values: the plain record for one.

        Each value may carry either header (single-object or a schema registry's); the pack
        carries the header ``codec(batch).encode`` would write now, so with a registry it is
        in the registry's wire format under the batch schema's own subject."""
        if len(singles) == 1:
            return singles[0]
        count = io.BytesIO()
        fastavro.schemaless_writer(count, _LONG, len(singles))
        # one join: the size is known before the copy (a growing buffer copied each pack
        # several times over, a pack being up to a megabyte)
        return b"".join([codec(self.batch).header(), count.getvalue(), *map(avro_body, singles), b"\x00"])


RAW_PACK = PackFormat(RAW_MESSAGE, RAW_BATCH, "messages")
DELIVERY_PACK = PackFormat(DELIVERY, DELIVERY_BATCH, "deliveries")
AUDIT_PACK = PackFormat(AUDIT_EVENT, AUDIT_BATCH, "events")


def origin_of(base: str, index: int, count: int) -> str:
    """An item's address: ``base`` (topic/partition/offset) alone for a plain record."""
    return base if count == 1 else f"{base}/{index}"


@dataclass
class Pack:
    """Mails bound for one partition, waiting to go as one record."""

    partition: int
    key: bytes  # the first mail's shard key (the record's key; each mail carries its own)
    started: float
    values: list[bytes] = field(default_factory=list)
    size: int = PACK_OVERHEAD


class Packer:
    """Groups encoded mails per partition; what it hands back is ready to send, in order.

    A pack closes when the next mail would take it past ``limit`` bytes, or when it has
    waited ``linger`` seconds (looked at on each ``add`` and by ``due``); ``drain`` closes
    the rest. A mail larger than ``limit`` on its own goes alone, as it would unpacked.
    """

    def __init__(self, limit: int, linger: float) -> None:
        self.limit = limit
        self.linger = linger
        self._open: dict[int, Pack] = {}

    def add(self, partition: int, key: bytes, value: bytes, now: float) -> list[Pack]:
        closed = []
        pack = self._open.get(partition)
        if pack is not None and pack.size + len(value) > self.limit:
            closed.append(self._open.pop(partition))
            pack = None
        if pack is None:
            pack = self._open[partition] = Pack(partition, key, now)
        pack.values.append(value)
        pack.size += len(value)
        return closed + self.due(now)

    def due(self, now: float) -> list[Pack]:
        late = [p for p, pack in self._open.items() if now - pack.started >= self.linger]
        return [self._open.pop(partition) for partition in late]

    def drain(self) -> list[Pack]:
        packs, self._open = list(self._open.values()), {}
        return packs

    def __len__(self) -> int:
        return sum(len(pack.values) for pack in self._open.values())
