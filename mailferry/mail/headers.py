"""The fields of a header block, in order, decoded, with every defect met on the way.

Splitting the block into fields is left to the standard library (``BytesHeaderParser``
with ``compat32``: it handles folding and odd line ends, and measured linear up to 1 MiB of
lines, continuations, bare CRs or ``From `` lines, ~0.3 s at worst), except for the common
block it would read without a defect: every line a ``name:`` field or a continuation, CRLF
or LF line ends. That block is split here in one pass, into exactly the fields the standard
parser gives (``tests/mail/test_header_split.py`` compares the two on random blocks); it was
the largest single cost of routing a mail in the stream (docs/benchmarks/stream.md). Values
are decoded by ``encoded_words``; NUL bytes are dropped first.

Defects are ``<field>:<kind>`` strings (``subject:encoded-word``, ``to:address-list``,
``message-id:unparseable``, ``header-block:nul-bytes``, ``header-block:<stdlib defect>``):
the stream puts them on the routed audit event, so a message routed to the default mailbox
because its To could not be read says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32

from mailferry.mail.addresses import parse_address_list, plainly_valid
from mailferry.mail.block import MAX_HEADER_BYTES, header_block
from mailferry.mail.encoded_words import decode_value
from mailferry.mail.message_id import normalise_message_id

_PARSER = BytesHeaderParser(policy=compat32)
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+:")  # the standard parser's, without an empty name
ADDRESS_FIELDS = (
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "resent-from",
    "resent-to",
    "resent-cc",
    "delivered-to",
    "x-original-to",
    "envelope-to",
    "x-envelope-to",
    "x-rcpt-to",
    "return-path",
)


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
    """Parse a header block (as ``block.header_block`` returns it); never fails on damage."""
    size = len(block)
    defects: list[str] = []
    if b"\x00" in block:
        block = block.replace(b"\x00", b"")
        defects.append("header-block:nul-bytes")
    raw_fields = plain_fields(block)
    if raw_fields is None:
        message = _PARSER.parsebytes(block + b"\r\n\r\n")
        defects += [f"header-block:{type(defect).__name__}" for defect in message.defects]
        raw_fields = [(str(name), str(value)) for name, value in message.raw_items()]
    fields = []
    for raw_name, raw_value in raw_fields:
        name = raw_name.strip().lower()
        value, clean = decode_value(raw_value)
        if not clean:
            defects.append(f"{name}:encoded-word")
        fields.append((name, value))
    return MessageHeaders(fields=tuple(fields), defects=tuple(defects), size=size)


def plain_fields(block: bytes) -> list[tuple[str, str]] | None:
    """The raw (name, value) pairs ``compat32`` reads from a block in which every line is a
    field or its continuation and every line ends in CRLF or LF, or None for any other block
    (a bare CR, a line that is neither, a first line that continues nothing, an empty one):
    those go to the standard parser, which notes their defects.

    A value is what ``compat32.header_source_parse`` makes of its lines: the first line after
    the colon without its leading blanks, the continuations with their line ends, the last
    line end stripped."""
    text = block.decode("ascii", "surrogateescape")
    if not text or text.count("\r") != text.count("\r\n"):
        return None
    names: list[str] = []
    lines: list[list[str]] = []
    for line in text.split("\n"):
        if line[:1] in (" ", "\t") and line and lines:
            lines[-1].append(line)
            continue
        match = _FIELD_NAME.match(line)
        if match is None:
            return None
        names.append(line[: match.end() - 1])
        lines.append([line[match.end() :].lstrip(" \t")])
    return [(name, "\n".join(parts).rstrip("\r\n")) for name, parts in zip(names, lines, strict=True)]


def parse_message_headers(data: bytes, limit: int = MAX_HEADER_BYTES) -> MessageHeaders:
    """Headers of a message held in memory (inline records, tests)."""
    return parse_headers(header_block(data, limit))


def field_defects(headers: MessageHeaders) -> list[str]:
    """Defects of the fields routing reads, beyond those found while decoding.

    An address field with an entry that is not one valid address (that entry counts as
    absent), and a Message-ID that is not an id (dedup falls back to the content hash).
    """
    found = list(headers.defects)
    for name, value in headers.fields:
        if name in ADDRESS_FIELDS and not plainly_valid(value) and parse_address_list(value).damaged:
            found.append(f"{name}:address-list")
    message_id = headers.first("Message-ID")
    if message_id is not None and normalise_message_id(message_id) is None:
        found.append("message-id:unparseable")
    return list(dict.fromkeys(found))
