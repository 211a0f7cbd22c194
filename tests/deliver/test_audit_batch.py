"""``AuditBatch`` on the real broker: a batch's events in few audit records, and each event's
outcome waits for the very record that carries it (never for another pack's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailferry.audit import audit_event, read_events
from mailferry.config.kafka import KafkaConfig
from mailferry.consumers.outcomes import AuditBatch, Pending
from mailferry.kafka.clients import new_producer
from mailferry.kafka.topics import AUDIT, full_name

from .conftest import maildir_config, read_topic

pytestmark = pytest.mark.integration


def test_each_event_waits_for_the_pack_that_carries_it(tmp_path: Path, kafka_config: KafkaConfig) -> None:
    _root, config = maildir_config(tmp_path, kafka_config)
    producer = new_producer(config.kafka, list(config.kafka.bootstrap_servers))
    events = [
        audit_event("delivered", stage="deliver", tenant="acme", message_id=f"<{i}@batch.test>")
        for i in range(12)
    ]
    limit = sum(len(value) for _key, value in events[:4]) + 30  # about three events a pack
    batch = AuditBatch(producer, full_name(config.kafka, AUDIT), limit)
    pendings: list[Pending] = [[] for _ in events]
    for (key, value), pending in zip(events, pendings, strict=True):
        batch.add(key, value, pending)
    assert all(p == [] for p in pendings)  # nothing is sent before ``send``
    batch.send()
    producer.flush()
    producer.close()

    records = read_topic(config, AUDIT)
    assert 3 <= len(records) <= 6
    where = {
        event["message_id"]: (record.partition, record.offset)
        for record in records
        for event in read_events(record)
    }
    assert len(where) == 12
    for i, pending in enumerate(pendings):
        [future] = pending
        sent = future.get(timeout=10)
        assert (sent.partition, sent.offset) == where[f"<{i}@batch.test>"], i
