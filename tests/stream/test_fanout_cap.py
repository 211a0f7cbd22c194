"""The recipient cap per message, alone and through the router; and one body shared by a
message's deliveries. No Kafka."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from mailferry.blobs import LocalBlobStore
from mailferry.config.models import MailferryConfig
from mailferry.rawrecord import RawSource, build_raw_record
from mailferry.streams.bodies import dead_letter_by_reference, shared_body
from mailferry.streams.fanout import FAN_OUT_CAP, cap_recipients
from mailferry.streams.resolver import Reason, Recipient
from mailferry.streams.router import Routed, route_raw
from tests.stream.factories import DOMAIN, TRACE_KEY, message, tenant

POSTMASTER = f"postmaster@{DOMAIN}"


def people(n: int) -> tuple[Recipient, ...]:
    return tuple(Recipient(f"u{i}@{DOMAIN}", [Reason("envelope", "transport")]) for i in range(n))


def test_under_the_cap_nothing_changes() -> None:
    capped = cap_recipients(people(3), cap=3, default_mailbox=POSTMASTER)
    assert capped.recipients == people(3) and capped.over_cap == ()


def test_over_the_cap_the_first_keep_theirs_and_the_default_mailbox_gets_the_rest() -> None:
    capped = cap_recipients(people(5), cap=2, default_mailbox="PostMaster@" + DOMAIN)
    assert [r.address for r in capped.recipients] == [f"u0@{DOMAIN}", f"u1@{DOMAIN}", POSTMASTER]
    assert capped.recipients[-1].reasons == [Reason(FAN_OUT_CAP, "3 recipients over the tenant's cap of 2")]
    assert capped.over_cap == (f"u2@{DOMAIN}", f"u3@{DOMAIN}", f"u4@{DOMAIN}")
    assert capped.fallback == POSTMASTER


def test_a_default_mailbox_already_kept_gets_no_second_copy() -> None:
    recipients = (Recipient(POSTMASTER, [Reason("envelope", "transport")]), *people(3))
    capped = cap_recipients(recipients, cap=2, default_mailbox=POSTMASTER)
    assert [r.address for r in capped.recipients] == [POSTMASTER, f"u0@{DOMAIN}"]
    assert [r.kind for r in capped.recipients[0].reasons] == ["envelope", FAN_OUT_CAP]
    assert capped.over_cap == (f"u1@{DOMAIN}", f"u2@{DOMAIN}")


def test_the_router_applies_the_tenants_cap(tmp_path: Path) -> None:
    cfg = MailferryConfig.model_validate(
        {"tenants": [tenant(max_recipients_per_message=2).model_dump(mode="json")]}
    )
    blobs = LocalBlobStore(tmp_path / "blobs")
    envelope = [f"u{i}@{DOMAIN}" for i in range(4)]
    _key, raw = build_raw_record(
        RawSource("acme", "catchall", "pop3"),
        message(("Message-ID", "<m@x.example>")),
        blobs=blobs,
        inline_threshold=1 << 20,
        envelope_recipients=envelope,
    )
    routed = route_raw(
        raw, config=cfg, blobs=blobs, origin="p.raw/0/1", now=datetime.now(UTC), trace_key=TRACE_KEY
    )
    assert isinstance(routed, Routed)
    assert [c.delivery["recipient"] for c in routed.candidates] == [*envelope[:2], POSTMASTER]
    assert routed.over_cap == tuple(envelope[2:]) and routed.fallback == POSTMASTER


def test_deliveries_of_one_message_share_one_stored_body(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    body = b"Subject: x\r\n\r\n" + b"b" * 5000
    one = {"recipient": "a", "inline": body, "blob_ref": None}
    assert shared_body([one], blobs) == [one]  # a single copy stays inline
    both = shared_body([one, {**one, "recipient": "b"}], blobs)
    assert {d["inline"] for d in both} == {None}
    (reference,) = {d["blob_ref"] for d in both}
    assert blobs.read(reference) == body


def test_a_dead_letter_by_reference_moves_both_bodies_once(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    letter = {"raw": {"inline": b"raw bytes", "blob_ref": None}, "delivery": None}
    slim = dead_letter_by_reference(letter, blobs)
    assert slim is not None and slim["raw"]["inline"] is None
    assert blobs.read(slim["raw"]["blob_ref"]) == b"raw bytes"
    assert dead_letter_by_reference(slim, blobs) is None  # nothing left to move: the rescue gives up
