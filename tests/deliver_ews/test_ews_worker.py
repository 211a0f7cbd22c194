"""The delivery worker on the real broker writing through the EWS target into the EWS
EMULATOR (not Microsoft Exchange): no second item after a crash or an ambiguous timeout."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mailferry.config import MailferryConfig
from mailferry.config.kafka import KafkaConfig
from mailferry_testkit.ews_emulator.faults import Fault
from mailferry_testkit.ews_emulator.server import EwsEmulator

from ..deliver.conftest import (
    NeverCommits,
    RunningWorker,
    audit_events,
    delivery_record,
    events_named,
    make_config,
    publish,
    sample_message,
)
from .workers import ews_targets

pytestmark = pytest.mark.integration
MAILBOXES = [f"u{i}@acme.example" for i in range(6)]


def ews_config(
    tmp_path: Path, kafka: KafkaConfig, exchange: EwsEmulator, timeout: str = "5s"
) -> MailferryConfig:
    return make_config(tmp_path, kafka, ews_targets(exchange, timeout=timeout, concurrency=4))


def _stored(exchange: EwsEmulator) -> int:
    return sum(len(exchange.items(m)) for m in MAILBOXES)


def test_crash_after_create_item_before_commit_creates_no_second_item(
    tmp_path: Path,
    kafka_config: KafkaConfig,
    start_exchange: Callable[..., EwsEmulator],
    start_worker: Callable[..., RunningWorker],
) -> None:
    exchange = start_exchange(MAILBOXES)
    config = ews_config(tmp_path, kafka_config, exchange)
    publish(config, [delivery_record(m, sample_message(i, m)) for i, m in enumerate(MAILBOXES)])
    crashed = start_worker(config, worker_class=NeverCommits)
    crashed.wait_for(lambda: len(events_named(config, "delivered")) == 6)
    crashed.shutdown()
    assert _stored(exchange) == 6

    restarted = start_worker(config)  # sees all six records again: nothing was committed
    try:
        restarted.wait_for(lambda: len(events_named(config, "skipped")) == 6, timeout=120)
    except AssertionError:
        seen = [(e["event"], e["recipient"]) for e in audit_events(config, timeout_ms=1000)]
        raise AssertionError(f"events so far: {seen}") from None
    restarted.shutdown()
    assert _stored(exchange) == 6
    for mailbox in MAILBOXES:
        [item] = exchange.items(mailbox)
        assert item.impersonated_as == mailbox


def test_timeout_after_create_item_is_checked_in_exchange_not_written_again(
    tmp_path: Path,
    kafka_config: KafkaConfig,
    start_exchange: Callable[..., EwsEmulator],
    start_worker: Callable[..., RunningWorker],
) -> None:
    exchange = start_exchange(MAILBOXES)
    config = ews_config(tmp_path, kafka_config, exchange, timeout="3s")
    exchange.inject(Fault.TIMEOUT_AFTER_STORE, operation="CreateItem", delay=6.0)
    publish(config, [delivery_record("u1@acme.example", sample_message(1, "u1@acme.example"))])
    worker = start_worker(config)
    try:
        worker.wait_for(lambda: bool(events_named(config, "delivered")), timeout=120)
    except AssertionError:
        seen = [(e["event"], e.get("details")) for e in audit_events(config, timeout_ms=1000)]
        raise AssertionError(f"events so far: {seen}; emulator saw {exchange.requests}") from None
    worker.shutdown()
    assert len(exchange.items("u1@acme.example")) == 1
    assert exchange.requests["CreateItem"] == 1
    assert exchange.requests["FindItem"] >= 1


def test_a_mailboxs_messages_go_in_one_create_item_and_each_keeps_its_own_outcome(
    tmp_path: Path,
    kafka_config: KafkaConfig,
    start_exchange: Callable[..., EwsEmulator],
    start_worker: Callable[..., RunningWorker],
) -> None:
    """Batched CreateItem (issue 14): 24 messages for two mailboxes, published before the
    worker starts, take a few requests instead of 24; one message the EMULATOR refuses for
    its size (per item, as Exchange answers) is dead-lettered, its neighbours are delivered."""
    exchange = start_exchange(MAILBOXES[:2], max_message_size=20_000)
    config = ews_config(tmp_path, kafka_config, exchange)
    records = [delivery_record(MAILBOXES[i % 2], sample_message(i, MAILBOXES[i % 2])) for i in range(24)]
    big = sample_message(99, MAILBOXES[0]) + b"x" * 30_000
    records.insert(5, delivery_record(MAILBOXES[0], big))
    publish(config, records)
    worker = start_worker(config)
    worker.wait_for(
        lambda: len(events_named(config, "delivered")) == 24 and bool(events_named(config, "dead-lettered"))
    )
    worker.shutdown()
    assert sum(len(exchange.items(m)) for m in MAILBOXES[:2]) == 24
    assert exchange.requests["CreateItem"] <= 8, exchange.requests
    [letter] = events_named(config, "dead-lettered")
    assert letter["details"]["error_class"] == "permanent"
