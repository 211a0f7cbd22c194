"""The leave-on-server watch reads ``delivered`` events wherever the audit topic holds them:
plain records and packs of several messages' events (real broker)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailferry.audit import audit_event
from mailferry.config.kafka import KafkaConfig
from mailferry.kafka.clients import new_producer
from mailferry.kafka.topics import AUDIT, full_name
from mailferry.packing import AUDIT_PACK
from mailferry.producers.delivery_watch import DeliveryWatch

from ..topics import create_topics

pytestmark = pytest.mark.integration


def _delivered(key: str, sha: str) -> tuple[bytes, bytes]:
    return audit_event("delivered", stage="deliver", tenant="acme", sha256=sha, dedup_key=key)


def test_a_message_delivered_in_packs_counts_as_delivered(kafka_config: KafkaConfig) -> None:
    create_topics(kafka_config, 1)
    resolved = audit_event(
        "resolved",
        stage="stream",
        tenant="acme",
        mailbox_id="box",
        sha256="s1",
        details={"dedup_keys": "k-bob\nk-eve"},
    )
    packs = [
        [_delivered("k-other", "s0"), resolved],
        [_delivered("k-other2", "s0"), _delivered("k-bob", "s1")],
        [_delivered("k-eve", "s1")],  # a pack of one: the plain record
    ]
    producer = new_producer(kafka_config, list(kafka_config.bootstrap_servers), acks="all")
    for events in packs:
        producer.send(
            full_name(kafka_config, AUDIT), key=events[0][0], value=AUDIT_PACK.pack([v for _k, v in events])
        )
    producer.flush()
    producer.close()
    watch = DeliveryWatch(kafka_config, list(kafka_config.bootstrap_servers), timeout=30)
    try:
        since = datetime.now(UTC) - timedelta(minutes=1)
        assert watch.settled("acme", "box", {"s1", "s2"}, since) == {"s1"}
    finally:
        watch.close()
