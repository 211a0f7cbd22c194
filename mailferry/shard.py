"""The dedup shard: which ``raw`` partition a message goes to. No I/O but a blob read.

Every copy of a message must reach the one stream worker whose dedup table knows its
earlier copies. The stream's dedup key is (tenant, recipient, canonical Message-ID, or the
content hash when there is none); leaving out the recipient gives the shard, so the copy
from a catch-all and the one from a personal mailbox share a ``raw`` partition, and the
dedup table can be co-partitioned with ``raw`` directly (no re-keyed topic in between).

The Message-ID is read the way the fetcher reads it (``message_id_field``, a scan of the
header block instead of the email parser); ``tests/stream/test_dedup_property.py`` checks
that it gives the id the stream's parser gives for the forms a Message-ID comes in.
"""

from __future__ import annotations

from kafka.partitioner import murmur2

from mailferry.blobs import BlobStore
from mailferry.mail.block import READ_CHUNK, locate, locate_in
from mailferry.mail.message_id import message_id_field, normalise_message_id
from mailferry.schemas.records import RawMessage


def shard_key(tenant: str, message_id: str | None, sha256: str) -> bytes:
    """The ``raw`` record key: the dedup key without its recipient."""
    return f"{tenant}/{message_id or 'sha256:' + sha256}".encode()


def head_message_id(head: bytes) -> str | None:
    """The canonical Message-ID from the start of a message (only its header block is read)."""
    return block_message_id(locate_in(head).data)


def block_message_id(block: bytes) -> str | None:
    """The Message-ID as the stream's header parser reads it, which drops NUL bytes first."""
    return normalise_message_id(message_id_field(block.replace(b"\x00", b"")))


def shard_of_record(raw: RawMessage, blobs: BlobStore | None) -> bytes:
    """The shard of a decoded raw record (replays, requeues): its header block is read from
    the inline bytes or, for a claim check, from the blob store up to the blank line."""
    inline, blob_ref = raw["inline"], raw["blob_ref"]
    if inline is not None:
        found = head_message_id(bytes(inline))
    elif blob_ref and blobs is not None:
        found = block_message_id(locate(blobs.iter_chunks(blob_ref, READ_CHUNK)).data)
    else:
        found = None
    return shard_key(raw["tenant"], found, raw["sha256"])


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner, so a record keyed by its shard lands where a plain
    producer would put it."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions
