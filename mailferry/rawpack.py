"""Many mails in one ``raw`` record: packing at the producer, unpacking at every reader.

Under load a fetcher packs the mails bound for one ``raw`` partition into one record (a
``raw_batch``), up to the topic's record limit, for a short linger; an idle mailbox still
sends one mail as one plain ``raw_message`` record, the only form written before packing, so
both are read everywhere. A packed mail is addressed as (offset, index): its origin is
``topic/partition/offset/index`` (``Origin`` in the stream), a single one keeps
``topic/partition/offset``. Large mails stay claim checks (``blob_ref``) inside a pack.

Packing costs no second encoding: a pack's Avro body is the array block count, the bodies
of the single-mail encodings, and the closing zero block.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import fastavro

from mailferry.schemas.codec import HEADER_SIZE, MARKER, RAW_MESSAGE, Record, UnknownSchemaError, codec

RAW_BATCH = "raw_batch"
PACK_OVERHEAD = HEADER_SIZE + 2 * 10  # header, block count, end marker (varints of at most 10 bytes)
_LONG = fastavro.parse_schema("long")


def unpack_raw(value: bytes) -> list[Record]:
    """The mails of one ``raw`` record, in order (one for a plain record).

    Raises ``UnknownSchemaError`` for anything that is neither form."""
    try:
        return [codec(RAW_MESSAGE).decode(value)]
    except UnknownSchemaError as single:
        try:
            messages: list[Record] = codec(RAW_BATCH).decode(value)["messages"]
        except UnknownSchemaError:
            raise single from None
        return messages


def pack_value(singles: list[bytes]) -> bytes:
    """One ``raw`` value for already encoded single-mail values: the plain record for one."""
    if len(singles) == 1:
        return singles[0]
    buffer = io.BytesIO()
    buffer.write(MARKER + codec(RAW_BATCH).fingerprint)
    fastavro.schemaless_writer(buffer, _LONG, len(singles))
    for single in singles:
        buffer.write(memoryview(single)[HEADER_SIZE:])
    buffer.write(b"\x00")
    return buffer.getvalue()


def origin_of(base: str, index: int, count: int) -> str:
    """A mail's address: ``base`` (topic/partition/offset) alone for a plain record."""
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
