"""The stream's outputs made cheaper stay the same bytes: packs, their partitions, reads in place."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given, settings
from hypothesis import strategies as st

from mailferry.audit import audit_event
from mailferry.packing import AUDIT_PACK, DELIVERY_PACK, RAW_PACK
from mailferry.rawrecord import encode_raw
from mailferry.schemas.codec import AUDIT_BATCH, DELIVERY, DELIVERY_BATCH, RAW_BATCH, codec
from mailferry.streams.collector import Collector, Partitions

from ..factories import records

NOW = datetime(2026, 12, 4, 0, 0, tzinfo=UTC)


def kafka_partition(key: bytes, partitions: int) -> int:
    """What the stream's producer (aiokafka, under Faust) picks for a keyed record with no
    partition given: Kafka's default partitioner."""
    return int(DefaultPartitioner()(key, list(range(partitions)), list(range(partitions))))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=80), min_size=1, max_size=30), st.integers(1, 12))
def test_the_remembered_partition_is_kafkas_default_partition(keys: list[bytes], partitions: int) -> None:
    partition_of = Partitions(partitions, limit=5)
    for key in keys + keys:  # the second round comes from the cache (or after it was cleared)
        assert partition_of(key) == kafka_partition(key, partitions)


def test_the_partition_cache_stays_within_its_limit() -> None:
    partition_of = Partitions(6, limit=3)
    for n in range(10):
        assert partition_of(f"acme/user{n}@acme.example".encode()) == kafka_partition(
            f"acme/user{n}@acme.example".encode(), 6
        )
        assert len(partition_of._known) <= 3


def delivery(n: int, body: bytes) -> dict[str, Any]:
    return dict(
        records.delivery(
            delivery_id=f"{n:032x}",
            recipient=f"user{n % 4}@acme.example",
            dedup_key=f"acme/user{n % 4}@acme.example/<{n}@x>",
            sha256=f"{n:064x}",
            size=len(body),
            inline=body,
            raw_origin=f"p.raw/0/7/{n}",
            routed_at=NOW,
        )
    )


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(max_size=2000), min_size=2, max_size=25))
def test_a_pack_is_byte_for_byte_the_batch_record_of_its_items(bodies: list[bytes]) -> None:
    deliveries = [delivery(n, body) for n, body in enumerate(bodies)]
    singles = [codec(DELIVERY).encode(d) for d in deliveries]
    assert DELIVERY_PACK.pack(singles) == codec(DELIVERY_BATCH).encode({"deliveries": deliveries})
    events = [audit_event("routed", stage="stream", tenant="acme")[1] for _ in bodies]
    decoded = [codec(AUDIT_PACK.single).decode(value) for value in events]
    assert AUDIT_PACK.pack(events) == codec(AUDIT_BATCH).encode({"events": decoded})


def test_a_record_is_read_in_place_from_bytes_and_from_a_view() -> None:
    mails = [dict(records.raw_message(source_uid=str(n), inline=f"mail {n}".encode())) for n in range(3)]
    value = RAW_PACK.pack([encode_raw(m) for m in mails])
    assert codec(RAW_BATCH).decode(value)["messages"] == mails
    assert codec(RAW_BATCH).decode(bytearray(value))["messages"] == mails
    assert codec(RAW_BATCH).decode(memoryview(value))["messages"] == mails
    assert RAW_PACK.unpack(value) == mails


def test_the_collector_sends_each_delivery_pack_to_its_keys_partition() -> None:
    collector = Collector(deliver_partitions=5, limit=1 << 20, packed=True)
    for n in range(40):  # 4 recipients, 10 deliveries each
        item = delivery(n, b"x")
        collector.delivery(f"acme/{item['recipient']}".encode(), codec(DELIVERY).encode(item))
    outputs = collector.close()
    for record in outputs.deliveries:
        assert record.key is not None
        assert record.partition == kafka_partition(record.key, 5)
        for item in DELIVERY_PACK.unpack(record.value):
            assert kafka_partition(f"acme/{item['recipient']}".encode(), 5) == record.partition
