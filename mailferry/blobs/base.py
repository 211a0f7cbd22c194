"""What every blob store kind shares: the one reference form, its errors, verified reads.

A reference travels on topics that any client with write access can fill, so it is
untrusted input: it is only ever ``sha256:`` and 64 lower-case hex digits (nothing else
can name a file, an object key or a topic offset), and content is checked against that
digest before a reader sees its end. Stores build their own addresses from the digest
alone, never from the text of the reference.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from typing import BinaryIO, Protocol

from mailferry.errors import PermanentError

CHUNK = 1024 * 1024
PREFIX = "sha256:"

_REFERENCE = re.compile(r"sha256:([0-9a-f]{64})", re.ASCII)


class BlobReferenceError(PermanentError):
    """Not ``sha256:`` + 64 lower-case hex: a crafted or garbled record."""

    reason_code = "blob-ref-invalid"


class BlobNotFoundError(PermanentError):
    reason_code = "blob-missing"


class BlobCorruptError(PermanentError):
    """The stored bytes do not hash to their reference (torn write, tampering, a link)."""

    reason_code = "blob-corrupt"


def digest_of(reference: object) -> str:
    """The hex digest of a well-formed reference; raises ``BlobReferenceError`` otherwise."""
    match = _REFERENCE.fullmatch(reference) if isinstance(reference, str) else None
    if match is None:
        shown = reference[:80] if isinstance(reference, str) else type(reference).__name__
        raise BlobReferenceError(f"not a blob reference (sha256: and 64 lower-case hex): {shown!r}")
    return match.group(1)


def reference_of(digest: str) -> str:
    return PREFIX + digest


class Verifier:
    """Hashes bytes as they pass and says at the end whether they were the blob's."""

    def __init__(self, digest: str) -> None:
        self.digest = digest
        self._hash = hashlib.sha256()
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def check(self, where: str) -> None:
        actual = self._hash.hexdigest()
        if actual != self.digest:
            raise BlobCorruptError(
                f"blob sha256:{self.digest} in {where}: its {self.size} bytes hash to {actual}"
            )


def verified_chunks(digest: str, chunks: Iterable[bytes], where: str) -> Iterator[bytes]:
    """``chunks`` passed on one behind, the last only once the whole matched ``digest``.

    A consumer that acts when the stream ends (writes the final piece, commits) thus never
    receives the complete body of a corrupt blob: the error comes in place of its end.
    """
    verifier = Verifier(digest)
    held: bytes | None = None
    for chunk in chunks:
        if not chunk:
            continue
        verifier.update(chunk)
        if held is not None:
            yield held
        held = chunk
    verifier.check(where)
    if held is not None:
        yield held


class BlobStore(Protocol):
    """A content-addressed store; the kinds live in the modules next to this one."""

    def put_chunks(self, chunks: Iterable[bytes]) -> tuple[str, int]:
        """Store a stream of bytes; returns (reference, size). Re-putting is cheap."""
        ...

    def put(self, data: bytes) -> str: ...

    def open(self, reference: str) -> BinaryIO:
        """A readable, seekable handle on content already checked against its digest."""
        ...

    def iter_chunks(self, reference: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """The content in chunks, checked as it streams (see :func:`verified_chunks`)."""
        ...

    def read(self, reference: str) -> bytes: ...

    def exists(self, reference: str) -> bool: ...

    def close(self) -> None:
        """Release clients (Kafka, S3); the store is not used afterwards."""
        ...
