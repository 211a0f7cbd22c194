"""Temporary files between a remote store and its callers, so memory stays bounded.

A remote kind needs the digest before it can name what it writes (Kafka key, S3 key), and
a target needs bytes that were checked against the digest before it starts; both come from
one pass over the content into an anonymous temp file (0600, gone when closed).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mailferry.blobs.base import Verifier, verified_chunks


@dataclass
class Spooled:
    file: BinaryIO  # positioned at 0
    digest: str
    size: int


def _temp(spool_dir: Path | None) -> BinaryIO:
    if spool_dir is not None:
        spool_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return tempfile.TemporaryFile(dir=spool_dir)


def spool(chunks: Iterable[bytes], spool_dir: Path | None) -> Spooled:
    """Write ``chunks`` to a temp file while hashing them."""
    file = _temp(spool_dir)
    try:
        verifier = Verifier("")
        for chunk in chunks:
            verifier.update(chunk)
            file.write(chunk)
        file.flush()
        file.seek(0)
    except BaseException:
        file.close()
        raise
    return Spooled(file, verifier.hexdigest(), verifier.size)


def spool_verified(digest: str, chunks: Iterable[bytes], spool_dir: Path | None, where: str) -> BinaryIO:
    """A temp file holding ``chunks``, returned only once they matched ``digest``."""
    file = _temp(spool_dir)
    try:
        for chunk in verified_chunks(digest, chunks, where):
            file.write(chunk)
        file.flush()
        file.seek(0)
    except BaseException:
        file.close()
        raise
    return file
