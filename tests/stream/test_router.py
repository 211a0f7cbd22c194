"""route_raw: raw record to delivery candidates or a dead-letter reason, bad input included."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailferry.blobs import LocalBlobStore
from mailferry.rawrecord import RawSource, build_raw_record
from mailferry.schemas.codec import DELIVERY, Record, codec
from mailferry.streams.loopguard import TRACE_HEADER
from mailferry.streams.resolver import POSSIBLE_LOST_BCC
from mailferry.streams.router import Rejected, Routed, route_raw
from tests.stream.factories import DOMAIN, TRACE_KEY, config, message

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def _raw(
    blobs: LocalBlobStore, data: bytes, mailbox: str = "catchall", threshold: int = 1 << 20, **extra: object
) -> Record:
    _key, record = build_raw_record(
        RawSource("acme", mailbox, "pop3"), data, blobs=blobs, inline_threshold=threshold
    )
    record.update(extra)
    return record


def _route(tmp_path: Path, data: bytes, **kwargs: object) -> Routed | Rejected:
    blobs = LocalBlobStore(tmp_path / "blobs")
    return route_raw(
        _raw(blobs, data, **kwargs),
        config=config(),
        blobs=blobs,
        origin="p.raw/0/1",
        now=NOW,
        trace_key=TRACE_KEY,
    )  # type: ignore[arg-type]


def test_routed_delivery_records_are_valid_avro(tmp_path: Path) -> None:
    data = message(
        ("Delivered-To", f"bob@{DOMAIN}"), ("Message-ID", "<X1@Sender.Example>"), ("Subject", "hi")
    )
    routed = _route(tmp_path, data)
    assert isinstance(routed, Routed)
    (candidate,) = routed.candidates
    delivery = codec(DELIVERY).decode(codec(DELIVERY).encode(candidate.delivery))
    assert delivery["recipient"] == f"bob@{DOMAIN}"
    assert delivery["dedup_key"] == f"acme/bob@{DOMAIN}/<X1@sender.example>"
    assert delivery["target"] == "box"
    assert delivery["inline"] == data
    assert delivery["reasons"] == [{"kind": "envelope", "detail": "Delivered-To #1"}]
    assert delivery["add_headers"][0]["name"] == TRACE_HEADER
    assert delivery["add_headers"][0]["value"].startswith("tenant=acme; mailbox=catchall; key=acme/bob@")


def test_target_override_and_bypass(tmp_path: Path) -> None:
    data = message(("Delivered-To", f"bob@{DOMAIN}"))
    routed = _route(tmp_path, data, target_override="archive", bypass_dedup=True)
    assert isinstance(routed, Routed)
    assert routed.candidates[0].delivery["target"] == "archive"
    assert routed.candidates[0].bypass_dedup
    assert routed.candidates[0].dedup_key.startswith(f"acme/bob@{DOMAIN}/sha256:")


def test_large_message_headers_come_from_the_blob_store(tmp_path: Path) -> None:
    data = message(("Delivered-To", f"carol@{DOMAIN}"), body="x" * 300_000)
    routed = _route(tmp_path, data, threshold=1000)
    assert isinstance(routed, Routed)
    delivery = routed.candidates[0].delivery
    assert delivery["inline"] is None and delivery["blob_ref"].startswith("sha256:")
    assert delivery["recipient"] == f"carol@{DOMAIN}"


def test_unknown_tenant_is_rejected(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    raw = _raw(blobs, message(("Subject", "x")), tenant="nobody")
    result = route_raw(raw, config=config(), blobs=blobs, origin="o", now=NOW, trace_key=TRACE_KEY)
    assert isinstance(result, Rejected) and result.reason_code == "unknown-tenant"


def test_missing_blob_is_rejected(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    raw = _raw(blobs, message(("Subject", "x")), inline=None, blob_ref="sha256:" + "0" * 64)
    result = route_raw(raw, config=config(), blobs=blobs, origin="o", now=NOW, trace_key=TRACE_KEY)
    assert isinstance(result, Rejected) and result.reason_code == "blob-missing"


BAD_INPUT = {
    "no headers at all": b"\r\njust a body\r\n",
    "empty": b"",
    "binary garbage": bytes(range(256)) * 64,
    "1 MB header": b"X-Big: " + b"a" * (1024 * 1024) + b"\r\nDelivered-To: bob@acme.example\r\n\r\nbody",
    "header over the cap": b"X-Big: " + b"a" * (5 * 1024 * 1024) + b"\r\n\r\nbody",
    "invalid addresses": b"Delivered-To: <<>>@@\r\nTo: ,,,;;;\r\nFrom: \x00\r\n\r\nbody",
    "NUL bytes": b"Delivered-To: bob\x00@acme.example\r\nSubject: a\x00b\r\n\r\nbo\x00dy",
    "8-bit and broken encoded words": (
        b"Subject: =?utf-8?q?\xff\xfe?= \xe9t\xe9\r\nDelivered-To: bob@acme.example\r\n\r\n"
    ),
}


@pytest.mark.parametrize("name", list(BAD_INPUT))
def test_bad_input_is_routed_or_rejected_with_a_reason(tmp_path: Path, name: str) -> None:
    result = _route(tmp_path, BAD_INPUT[name], threshold=64 * 1024)
    if isinstance(result, Rejected):
        assert result.error_class == "malformed-message" and result.reason_code and result.message
    else:
        assert result.candidates, "routed messages always reach someone"
        for candidate in result.candidates:
            codec(DELIVERY).encode(candidate.delivery)
            assert candidate.delivery["recipient"] in (f"bob@{DOMAIN}", f"postmaster@{DOMAIN}")
            if candidate.delivery["recipient"] == f"postmaster@{DOMAIN}":
                assert POSSIBLE_LOST_BCC in candidate.delivery["flags"]


def test_bad_input_outcomes(tmp_path: Path) -> None:
    outcomes = {name: _route(tmp_path, data, threshold=64 * 1024) for name, data in BAD_INPUT.items()}
    rejected = {n: o.reason_code for n, o in outcomes.items() if isinstance(o, Rejected)}
    assert rejected["no headers at all"] == "no-headers"
    assert rejected["header over the cap"] == "header-too-large"
    routed = {
        n: [c.delivery["recipient"] for c in o.candidates]
        for n, o in outcomes.items()
        if isinstance(o, Routed)
    }
    assert routed["1 MB header"] == [f"bob@{DOMAIN}"]
    assert routed["NUL bytes"] == [f"bob@{DOMAIN}"]
    assert routed["invalid addresses"] == [f"postmaster@{DOMAIN}"]


def test_a_blob_reference_naming_a_file_is_rejected_not_read(tmp_path: Path) -> None:
    outside = tmp_path / "outside.eml"
    outside.write_bytes(message(("Delivered-To", f"bob@{DOMAIN}"), ("Subject", "a host file")))
    blobs = LocalBlobStore(tmp_path / "blobs")
    raw = _raw(blobs, message(("Subject", "x")), inline=None, blob_ref=f"sha256:{outside}")
    result = route_raw(raw, config=config(), blobs=blobs, origin="o", now=NOW, trace_key=TRACE_KEY)
    assert isinstance(result, Rejected) and result.reason_code == "blob-ref-invalid"
