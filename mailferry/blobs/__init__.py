"""Blob store kinds: where messages above the inline threshold live.

One module per kind next to :mod:`mailferry.blobs.base` (the reference form, the errors,
the protocol every kind meets).
"""

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

__all__ = [
    "CHUNK",
    "PREFIX",
    "BlobCorruptError",
    "BlobNotFoundError",
    "BlobReferenceError",
    "BlobStore",
    "LocalBlobStore",
    "digest_of",
]
