"""Header parsing, addresses, Message-ID normalisation, dedup decisions, loop guard (pure)."""

from __future__ import annotations

import json

import pytest

from mailferry.mail.addresses import addresses_in, normalise_address, received_for, strip_plus
from mailferry.mail.block import HeaderTooLargeError, header_block
from mailferry.mail.headers import parse_message_headers
from mailferry.mail.message_id import normalise_message_id
from mailferry.streams.dedup import Sighting, decide, dedup_key
from mailferry.streams.loopguard import check_loop


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore", b"A: 1\r\nB: 2"),
        (b"A: 1\nB: 2\n\nbody", b"A: 1\nB: 2"),
        (b"A: 1\r\n", b"A: 1\r\n"),  # no body at all
        (b"\r\nbody only", b""),
        (b"", b""),
    ],
)
def test_header_block(data: bytes, expected: bytes) -> None:
    chunks = [data[i : i + 3] for i in range(0, len(data), 3)]  # boundaries inside the separator
    assert header_block(chunks) == expected


def test_header_block_stops_reading_at_the_blank_line() -> None:
    consumed = []

    def chunks():  # type: ignore[no-untyped-def]
        for chunk in (b"Subject: x\r\n", b"\r\nbody", b"never read"):
            consumed.append(chunk)
            yield chunk

    assert header_block(chunks()) == b"Subject: x"
    assert b"never read" not in consumed


def test_header_block_limit() -> None:
    with pytest.raises(HeaderTooLargeError):
        header_block([b"X: " + b"a" * 2000], limit=1000)


@pytest.mark.parametrize(
    ("raw", "name", "expected"),
    [
        (b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= aus Berlin\r\n", "subject", "Grüße aus Berlin"),
        (b"Subject: =?iso-8859-1?b?TfxsbGVy?=\r\n", "subject", "Müller"),
        (b"Subject: =?x-unknown?q?abc?= tail\r\n", "subject", "abc tail"),  # unknown charset
        (b"Subject: =?utf-8?q?broken\r\n", "subject", "=?utf-8?q?broken"),  # broken word kept
        ("Subject: raw 8-bit Grüße\r\n".encode(), "subject", "raw 8-bit Grüße"),
        ("Subject: latin-1 M\xfcller\r\n".encode("latin-1"), "subject", "latin-1 Müller"),
        (b"Subject: folded\r\n  over\r\n\tthree lines\r\n", "subject", "folded over three lines"),
        (b"Subj\x00ect: nul\x00 bytes\r\n", "subject", "nul bytes"),
    ],
)
def test_header_values(raw: bytes, name: str, expected: str) -> None:
    headers = parse_message_headers(raw + b"\r\nbody")
    assert headers.first(name) == expected


def test_duplicate_headers_keep_order_and_names_are_case_insensitive() -> None:
    headers = parse_message_headers(b"Received: one\r\nreceived: two\r\nRECEIVED: three\r\n\r\n")
    assert headers.get_all("Received") == ["one", "two", "three"]
    assert headers.count("received") == 3


def test_binary_garbage_does_not_raise() -> None:
    garbage = bytes(range(256)) * 40
    headers = parse_message_headers(garbage)
    assert isinstance(headers.fields, tuple)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Bob@Example.COM", "bob@example.com"),
        ("<bob@example.com>", "bob@example.com"),
        ("leser@Bücher.example", "leser@xn--bcher-kva.example"),
        ("bob@@example.com", None),
        ("bob", None),
        ("bob smith@example.com", None),
        ("bob@exa mple.com", None),
        ("bob@", None),
        ("a" * 400 + "@example.com", None),
    ],
)
def test_normalise_address(raw: str, expected: str | None) -> None:
    assert normalise_address(raw) == expected


def test_address_lists_and_received_for() -> None:
    assert addresses_in('"Smith, Bob" <bob@a.example>, carol@b.example, junk') == [
        "bob@a.example",
        "carol@b.example",
    ]
    assert received_for("from x by y with ESMTP id 1 for <Bob@A.example>; Mon, 2 Nov 2026") == "bob@a.example"
    assert received_for("from x by y with ESMTP id 1; Mon, 2 Nov 2026") is None
    assert strip_plus("bob+tag+more@a.example") == ("bob@a.example", "tag+more")
    assert strip_plus("+tag@a.example") == ("+tag@a.example", None)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("<Abc.123@Mail.Example.COM>", "<Abc.123@mail.example.com>"),
        ("  <abc@x.example> (comment)", "<abc@x.example>"),
        ("abc@x.example", "<abc@x.example>"),
        ("<no-at-sign>", None),
        ("", None),
        (None, None),
        ("<>", None),
    ],
)
def test_normalise_message_id(raw: str | None, expected: str | None) -> None:
    assert normalise_message_id(raw) == expected


def test_dedup_key_falls_back_to_content_hash() -> None:
    assert dedup_key("t", "bob@a", "<m@x>", "ff") == "t/bob@a/<m@x>"
    assert dedup_key("t", "bob@a", None, "ff") == "t/bob@a/sha256:ff"


DAY = 24 * 3600 * 1000
FIRST = Sighting(first_seen_ms=100 * DAY, origin="raw/0/5", mailbox_id="catchall", delivery_id="d1")


@pytest.mark.parametrize(
    ("previous", "now", "origin", "verdict"),
    [
        (None, 100 * DAY, "raw/0/5", "first"),
        (FIRST, 100 * DAY + 1, "raw/1/9", "duplicate"),
        (FIRST, 130 * DAY - 1, "raw/1/9", "duplicate"),  # just inside a 30-day window
        (FIRST, 130 * DAY, "raw/1/9", "expired"),  # exactly one window later
        (FIRST, 100 * DAY + 5, "raw/0/5", "reprocessed"),  # the same raw record again
    ],
)
def test_decide(previous: Sighting | None, now: int, origin: str, verdict: str) -> None:
    assert decide(previous, now_ms=now, window_ms=30 * DAY, origin=origin) == verdict


def test_sighting_round_trip_and_damage() -> None:
    assert Sighting.from_value(FIRST.to_value()) == FIRST
    assert Sighting.from_value(json.dumps(FIRST.to_value()).encode()) == FIRST
    assert Sighting.from_value(b"not json") is None
    assert Sighting.from_value({"first_seen_ms": 1}) is None
    assert Sighting.from_value(None) is None


@pytest.mark.parametrize(
    ("headers", "tenant", "cap", "reason"),
    [
        ("Received: a\r\n" * 5, "acme", 5, None),
        ("Received: a\r\n" * 6, "acme", 5, "too-many-hops"),
        ("", "acme", 5, None),
    ],
)
def test_loop_guard(headers: str, tenant: str, cap: int, reason: str | None) -> None:
    parsed = parse_message_headers(("Subject: x\r\n" + headers + "\r\n").encode())
    verdict = check_loop(parsed, tenant, cap, message_id=None, key=b"k" * 32)
    assert (verdict.reason_code if verdict else None) == reason
