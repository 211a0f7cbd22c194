"""Blob store kinds: where messages above the inline threshold live.

One module per kind (``local``, ``kafka``, ``s3``) next to :mod:`mailferry.blobs.base`
(the reference form, the errors, the protocol every kind meets). Every stage gets its
store from :func:`open_blob_store`, so a role needs only the config to find the blobs
another role wrote, on whatever host.
"""

from __future__ import annotations

from mailferry.blobs.base import (
    CHUNK,
    PREFIX,
    BlobCorruptError,
    BlobNotFoundError,
    BlobReferenceError,
    BlobStore,
    digest_of,
)
from mailferry.blobs.local import LocalBlobStore
from mailferry.config.models import MailferryConfig
from mailferry.kafka.clients import bootstrap


def open_blob_store(config: MailferryConfig, servers: list[str] | None = None) -> BlobStore:
    """The store ``[blob_store]`` names; ``servers`` is the Kafka the role talks to (for the
    embedded broker, its running address)."""
    kind = config.blob_kind
    if kind == "kafka":
        from mailferry.blobs.kafka import KafkaBlobStore

        return KafkaBlobStore(
            config.kafka,
            servers or bootstrap(config.kafka),
            chunk_size=config.blob_store.kafka.chunk_size,
            spool_dir=config.blob_store.spool_dir,
        )
    if kind == "s3":
        from mailferry.blobs.s3 import S3BlobStore

        assert config.blob_store.s3 is not None  # the config refuses kind s3 without it
        return S3BlobStore(config.blob_store.s3, spool_dir=config.blob_store.spool_dir)
    return LocalBlobStore(config.blob_dir)


__all__ = [
    "CHUNK",
    "PREFIX",
    "BlobCorruptError",
    "BlobNotFoundError",
    "BlobReferenceError",
    "BlobStore",
    "LocalBlobStore",
    "digest_of",
    "open_blob_store",
]
