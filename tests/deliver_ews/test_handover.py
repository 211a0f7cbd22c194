"""Two deliver workers and a rebalance while attempts are writing into the EWS EMULATOR
(not Microsoft Exchange), on the real broker: the partition is given up only after its
running attempts finished and their outcomes reached the ledger (docs/reliability.md)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka.partitioner.default import murmur2

from mailferry.config import MailferryConfig
from mailferry.config.kafka import KafkaConfig
from mailferry_testkit.ews_emulator.faults import Fault
from mailferry_testkit.ews_emulator.server import EwsEmulator

from ..deliver.conftest import (
    RunningWorker,
    delivery_record,
    events_named,
    make_config,
    publish,
    sample_message,
)
from .workers import SERVICE_ACCOUNT, ews_targets

pytestmark = pytest.mark.integration
PARTITIONS = 3  # make_config's


def _two_per_partition() -> list[str]:
    """Mailboxes whose records land two on each partition, so every worker has some."""
    chosen: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    for i in range(1000):
        address = f"r{i}@acme.example"
        partition = (murmur2(f"acme/{address}".encode()) & 0x7FFFFFFF) % PARTITIONS
        if len(chosen[partition]) < 2:
            chosen[partition].append(address)
    return [a for p in range(PARTITIONS) for a in chosen[p]]


MAILBOXES = _two_per_partition()


def test_a_rebalance_mid_write_leaves_one_copy_each(
    tmp_path: Path,
    kafka_config: KafkaConfig,
    start_exchange: Callable[..., EwsEmulator],
    start_worker: Callable[..., RunningWorker],
) -> None:
    exchange = start_exchange(MAILBOXES, accounts=(SERVICE_ACCOUNT, "svc-second"))

    def targets(user: str) -> str:
        return ews_targets(exchange, username=user, timeout="60s", concurrency=6)

    config = make_config(tmp_path, kafka_config, targets(SERVICE_ACCOUNT))
    # the second worker's own account: exchangelib shares one session pool per credentials in
    # a process, which would make it wait for the first worker's slow writes to start at all
    (tmp_path / "second").mkdir()
    config_two = make_config(tmp_path / "second", kafka_config, targets("svc-second"))
    exchange.inject(Fault.SLOW, count=6, operation="CreateItem", delay=25.0)
    first = start_worker(config)
    publish(config, [delivery_record(m, sample_message(i, m)) for i, m in enumerate(MAILBOXES)])
    first.wait_for(lambda: exchange.requests.get("CreateItem", 0) >= 3, timeout=120)
    second = start_worker(config_two)  # joins while those writes are running
    try:
        first.wait_for(lambda: _delivered(config) == set(MAILBOXES), timeout=180)
        for worker in (first, second):
            worker.wait_for(lambda w=worker: bool(_owned(w)), timeout=60)  # type: ignore[misc]
        time.sleep(5)  # a late second write would land by now
        owned = [_owned(first), _owned(second)]
    finally:
        first.shutdown()
        second.shutdown()
    assert [len(exchange.items(m)) for m in MAILBOXES] == [1] * len(MAILBOXES)
    for by_topic in owned:  # one owner per partition number, on the deliver topic and each tier
        assert len(set(by_topic.values())) == 1, by_topic
    assert (
        not owned[0][config.kafka.topic_prefix + ".deliver"]
        & owned[1][config.kafka.topic_prefix + ".deliver"]
    )


def _delivered(config: MailferryConfig) -> set[str]:
    return {e["recipient"] for e in events_named(config, "delivered")}


def _owned(worker: RunningWorker) -> dict[str, frozenset[int]]:
    consumer = worker.worker.consumer
    found: dict[str, set[int]] = {}
    for tp in consumer.assignment() if consumer is not None else ():
        found.setdefault(tp.topic, set()).add(tp.partition)
    return {topic: frozenset(parts) for topic, parts in found.items()}
