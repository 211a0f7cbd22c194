"""Header parsing that never needs the body, and survives real-world damage.

Routing only looks at headers, so only the header block is read: from the inline bytes or
from the blob store chunk by chunk up to the first blank line, capped at
``MAX_HEADER_BYTES``. Parsing leans on the standard library (``email.parser`` for folding
and header syntax, ``email.header`` for encoded words); this module only adds tolerance:
NUL bytes are dropped, 8-bit values are read as UTF-8 or else Latin-1, and a broken encoded
word is kept as its raw text instead of failing the message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from email.policy import compat32

from mailferry.errors import MalformedMessageError

MAX_HEADER_BYTES = 4 * 1024 * 1024
_END_OF_HEADERS = re.compile(rb"\r?\n\r?\n")
_FOLD = re.compile(r"\r?\n[ \t]*")
_PARSER = BytesHeaderParser(policy=compat32)
_ESCAPED = re.compile("[\udc80-\udcff]")  # 8-bit bytes as the parser's surrogate escapes


class HeaderTooLargeError(MalformedMessageError):
    reason_code = "header-too-large"


def header_block(chunks: Iterable[bytes], limit: int = MAX_HEADER_BYTES) -> bytes:
    """The bytes up to (not including) the blank line that ends the header, read lazily.

    A message without a blank line is all header (for mail that has no body). Raises
    ``HeaderTooLargeError`` past ``limit`` so that one damaged message cannot exhaust memory.
    """
    buffer = bytearray()
    searched = 0
    for chunk in chunks:
        buffer += chunk
        if buffer[:1] == b"\n" or buffer[:2] == b"\r\n":
            return b""
        match = _END_OF_HEADERS.search(buffer, max(0, searched - 3))
        if match is not None:
            if match.start() > limit:
                raise HeaderTooLargeError(f"header block larger than {limit} bytes")
            return bytes(buffer[: match.start()])
        searched = len(buffer)
        if len(buffer) > limit:
            raise HeaderTooLargeError(f"header block larger than {limit} bytes")
    return bytes(buffer)


def _chunks_of(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _text(raw: str) -> str:
    """A header value as text: surrogate-escaped 8-bit bytes read as UTF-8, else Latin-1."""
    if raw.isascii() or _ESCAPED.search(raw) is None:
        return raw
    data = raw.encode("ascii", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def decode_value(raw: str) -> str:
    """Unfold and decode RFC 2047 encoded words; damaged words stay as they were."""
    value = _FOLD.sub(" ", _text(raw)).strip()
    if "=?" not in value:
        return value
    try:
        parts = decode_header(value)
    except Exception:  # email.header raises assorted errors on broken input
        return value
    try:
        return str(make_header(parts))
    except (LookupError, UnicodeDecodeError):
        return "".join(part if isinstance(part, str) else part.decode("latin-1") for part, _charset in parts)


@dataclass(frozen=True)
class MessageHeaders:
    """The headers of one message, in order, names case-insensitive, values decoded."""

    fields: tuple[tuple[str, str], ...]
    defects: tuple[str, ...] = field(default=())
    size: int = 0  # bytes of the header block

    def get_all(self, name: str) -> list[str]:
        wanted = name.lower()
        return [value for key, value in self.fields if key == wanted]

    def first(self, name: str) -> str | None:
        wanted = name.lower()
        for key, value in self.fields:
            if key == wanted:
                return value
        return None

    def count(self, name: str) -> int:
        wanted = name.lower()
        return sum(1 for key, _ in self.fields if key == wanted)

    def __len__(self) -> int:
        return len(self.fields)


def parse_headers(block: bytes) -> MessageHeaders:
    """Parse a header block (as returned by ``header_block``) without ever failing on damage."""
    size = len(block)
    defects: list[str] = []
    if b"\x00" in block:
        block = block.replace(b"\x00", b"")
        defects.append("nul-bytes")
    message = _PARSER.parsebytes(block + b"\r\n\r\n")
    defects += [type(defect).__name__ for defect in message.defects]
    fields = tuple((str(name).strip().lower(), decode_value(str(raw))) for name, raw in message.raw_items())
    return MessageHeaders(fields=fields, defects=tuple(defects), size=size)


def parse_message_headers(data: bytes, limit: int = MAX_HEADER_BYTES) -> MessageHeaders:
    """Headers of a message held in memory (inline records, tests)."""
    return parse_headers(header_block(_chunks_of(data), limit))
