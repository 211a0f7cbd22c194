"""Building ``mailferry.raw`` records: bytes inline up to a threshold, else a blob reference.

Fetchers and ``mailferry import`` both produce raw records; this is the one place that
decides inline versus blob store, so the two never disagree.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from mailferry.blobs import BlobStore
from mailferry.mail.block import HeadCapture
from mailferry.schemas.records import RAW_MESSAGES, RawMessage
from mailferry.shard import head_message_id, shard_key


@dataclass(frozen=True)
class RawSource:
    tenant: str
    mailbox_id: str
    source_kind: str  # pop3 | imap | import
    folder: str | None = None
    source_uid: str | None = None


def raw_key(tenant: str, mailbox_id: str) -> bytes:
    """A mailbox's key (fetch state, mailboxes topic); ``raw`` records are keyed by their
    dedup shard instead (``mailferry.shard``)."""
    return f"{tenant}/{mailbox_id}".encode()


def build_raw_record(
    source: RawSource,
    message: bytes | Iterable[bytes],
    *,
    blobs: BlobStore,
    inline_threshold: int,
    headers_only: bool = False,
    envelope_recipients: Iterable[str] = (),
    fetched_at: datetime | None = None,
) -> tuple[bytes, RawMessage]:
    """(shard key, record) for one message. ``message`` may be chunks, so a large one never
    has to be held whole: chunks go straight to the blob store."""
    if isinstance(message, bytes | bytearray | memoryview):
        data = head = bytes(message)
        if len(data) <= inline_threshold:
            inline: bytes | None = data
            blob_ref = None
            sha = hashlib.sha256(data).hexdigest()
            size = len(data)
        else:
            blob_ref, size = blobs.put_chunks([data])
            inline, sha = None, blob_ref.removeprefix("sha256:")
    else:
        # buffer up to the threshold first: a small message never touches the blob store,
        # where deleting "our" copy afterwards could delete a blob another record references
        capture = HeadCapture(message)
        chunks = iter(capture)
        buffered = bytearray()
        for chunk in chunks:
            buffered += chunk
            if len(buffered) > inline_threshold:
                blob_ref, size = blobs.put_chunks(itertools.chain([bytes(buffered)], chunks))
                inline, sha = None, blob_ref.removeprefix("sha256:")
                break
        else:
            inline, blob_ref = bytes(buffered), None
            sha, size = hashlib.sha256(inline).hexdigest(), len(inline)
        head = capture.head  # read to the end by now, so the header block is complete
    record: RawMessage = {
        "tenant": source.tenant,
        "mailbox_id": source.mailbox_id,
        "source_kind": source.source_kind,
        "folder": source.folder,
        "source_uid": source.source_uid,
        "size": size,
        "sha256": sha,
        "fetched_at": fetched_at or datetime.now(UTC),
        "inline": inline,
        "blob_ref": blob_ref,
        "envelope_recipients": list(envelope_recipients),
        "headers_only": headers_only,
        "replay_of": None,
        "bypass_dedup": False,
        "target_override": None,
    }
    return shard_key(source.tenant, head_message_id(head), sha), record


def encode_raw(record: RawMessage) -> bytes:
    return RAW_MESSAGES.encode(record)
