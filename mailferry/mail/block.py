"""Where the header block of a message ends, read lazily and never past one limit.

Routing, the fetch-side Message-ID, the EWS delivery time and the SMTP envelope sender
all need the header block only, never the body. ``MAX_HEADER_BYTES`` is the one bound for
all of them (it was 256 KiB, 1 MiB and 4 MiB in three stages): 4 MiB, the stream's limit
since the start, sixteen times Exchange's own (256 KiB on a receive connector; Postfix
stops at 100 KiB), so no mail any server on the way accepts is cut, while one damaged or
hostile message costs at most 4 MiB of memory and, the parsers being linear, well under a
second (docs/benchmarks/parsers.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from mailferry.errors import MalformedMessageError

MAX_HEADER_BYTES = 4 * 1024 * 1024
READ_CHUNK = 64 * 1024
_END_OF_HEADERS = re.compile(rb"\r?\n\r?\n")


class HeaderTooLargeError(MalformedMessageError):
    reason_code = "header-too-large"


@dataclass(frozen=True)
class HeaderBlock:
    """The bytes before the blank line; ``complete`` is False when the limit cut them."""

    data: bytes
    complete: bool


def locate(chunks: Iterable[bytes], limit: int = MAX_HEADER_BYTES) -> HeaderBlock:
    """The header block, reading ``chunks`` only up to the blank line (or the limit).

    A message without a blank line is all header (mail that has no body). Past ``limit``
    the first ``limit`` bytes come back with ``complete=False``: callers that can live with
    a partial header (a Message-ID, a sender) read what is there; the stream refuses it.
    """
    buffer = bytearray()
    searched = 0
    for chunk in chunks:
        buffer += chunk
        if buffer[:1] == b"\n" or buffer[:2] == b"\r\n":
            return HeaderBlock(b"", True)
        match = _END_OF_HEADERS.search(buffer, max(0, searched - 3))
        if match is not None:
            if match.start() > limit:
                return HeaderBlock(bytes(buffer[:limit]), False)
            return HeaderBlock(bytes(buffer[: match.start()]), True)
        searched = len(buffer)
        if len(buffer) > limit:
            return HeaderBlock(bytes(buffer[:limit]), False)
    return HeaderBlock(bytes(buffer), True)


def locate_in(data: bytes, limit: int = MAX_HEADER_BYTES) -> HeaderBlock:
    """``locate(chunks_of(data), limit)`` for a message held in memory, without copying it
    chunk by chunk into a buffer first (the stream's inline mails)."""
    if data[:1] == b"\n" or data[:2] == b"\r\n":
        return HeaderBlock(b"", True)
    match = _END_OF_HEADERS.search(data, 0, limit + 4)  # a match is at most 4 bytes long
    if match is not None and match.start() <= limit:
        return HeaderBlock(bytes(data[: match.start()]), True)
    if match is None and len(data) <= limit:
        return HeaderBlock(bytes(data), True)
    return HeaderBlock(bytes(data[:limit]), False)


def header_block(chunks: Iterable[bytes] | bytes, limit: int = MAX_HEADER_BYTES) -> bytes:
    """The complete header block of a message in chunks or in memory; raises
    ``HeaderTooLargeError`` past ``limit``."""
    block = locate_in(chunks, limit) if isinstance(chunks, bytes) else locate(chunks, limit)
    if not block.complete:
        raise HeaderTooLargeError(f"header block larger than {limit} bytes")
    return block.data


def chunks_of(data: bytes, size: int = READ_CHUNK) -> Iterator[bytes]:
    """``data`` in slices, so a message held in memory is located like a streamed one."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def chunks_from(handle: BinaryIO, size: int = READ_CHUNK) -> Iterator[bytes]:
    while chunk := handle.read(size):
        yield chunk


class HeadCapture:
    """Passes a message's chunks through and keeps its start up to the end of the headers.

    For the fetcher, which streams a message into the blob store once and must not read it
    twice: it keeps the header block (and the chunk that ends it), at most ``limit`` bytes.
    """

    def __init__(self, chunks: Iterable[bytes], limit: int = MAX_HEADER_BYTES + 4) -> None:
        self._chunks = chunks
        self._limit = limit
        self._head = bytearray()
        self._complete = False

    @property
    def head(self) -> bytes:
        return bytes(self._head)

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            if not self._complete:
                searched = len(self._head)
                self._head += chunk[: self._limit - len(self._head)]
                ended = self._head[:1] == b"\n" or self._head[:2] == b"\r\n"
                ended = ended or _END_OF_HEADERS.search(self._head, max(0, searched - 3)) is not None
                self._complete = ended or len(self._head) >= self._limit
            yield chunk
