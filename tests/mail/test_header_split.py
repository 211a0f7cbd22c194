"""Fast paths of the header work give what the general paths give: the header block's own split
(``headers.plain_fields``) what the standard parser gives, and a block located in memory
(``block.locate_in``) what locating it chunk by chunk gives.

``parse_headers`` splits a plain block itself and leaves every other block to
``BytesHeaderParser`` with ``compat32``; on any block, both ways must give the same fields
and the same defects.
"""

from __future__ import annotations

from email.parser import BytesHeaderParser
from email.policy import compat32

from hypothesis import given, settings
from hypothesis import strategies as st

from mailferry.mail.block import chunks_of, locate, locate_in
from mailferry.mail.encoded_words import decode_value
from mailferry.mail.headers import parse_headers, plain_fields

from .strategies import PROFILE

PIECES = [
    "Subject",
    "To",
    "X-A",
    "From ",
    "From",
    ":",
    ": ",
    " ",
    "\t",
    "\r\n",
    "\n",
    "\r",
    "\r\n ",
    "\n\t",
    "=?utf-8?q?J=C3=BCrgen?=",
    "a@b.example",
    "x",
    "é",
    "\x0b",
    "\x0c",
    " :",
]
TEXT = st.lists(st.sampled_from(PIECES), max_size=8).map("".join)
NAME = st.sampled_from(["Subject", "To", "X-A", "From", "a@b.example", "=?x?=", ""])
# mostly lines a plain block is made of, with anything in them (a bare CR, an LF, a colon)
LINE = st.one_of(
    st.builds(lambda name, value: f"{name}:{value}", NAME, TEXT),
    st.builds(lambda blank, value: blank + value, st.sampled_from([" ", "\t"]), TEXT),
    TEXT,
)
END = st.sampled_from(["\r\n", "\n"])
BLOCK = st.lists(st.tuples(LINE, END), max_size=10).map(
    lambda lines: "".join(line + end for line, end in lines)[:-1].encode("utf-8")
)
ODD_BYTES = st.binary(max_size=200)


@settings(PROFILE, max_examples=3000)
@given(st.one_of(BLOCK, ODD_BYTES))
def test_the_plain_split_agrees_with_the_standard_parser(block: bytes) -> None:
    message = BytesHeaderParser(policy=compat32).parsebytes(block + b"\r\n\r\n")
    ours = plain_fields(block)
    if ours is not None:
        assert ours == [(str(name), str(value)) for name, value in message.raw_items()]
        assert not message.defects


@settings(PROFILE, max_examples=1000)
@given(st.one_of(BLOCK, ODD_BYTES))
def test_parse_headers_gives_the_fields_and_defects_of_the_standard_parser(block: bytes) -> None:
    headers = parse_headers(block)
    message = BytesHeaderParser(policy=compat32).parsebytes(block.replace(b"\x00", b"") + b"\r\n\r\n")
    raw = [(str(name).strip().lower(), decode_value(str(value))) for name, value in message.raw_items()]
    assert headers.fields == tuple((name, value) for name, (value, _clean) in raw)
    expected = [f"header-block:{type(defect).__name__}" for defect in message.defects]
    assert [
        d for d in headers.defects if d.startswith("header-block:") and d != "header-block:nul-bytes"
    ] == expected


def test_plain_blocks_are_split_here_and_odd_ones_are_not() -> None:
    assert plain_fields(b"To: a@b.example\r\nSubject: one\r\n two\nX-A:\tz") == [
        ("To", "a@b.example"),
        ("Subject", "one\r\n two"),
        ("X-A", "z"),
    ]
    for odd in (b"", b" continues nothing", b"To: a\rb", b"From someone", b": no name", b"To: a\r\n\r\nX: b"):
        assert plain_fields(odd) is None


MESSAGE = st.lists(st.sampled_from([b"\r\n", b"\n", b"\r", b"a", b"To: b", b" ", b"\x00"]), max_size=40).map(
    b"".join
)


@settings(PROFILE, max_examples=3000)
@given(MESSAGE, st.integers(4, 16), st.integers(1, 8))
def test_a_message_in_memory_is_located_as_in_chunks(data: bytes, chunk: int, chunks: int) -> None:
    """The limit a whole number of chunks, as ``MAX_HEADER_BYTES`` is of ``READ_CHUNK``."""
    limit = chunk * chunks
    assert locate_in(data, limit) == locate(chunks_of(data, chunk), limit)
