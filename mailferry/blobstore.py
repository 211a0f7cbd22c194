"""Former home of the local blob store, kept so imports of it keep working.

New code imports from :mod:`mailferry.blobs`.
"""

from mailferry.blobs import CHUNK, PREFIX, BlobNotFoundError, LocalBlobStore

__all__ = ["CHUNK", "PREFIX", "BlobNotFoundError", "LocalBlobStore"]
