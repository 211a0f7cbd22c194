"""Each hostile input that once raised or stalled a stage, reproduced (issue 11).

The time bounds are generous (a loaded 2-core CI machine); the inputs are sized so that
the quadratic code these replace took 10 to 100 times longer than the bound.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from mailferry.consumers.target import DeliveryItem
from mailferry.consumers.targets.exchange_item import delivery_time, read_head
from mailferry.consumers.targets.graph.json_message import to_graph_message
from mailferry.consumers.targets.smtp import envelope_sender
from mailferry.mail import added_headers
from mailferry.mail.addresses import addresses_in, parse_address_list, received_for
from mailferry.mail.encoded_words import decode_value
from mailferry.mail.headers import field_defects, parse_message_headers
from mailferry.mail.message_id import normalise_message_id
from mailferry.producers.pop3_wire import parse_list, parse_uidl


def _timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def test_received_for_is_linear() -> None:
    """24 KB of ``for @@@…<`` cost ~18 s in the old pattern (quadratic backtracking)."""
    value = "from x by y for " + "@" * 24_000 + "<"
    assert _timed(lambda: received_for(value)) < 0.5
    assert received_for(value) is None


def test_message_id_is_linear() -> None:
    """``<@@@…`` backtracked quadratically in the old normaliser (16 KB: 2 s)."""
    value = "<" + "@" * 64_000
    assert _timed(lambda: normalise_message_id(value)) < 0.5
    assert normalise_message_id(value) is None


def test_encoded_words_are_linear() -> None:
    """``email.header.decode_header`` on 1 MiB of ``=?a?q?`` took 4.3 s."""
    value = "=?a?q?" * (1 << 18)
    assert _timed(lambda: decode_value(value)) < 1.0


@pytest.mark.parametrize(
    ("charset", "text"),
    [("punycode", "abc-9zzzzz"), ("idna", "xn--9zzzzz"), ("undefined", "abc"), ("unicode_escape", "=5CN{x")],
)
def test_non_mail_charsets_do_not_raise(charset: str, text: str) -> None:
    """``=?punycode?…?=`` raised ``UnicodeError`` out of ``make_header`` (and the message was
    dead-lettered); such a word is now kept as its bytes, flagged on the audit record."""
    headers = parse_message_headers(f"Subject: =?{charset}?q?{text}?= tail\r\n\r\n".encode())
    subject = headers.first("Subject")
    assert subject is not None and subject.endswith(" tail")
    assert "subject:encoded-word" in headers.defects


def test_nested_comments_in_an_address_list_do_not_raise() -> None:
    """500 ``(`` raised ``RecursionError`` in ``email.utils.getaddresses``."""
    value = "(" * 500 + "bob@acme.example"
    assert addresses_in(value) == []
    assert parse_address_list(value).damaged
    headers = parse_message_headers(f"To: {value}\r\nFrom: {'(' * 5000}\r\n\r\n".encode())
    assert {"to:address-list", "from:address-list"} <= set(field_defects(headers))
    assert addresses_in("((a) (b)) bob@acme.example") == ["bob@acme.example"]


@pytest.mark.parametrize("number", [b"\xb2", b"1\xb9", "٣".encode(), b"1" * 5000])
def test_pop3_listing_numbers_that_int_refuses(number: bytes) -> None:
    """A UIDL/LIST number that ``str.isdigit`` accepts but ``int`` refuses (Latin-1 '²', or
    more than 4,300 digits) raised ``ValueError``, and the mailbox never progressed."""
    found, problems = parse_uidl([number + b" uid-a", b"2 uid-b"])
    assert found == {2: "uid-b"}
    assert len(problems) == 1
    assert parse_list([number + b" 120", b"3 " + number, b"2 99"]) == {2: 99}


def _item(data: bytes, **extra: Any) -> DeliveryItem:
    def open_message() -> io.BytesIO:
        return io.BytesIO(data)

    return DeliveryItem(
        tenant="acme",
        mailbox="bob@acme.example",
        dedup_key="k",
        message_id=None,
        size=len(data),
        sha256="0" * 64,
        open_message=open_message,
        **extra,
    )


@pytest.mark.parametrize("date", ["1 Jan 99999999999 00:00:00", "Mon, 1 Jan 2000 99:99:99 +0000", "9" * 300])
def test_ews_delivery_time_ignores_a_date_that_overflows(date: str) -> None:
    """A year past ``datetime``'s range raised ``OverflowError`` out of the EWS target."""
    item = _item(f"Date: {date}\r\nSubject: x\r\n\r\nbody".encode())
    now = datetime(2026, 12, 1, tzinfo=UTC)
    assert delivery_time(item, read_head(item), now=now) == now


def test_smtp_envelope_sender_of_hostile_headers() -> None:
    """The SMTP target read From with ``getaddresses`` (RecursionError on nested comments)."""
    assert envelope_sender(_item(b"From: " + b"(" * 1000 + b"\r\n\r\nbody")) == ""
    assert (
        envelope_sender(_item(b"Return-Path: <>\r\nFrom: Bob <Bob@Acme.Example>\r\n\r\n"))
        == "Bob@Acme.Example"
    )


def test_lone_surrogates_do_not_raise() -> None:
    """Found by the fuzz run: a lone surrogate outside the parser's escapes raised
    ``UnicodeEncodeError`` in the decoder and in the added-headers writer."""
    assert decode_value("\udcff\udd00 =?utf-8?q?a\ud800?=")[0] == "?? =?utf-8?q?a??="
    assert decode_value("=?utf-8?q?\udd00?=") == ("?", True)
    assert added_headers.prefix([("X-Tag", "a\ud800b")]) == b"X-Tag: a?b\r\n"


@pytest.mark.parametrize(
    "header",
    [b"To: " + b"(" * 500 + b"bob@acme.example", b"Date: 1 Jan 99999999999 00:00:00", b"From: " + b"(" * 600],
)
def test_graph_json_conversion_of_hostile_headers(header: bytes) -> None:
    """Graph's JSON mode read the headers with the email package's modern parser:
    ``RecursionError`` on nested comments, ``OverflowError`` on a far-future Date."""
    converted = to_graph_message(
        header + b"\r\nTo: Bob <Bob@Acme.Example>\r\nSubject: hi\r\n\r\nbody",
        delivered=datetime(2026, 12, 1, tzinfo=UTC),
    )
    assert converted["subject"] == "hi"
    assert converted["toRecipients"][-1] == {"emailAddress": {"address": "Bob@Acme.Example", "name": "Bob"}}
