"""Packed records (raw, deliver, audit): what goes in comes out, in order, and plain records still read."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailferry.audit import audit_event
from mailferry.packing import AUDIT_PACK, DELIVERY_PACK, PACK_OVERHEAD, RAW_PACK, Packer, origin_of
from mailferry.rawrecord import encode_raw
from mailferry.schemas.codec import AUDIT_EVENT, DELIVERY, Record, UnknownSchemaError, codec

from ..factories import records

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def raw(n: int, body: bytes = b"x", blob: bool = False) -> Record:
    return dict(
        records.raw_message(
            mailbox_id=f"box{n % 3}",
            source_kind="pop3",
            folder=None,
            source_uid=str(n),
            size=len(body),
            sha256=f"{n:064x}",
            fetched_at=NOW,
            inline=None if blob else body,
            blob_ref=f"sha256:{n:064x}" if blob else None,
            envelope_recipients=[f"r{n}@acme.example"] if n % 2 else [],
        )
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=3000), st.booleans()), min_size=1, max_size=40))
def test_a_pack_unpacks_to_its_mails_in_order(mails: list[tuple[bytes, bool]]) -> None:
    records = [raw(n, body, blob) for n, (body, blob) in enumerate(mails)]
    value = RAW_PACK.pack([encode_raw(r) for r in records])
    assert RAW_PACK.unpack(value) == records
    assert len(value) <= sum(len(encode_raw(r)) for r in records) + PACK_OVERHEAD


def test_a_pack_of_one_is_the_plain_record_written_before_packing() -> None:
    single = encode_raw(raw(1))
    assert RAW_PACK.pack([single]) == single
    assert RAW_PACK.unpack(single) == [raw(1)]


def test_anything_else_is_refused_as_unknown_schema() -> None:
    with pytest.raises(UnknownSchemaError):
        RAW_PACK.unpack(b"not avro")


def test_origins_address_a_packed_mail_by_offset_and_index() -> None:
    assert origin_of("p.raw/3/17", 0, 1) == "p.raw/3/17"
    assert [origin_of("p.raw/3/17", i, 2) for i in range(2)] == ["p.raw/3/17/0", "p.raw/3/17/1"]


def test_packer_closes_on_size_and_linger_and_keeps_partitions_apart() -> None:
    packer = Packer(limit=PACK_OVERHEAD + 250, linger=0.05)
    assert packer.add(0, b"a", b"1" * 100, now=0.0) == []
    assert packer.add(1, b"b", b"2" * 100, now=0.01) == []
    assert packer.add(0, b"c", b"3" * 100, now=0.02) == []
    (full,) = packer.add(0, b"d", b"4" * 100, now=0.03)  # a third would pass the limit
    assert (full.partition, full.key, full.values) == (0, b"a", [b"1" * 100, b"3" * 100])
    assert len(packer) == 2
    (late,) = packer.due(now=0.061)  # partition 1 waited its linger; the new pack 0 did not
    assert (late.partition, late.values) == (1, [b"2" * 100])
    (rest,) = packer.drain()
    assert (rest.partition, rest.values) == (0, [b"4" * 100]) and len(packer) == 0


def test_a_mail_larger_than_the_limit_goes_alone() -> None:
    packer = Packer(limit=PACK_OVERHEAD + 100, linger=1.0)
    packer.add(0, b"a", b"small", now=0.0)
    (before,) = packer.add(0, b"b", b"L" * 500, now=0.0)
    assert before.values == [b"small"]
    (alone,) = packer.add(0, b"c", b"next", now=0.0)
    assert alone.values == [b"L" * 500]


def delivery(n: int) -> Record:
    return dict(
        records.delivery(
            delivery_id=f"d{n}",
            recipient=f"r{n}@acme.example",
            target="maildir",
            dedup_key=f"k{n}",
            message_id=None,
            mailbox_id="box",
            size=1,
            sha256=f"{n:064x}",
            inline=b"x" * n,
            reasons=[],
            raw_origin=f"p.raw/0/{n}",
            routed_at=NOW,
        )
    )


@pytest.mark.parametrize("count", [1, 2, 7])
def test_deliveries_and_audit_events_pack_the_same_way(count: int) -> None:
    deliveries = [delivery(n) for n in range(count)]
    value = DELIVERY_PACK.pack([codec(DELIVERY).encode(d) for d in deliveries])
    assert DELIVERY_PACK.unpack(value) == deliveries
    events = [
        audit_event("routed", stage="stream", tenant="acme", sha256=f"{n:064x}")[1] for n in range(count)
    ]
    assert [codec(AUDIT_EVENT).encode(e) for e in AUDIT_PACK.unpack(AUDIT_PACK.pack(events))] == events
    if count == 1:  # a pack of one is the plain record every reader already knows
        assert codec(DELIVERY).decode(value) == deliveries[0]
    with pytest.raises(UnknownSchemaError):  # each topic's packs are its own
        AUDIT_PACK.unpack(value)
