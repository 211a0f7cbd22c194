"""Packed deliver records (``mailferry.packing``) on the real broker: each delivery of a pack
is worked on its own, and the record's offset is committed only once all of them are settled.

Targets: real Maildirs, the EWS EMULATOR (not Microsoft Exchange) driven by exchangelib.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka.errors import CoordinatorNotAvailableError
from kafka.partitioner.default import murmur2

from mailferry.config import MailferryConfig
from mailferry.config.kafka import KafkaConfig
from mailferry.consumers import crashpoints
from mailferry.consumers.dlq import DeadLetterQueue, Filter
from mailferry.consumers.retry_policy import H_ORIGIN, H_ORIGIN_INDEX
from mailferry.kafka.clients import new_admin, new_producer
from mailferry.kafka.topics import DELIVER, full_name, retry_topic
from mailferry.packing import DELIVERY_PACK
from mailferry.schemas.codec import DELIVERY, codec
from mailferry_testkit.ews_emulator.faults import Fault
from mailferry_testkit.ews_emulator.server import EwsEmulator

from ..deliver_ews.workers import ews_targets, exchange_with
from .conftest import (
    RunningWorker,
    crash_at,
    dead_letters,
    delivery_record,
    events_named,
    maildir_config,
    maildir_files,
    make_config,
    read_topic,
    sample_message,
)

pytestmark = pytest.mark.integration
PARTITIONS = 3  # of the deliver topic in these tests (``make_config``)


def partition_of(recipient: str) -> int:
    """The deliver partition of ``recipient``'s key under Kafka's default partitioner."""
    return (murmur2(f"acme/{recipient}".encode()) & 0x7FFFFFFF) % PARTITIONS


# a pack holds deliveries of one partition only (the stream packs per deliver partition)
MAILBOXES = [m for m in (f"u{i}@acme.example" for i in range(30)) if partition_of(m) == 1][:5]


def publish_pack(config: MailferryConfig, deliveries: list[dict[str, Any]]) -> str:
    """One deliver record holding ``deliveries``, keyed by the first as the stream does; its
    address ``topic/partition/offset``."""
    [partition] = {partition_of(d["recipient"]) for d in deliveries}
    producer = new_producer(config.kafka, list(config.kafka.bootstrap_servers), acks="all")
    first = deliveries[0]
    value = DELIVERY_PACK.pack([codec(DELIVERY).encode(d) for d in deliveries])
    sent = producer.send(
        full_name(config.kafka, DELIVER),
        key=f"{first['tenant']}/{first['recipient']}".encode(),
        value=value,
        partition=partition,
    ).get(timeout=30)
    producer.close()
    return f"{sent.topic}/{sent.partition}/{sent.offset}"


def committed(config: MailferryConfig, group: str | None = None) -> int:
    """The deliver topic's committed offsets of the worker group, summed over partitions
    (0 while the group has no coordinator yet: nothing committed)."""
    admin = new_admin(config.kafka, list(config.kafka.bootstrap_servers))
    group = group or f"{config.kafka.topic_prefix}.deliver"
    try:
        offsets = admin.list_group_offsets({group: None})[group]
    except CoordinatorNotAvailableError:
        return 0
    finally:
        admin.close()
    deliver = full_name(config.kafka, DELIVER)
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == deliver)


def test_each_delivery_of_a_pack_is_delivered_once(
    tmp_path: Path, kafka_config: KafkaConfig, start_worker: Callable[..., RunningWorker]
) -> None:
    root, config = maildir_config(tmp_path, kafka_config)
    first = [delivery_record(m, sample_message(i, m)) for i, m in enumerate(MAILBOXES[:4])]
    first.append(delivery_record(MAILBOXES[0], sample_message(9, MAILBOXES[0])))  # a second mail for u0
    again = [first[1], delivery_record(MAILBOXES[4], sample_message(10, MAILBOXES[4]))]  # a replayed copy
    packs = [publish_pack(config, first), publish_pack(config, again)]

    worker = start_worker(config)
    worker.wait_for(lambda: committed(config) == 2)
    worker.shutdown()

    assert [len(maildir_files(root, m)) for m in MAILBOXES] == [2, 1, 1, 1, 1]
    delivered = events_named(config, "delivered")
    assert len(delivered) == 6
    assert {e["details"]["origin"] for e in delivered} == {
        *(f"{packs[0]}/{i}" for i in range(5)),
        f"{packs[1]}/1",
    }
    [skipped] = events_named(config, "skipped")
    assert skipped["details"]["origin"] == f"{packs[1]}/0" and skipped["recipient"] == MAILBOXES[1]
    assert dead_letters(config) == []


def test_a_pack_of_one_is_a_plain_record_and_a_bad_record_is_dead_lettered(
    tmp_path: Path, kafka_config: KafkaConfig, start_worker: Callable[..., RunningWorker]
) -> None:
    root, config = maildir_config(tmp_path, kafka_config)
    plain = publish_pack(config, [delivery_record(MAILBOXES[0], sample_message(0, MAILBOXES[0]))])
    producer = new_producer(config.kafka, list(config.kafka.bootstrap_servers), acks="all")
    junk = full_name(config.kafka, DELIVER)
    producer.send(junk, key=b"acme/x", value=b"not a pack", partition=1).get(timeout=30)
    producer.close()

    worker = start_worker(config)
    worker.wait_for(lambda: committed(config) == 2)
    worker.shutdown()
    assert len(maildir_files(root, MAILBOXES[0])) == 1
    [delivered] = events_named(config, "delivered")
    assert delivered["details"]["origin"] == plain  # no index: not a pack
    [letter] = dead_letters(config)
    assert letter["error_class"] == "malformed-message" and letter["origin_index"] is None


def test_a_delivery_of_a_pack_that_cannot_be_delivered_is_dead_lettered_alone(
    tmp_path: Path, kafka_config: KafkaConfig, start_worker: Callable[..., RunningWorker]
) -> None:
    root, config = maildir_config(tmp_path, kafka_config, target_extra="max_message_size = 400\n")
    deliveries = [delivery_record(m, sample_message(i, m)) for i, m in enumerate(MAILBOXES[:3])]
    deliveries[1] = delivery_record(MAILBOXES[1], sample_message(1, MAILBOXES[1]) + b"x" * 1000)
    pack = publish_pack(config, deliveries)

    worker = start_worker(config)
    worker.wait_for(lambda: committed(config) == 1)
    worker.shutdown()
    assert [len(maildir_files(root, m)) for m in MAILBOXES[:3]] == [1, 0, 1]
    [letter] = dead_letters(config)
    assert letter["delivery"]["delivery_id"] == deliveries[1]["delivery_id"]
    assert (letter["origin_offset"], letter["origin_index"]) == (int(pack.rsplit("/", 1)[1]), 1)
    [entry] = DeadLetterQueue(config, list(config.kafka.bootstrap_servers)).find(Filter())
    assert entry.shown()["origin"] == f"{pack}/1"
    [event] = events_named(config, "dead-lettered")
    assert event["details"]["origin"] == f"{pack}/1"


@pytest.fixture
def exchange() -> Iterator[EwsEmulator]:
    with exchange_with(MAILBOXES) as emulator:
        yield emulator


def test_a_failing_delivery_goes_to_retry_alone_and_the_offset_waits_for_every_delivery(
    tmp_path: Path,
    kafka_config: KafkaConfig,
    exchange: EwsEmulator,
    start_worker: Callable[..., RunningWorker],
) -> None:
    """Four mailboxes in one record: one CreateItem is slow, one is refused as busy. The
    others are delivered meanwhile, the busy one goes alone to retry tier 0 as a plain
    Delivery, and the record's offset is committed only when the slow one is done too."""
    config = make_config(
        tmp_path, kafka_config, ews_targets(exchange, concurrency=2, timeout="30s"), tiers='["1s"]'
    )
    worker = start_worker(config)
    warm_up = delivery_record(MAILBOXES[4], sample_message(4, MAILBOXES[4]))  # joined, assigned, idle
    publish_pack(config, [warm_up])
    worker.wait_for(lambda: committed(config) == 1)

    exchange.inject(Fault.SLOW, operation="CreateItem", delay=6.0)
    exchange.inject(Fault.SERVER_BUSY, operation="CreateItem", back_off_ms=10)
    deliveries = [delivery_record(m, sample_message(i, m)) for i, m in enumerate(MAILBOXES[:4])]
    pack = publish_pack(config, deliveries)
    worker.wait_for(
        lambda: len(events_named(config, "delivered")) >= 3 and bool(events_named(config, "retried"))
    )
    assert len(events_named(config, "delivered")) < 5  # the slow CreateItem (6 s) is still running
    assert committed(config) == 1, "offset committed while a delivery of the record was running"
    worker.wait_for(lambda: len(events_named(config, "delivered")) == 5 and committed(config) == 2)
    worker.shutdown()

    assert [len(exchange.items(m)) for m in MAILBOXES] == [1] * 5
    [retried] = events_named(config, "retried")
    [tier_record] = read_topic(config, retry_topic(0), timeout_ms=1000)
    moved = codec(DELIVERY).decode(tier_record.value)  # a plain Delivery, not a pack
    assert moved["recipient"] == retried["recipient"]
    assert tier_record.key == f"acme/{moved['recipient']}".encode()
    index = MAILBOXES.index(moved["recipient"])
    headers = dict(tier_record.headers)
    assert headers[H_ORIGIN].decode() == pack and headers[H_ORIGIN_INDEX] == str(index).encode()
    assert retried["details"]["origin"] == f"{pack}/{index}"
    [by_tier] = [e for e in events_named(config, "delivered") if e["recipient"] == moved["recipient"]]
    assert by_tier["details"]["attempts"] == "2" and by_tier["details"]["origin"].startswith(
        full_name(config.kafka, retry_topic(0))
    )


def test_a_crash_in_the_middle_of_a_pack_delivers_nothing_twice(
    tmp_path: Path, kafka_config: KafkaConfig, start_worker: Callable[..., RunningWorker]
) -> None:
    """The deliver role is SIGKILLed after the third delivery of a five-delivery record is
    settled (its offset uncommitted): the next worker reads the record again and the ledger
    skips what was delivered; every mailbox ends with one copy."""
    root, config = maildir_config(tmp_path, kafka_config, target_extra="concurrency = 1\n")
    pack = publish_pack(config, [delivery_record(m, sample_message(i, m)) for i, m in enumerate(MAILBOXES)])
    crash_at(tmp_path, f"{crashpoints.AFTER_SETTLED}#3")
    assert committed(config) == 0
    before = {e["recipient"] for e in events_named(config, "delivered")}
    assert len(before) >= 3

    group = f"{config.kafka.topic_prefix}.after-crash"  # the dead member would hold the partitions
    worker = start_worker(config, group_id=group)
    worker.wait_for(lambda: committed(config, group) == 1)
    worker.shutdown()

    assert [len(maildir_files(root, m)) for m in MAILBOXES] == [1] * 5
    skipped = events_named(config, "skipped")
    assert {e["recipient"] for e in skipped} >= before
    assert all(e["details"]["reason"] == "already in the ledger" for e in skipped)
    assert {e["details"]["origin"] for e in skipped} <= {f"{pack}/{i}" for i in range(5)}
    assert {e["recipient"] for e in events_named(config, "delivered")} == set(MAILBOXES)
