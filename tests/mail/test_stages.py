"""Every stage reads the same bytes the same way: one Message-ID, defects on the audit
record, the added headers written once and safely."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

from mailferry.audit import message_key
from mailferry.audit_index.keys import event_keys, query_keys
from mailferry.blobs import LocalBlobStore
from mailferry.consumers.target import DeliveryItem
from mailferry.consumers.targets.maildir import MaildirDelivery
from mailferry.mail import added_headers
from mailferry.mail.headers import parse_message_headers
from mailferry.mail.message_id import lookup_key
from mailferry.producers.ingest import prepare
from mailferry.rawrecord import RawSource
from mailferry.streams.records import routed_details
from mailferry.streams.router import Routed, route_raw
from tests.stream.factories import DOMAIN, TRACE_KEY, config, message

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _route(tmp_path: Path, data: bytes, mailbox: str = "catchall") -> tuple[Routed, str | None]:
    blobs = LocalBlobStore(tmp_path / "blobs")
    fetched = prepare(RawSource("acme", mailbox, "pop3"), data, blobs=blobs, inline_threshold=1 << 20)
    routed = route_raw(
        fetched.record, config=config(), blobs=blobs, origin="raw/0/1", now=NOW, trace_key=TRACE_KEY
    )
    assert isinstance(routed, Routed)
    return routed, fetched.message_id


def test_fetch_and_stream_write_one_message_id(tmp_path: Path) -> None:
    """The fetch stage wrote ``x1@sender.example`` and the stream ``<X1@sender.example>``:
    two audit keys (two partitions) for one message."""
    data = message(("Delivered-To", f"bob@{DOMAIN}"), ("Message-ID", " <X1@Sender.Example> (c)"))
    routed, fetched_id = _route(tmp_path, data)
    assert fetched_id == routed.message_id == "<X1@sender.example>"
    assert routed.candidates[0].delivery["dedup_key"] == f"acme/bob@{DOMAIN}/<X1@sender.example>"
    assert message_key("acme", fetched_id, "aa") == message_key("acme", routed.message_id, "bb")


def test_audit_lookups_find_both_shapes() -> None:
    """The audit index files the canonical id and the fetch stage's old shape alike."""
    old_shape = {"message_id": "x1@sender.example"}
    canonical = {"message_id": "<X1@sender.example>"}
    assert event_keys(old_shape) == event_keys(canonical)
    assert set(event_keys(canonical)) & set(query_keys("<X1@Sender.Example> (typed)"))
    assert lookup_key("<X1@sender.example>") != lookup_key("<X2@sender.example>")


def test_unparseable_fields_count_as_absent_and_reach_the_audit_record(tmp_path: Path) -> None:
    data = message(
        ("To", "(" * 500 + f"alice@{DOMAIN}"),
        ("Cc", f"carol@{DOMAIN}"),
        ("Subject", "=?punycode?q?abc-9zzzzz?="),
        ("Message-ID", "not an id"),
    )
    routed, fetched_id = _route(tmp_path, data, mailbox="guessing")
    assert fetched_id is None and routed.message_id is None
    (candidate,) = routed.candidates
    assert candidate.delivery["recipient"] == f"carol@{DOMAIN}"
    assert candidate.dedup_key.startswith(f"acme/carol@{DOMAIN}/sha256:")
    details = routed_details(candidate.delivery)
    assert details["parse_defects"].split(",") == [
        "subject:encoded-word",
        "to:address-list",
        "message-id:unparseable",
    ]
    assert "parse-defect" not in details["flags"]


def test_fetched_event_names_an_unparseable_message_id(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    data = message(("Message-ID", "<" + "@" * 5000))
    done = prepare(
        RawSource("acme", "m", "pop3"), iter([data[:7], data[7:]]), blobs=blobs, inline_threshold=10
    )
    assert done.message_id is None and done.parse_defects == ("message-id:unparseable",)


def test_added_headers_cannot_start_a_field_or_end_the_block(tmp_path: Path) -> None:
    """A rule's header value with CR LF wrote a second header (or a body) into every copy."""
    fields = (("X-Mailferry-Trace", "acme; 1"), ("X-Tag", "a\r\nBcc: eve@evil.example\r\n\r\nbody"))
    item = DeliveryItem(
        tenant="acme",
        mailbox=f"bob@{DOMAIN}",
        dedup_key="k1",
        message_id=None,
        size=20,
        sha256="0" * 64,
        open_message=lambda: io.BytesIO(b"Subject: hi\r\n\r\nbody\r\n"),
        add_headers=(*fields, ("Bad Name", "x"), ("X-Colon:", "x")),
    )
    target = MaildirDelivery("archive", tmp_path)
    target.deliver(item)
    (written,) = (tmp_path / f"bob@{DOMAIN}" / "new").iterdir()
    headers = parse_message_headers(written.read_bytes())
    assert headers.get_all("Bcc") == [] and headers.first("Subject") == "hi"
    assert headers.first("X-Tag") == "a  Bcc: eve@evil.example    body"
    assert [name for name, _ in headers.fields] == ["x-mailferry-trace", "x-tag", "subject"]
    assert item.message_bytes().startswith(added_headers.prefix(fields))
