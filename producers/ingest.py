"""One fetched message into the pass's batch: raw record, fetch-state record, ``fetched`` audit.

Shared by POP3 and IMAP so both produce the same record shape. Small messages are built
from bytes in memory; large ones stream chunk by chunk into the blob store.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mailferry.blobs import BlobStore
from mailferry.mail.block import HeadCapture, locate_in
from mailferry.mail.message_id import message_id_field, normalise_message_id
from mailferry.producers.publish import Batch
from mailferry.rawrecord import RawSource, build_raw_record
from mailferry.schemas.records import RawMessage


def message_id(head: bytes) -> tuple[str | None, list[str]]:
    """(canonical Message-ID, parse defects) from the start of a message (headers only).

    A Message-ID that is not an id counts as absent, and a header block longer than the
    one limit is read only up to it; the defects say so on the ``fetched`` audit event.
    """
    block = locate_in(head)
    raw = message_id_field(block.data)
    canonical = normalise_message_id(raw)
    defects = [] if block.complete else ["header-block:too-large"]
    if raw is not None and canonical is None:
        defects.append("message-id:unparseable")
    return canonical, defects


@dataclass(frozen=True)
class Ingested:
    key: bytes  # the dedup shard (``mailferry.shard``)
    record: RawMessage
    message_id: str | None
    parse_defects: tuple[str, ...] = ()


def prepare(
    source: RawSource,
    message: bytes | Iterable[bytes],
    *,
    blobs: BlobStore,
    inline_threshold: int,
    headers_only: bool = False,
) -> Ingested:
    """Build the raw record (writing the blob for a large message) without sending anything."""
    if isinstance(message, bytes):
        key, record = build_raw_record(
            source, message, blobs=blobs, inline_threshold=inline_threshold, headers_only=headers_only
        )
        head = message  # message_id reads up to the header block's end only; no copy here
    else:
        capture = HeadCapture(message)
        key, record = build_raw_record(
            source, capture, blobs=blobs, inline_threshold=inline_threshold, headers_only=headers_only
        )
        head = capture.head
    found, defects = message_id(head)
    return Ingested(key, record, found, tuple(defects))


def publish(batch: Batch, source: RawSource, done: Ingested) -> None:
    """Send the raw record and its ``fetched`` audit event; the caller adds the state."""
    record = done.record
    batch.raw(done.key, record)
    details = {"size": str(record["size"]), "uid": source.source_uid or ""}
    if source.folder:
        details["folder"] = source.folder
    if record["headers_only"]:
        details["headers_only"] = "true"
    if done.parse_defects:
        details["parse_defects"] = ",".join(done.parse_defects)
    batch.audit("fetched", message_id=done.message_id, sha256=record["sha256"], details=details)


def ingest(
    batch: Batch,
    source: RawSource,
    message: bytes | Iterable[bytes],
    *,
    blobs: BlobStore,
    inline_threshold: int,
    headers_only: bool = False,
) -> Ingested:
    """``prepare`` and ``publish`` in one step."""
    done = prepare(source, message, blobs=blobs, inline_threshold=inline_threshold, headers_only=headers_only)
    publish(batch, source, done)
    return done
