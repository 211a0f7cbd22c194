"""A delivery worker rides out a broker restart instead of dying on its first commit.

A commit while the broker is down (or its group coordinator not back yet) failed with a
retriable error (``KafkaConnectionError``, or ``KafkaTimeoutError`` after 30 s) that ended the
worker. The supervisor started it again, but as a new group member: the group then waited
for the dead member's session to expire, and the chaos suite saw deliver workers without
partitions for about 110 s after a broker restart.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import pytest
from kafka.admin import NewTopic

from mailferry.config.kafka import EmbeddedKafka, KafkaConfig
from mailferry.consumers.commits import Committer
from mailferry.consumers.offsets import OffsetTracker
from mailferry.kafka.clients import new_admin, new_consumer, new_producer
from mailferry.kafka.embedded import EmbeddedBroker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_a_commit_while_the_broker_is_down_is_kept_for_later(tmp_path: Path) -> None:
    broker = EmbeddedBroker(EmbeddedKafka(port=0, controller_port=0), tmp_path / "kafka")
    broker.start()
    try:
        kafka = broker.client_config(KafkaConfig(topic_prefix=f"r{uuid.uuid4().hex[:8]}"))
        servers = list(kafka.bootstrap_servers)
        topic, group = f"{kafka.topic_prefix}.deliver", f"{kafka.topic_prefix}.deliver"
        admin = new_admin(kafka, servers)
        admin.create_topics([NewTopic(topic, 1, 1)])
        admin.close()
        producer = new_producer(kafka, servers)
        for index in range(3):
            producer.send(topic, value=f"record {index}".encode())
        producer.flush()
        producer.close()

        consumer = new_consumer(kafka, servers, group, topics=[topic])
        tracker = OffsetTracker()
        deadline = time.monotonic() + 60
        while tracker.position(topic, 0) < 3 and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    tracker.dispatched(topic, 0, record.offset)
                    tracker.finished(topic, 0, record.offset)
        committer = Committer(tracker)

        state = broker.load_state()
        assert state is not None and state.pid is not None
        os.killpg(state.pid, signal.SIGKILL)
        committer.commit(consumer, force=True)  # raised and ended the worker before
        assert tracker.to_commit() == {(topic, 0): 3}  # still owed

        broker.start()
        deadline = time.monotonic() + 90
        while tracker.to_commit() and time.monotonic() < deadline:
            consumer.poll(timeout_ms=500)
            committer.commit(consumer, force=True)
        consumer.close(autocommit=False)
        admin = new_admin(kafka, servers)
        committed = admin.list_group_offsets({group: None})[group]
        admin.close()
        assert {tp.partition: meta.offset for tp, meta in committed.items()} == {0: 3}
    finally:
        broker.stop()
