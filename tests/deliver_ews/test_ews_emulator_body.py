"""The EWS EMULATOR's (not Exchange) chunked body parser: MimeContent decoded as it arrives."""

from __future__ import annotations

import base64

import pytest

from mailferry_testkit.ews_emulator.body import parse_chunks
from mailferry_testkit.ews_emulator.soap import EwsFault, parse_request

T = "http://schemas.microsoft.com/exchange/services/2006/types"


def doc(mime_text: bytes) -> bytes:
    head = b'<a xmlns:t="' + T.encode() + b'"><t:MimeContent>'
    return head + mime_text + b"</t:MimeContent><t:IsRead>0</t:IsRead></a>"


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 3, 7, 4096])
def test_mime_is_decoded_whatever_the_chunk_boundaries(size: int) -> None:
    mime = bytes(range(256)) * 40 + b"end"
    text = base64.b64encode(mime)
    wrapped = b"\r\n".join(text[i : i + 76] for i in range(0, len(text), 76))  # line breaks are allowed
    root, found = parse_chunks(chunks(doc(wrapped), size), mime_limit=1 << 20)
    [(elem, decoded)] = found.items()
    assert decoded.value() == mime
    assert elem.text is None  # the tree does not hold the text
    assert root.find(f"{{{T}}}IsRead").text == "0"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (b"QUJD$EFG", "not base64"),
        (b"QUI=QUJD", "base64"),
        (b"QUJDR", "multiple of 4"),
        (b"QUJD<t:x/>", "text only"),
    ],
)
def test_bad_mime_content_is_refused(text: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_chunks(chunks(doc(text), 2), mime_limit=1 << 20)


def test_over_the_limit_is_counted_not_kept() -> None:
    _, found = parse_chunks([doc(base64.b64encode(b"x" * 5000))], mime_limit=1000)
    [decoded] = found.values()
    assert decoded.over_limit and decoded.size == 5000
    assert decoded.value() == b""


def test_a_chunked_request_gets_the_same_strict_envelope_checks() -> None:
    bad = b'<Envelope xmlns="urn:not-soap"><Body/></Envelope>'
    with pytest.raises(EwsFault, match="SOAP 1\\.1 Envelope"):
        parse_request(chunks(bad, 5))
