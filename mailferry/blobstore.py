"""Content-addressed storage for messages too large to travel inline on a topic.

Kafka stops at about 1 MB per record by default, mail is often 25-150 MB. A message above
the inline threshold is written once under its SHA-256 and the topics carry the reference
``sha256:<hex>``; writing the same content twice costs nothing. Reads and writes stream in
chunks so memory stays bounded whatever the size.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from mailferry.errors import PermanentError

CHUNK = 1024 * 1024
PREFIX = "sha256:"


class BlobNotFoundError(PermanentError):
    reason_code = "blob-missing"


def _refresh(path: Path) -> bool:
    """Touch an existing blob instead of rewriting it: ``blobs prune`` deletes only blobs
    untouched for its grace period, so a re-put must count as fresh. False when the blob is
    not there (any more: prune may have just taken it), so the caller writes it again."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    return True


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest[2:4] / digest

    def put_chunks(self, chunks: Iterable[bytes]) -> tuple[str, int]:
        """Store a stream of bytes; returns (reference, size)."""
        self.root.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            final = self._path(digest.hexdigest())
            final.parent.mkdir(parents=True, exist_ok=True)
            if not _refresh(final):
                os.replace(tmp, final)
            Path(tmp).unlink(missing_ok=True)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return PREFIX + digest.hexdigest(), size

    def put(self, data: bytes) -> str:
        return self.put_chunks([data])[0]

    def open(self, reference: str) -> BinaryIO:
        if not reference.startswith(PREFIX):
            raise BlobNotFoundError(f"not a blob reference: {reference!r}")
        try:
            return self._path(reference.removeprefix(PREFIX)).open("rb")
        except FileNotFoundError:
            raise BlobNotFoundError(f"blob {reference} is not in {self.root}") from None

    def iter_chunks(self, reference: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        with self.open(reference) as handle:
            while chunk := handle.read(chunk_size):
                yield chunk

    def read(self, reference: str) -> bytes:
        with self.open(reference) as handle:
            return handle.read()

    def exists(self, reference: str) -> bool:
        return self._path(reference.removeprefix(PREFIX)).exists()

    def delete(self, reference: str) -> None:
        self._path(reference.removeprefix(PREFIX)).unlink(missing_ok=True)
