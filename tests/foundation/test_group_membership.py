"""Every rebalance finishes (``mailferry.kafka.membership``), on the real broker.

The wedge below is kafka-python 3.0.12's: a rebalance started by a metadata change whose
JoinGroup outlives the ``poll`` timeout is never completed. It stalled the deliver role of
the secrets end-to-end test for its whole 300 s budget in CI (every commit refused with
"not part of an active group"). The short polls make the JoinGroup outlive the poll on any
machine; the deliver worker's 500 ms polls do it only on a busy one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import cast

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import NewPartitions, NewTopic

from mailferry.config.kafka import KafkaConfig
from mailferry.kafka.clients import new_admin, new_consumer, new_producer
from mailferry.kafka.membership import GroupWatch, await_topics

pytestmark = pytest.mark.integration


class Events:
    def __init__(self) -> None:
        self.revoked: list[int] = []
        self.assigned: list[int] = []

    def on_revoked(self, partitions: list[TopicPartition]) -> None:
        self.revoked.append(len(partitions))

    def on_assigned(self, partitions: list[TopicPartition]) -> None:
        self.assigned.append(len(partitions))


def _topics(kafka: KafkaConfig, partitions: int = 2) -> list[str]:
    names = [f"member-{uuid.uuid4().hex[:8]}-{n}" for n in range(2)]
    admin = new_admin(kafka, list(kafka.bootstrap_servers))
    admin.create_topics([NewTopic(t, partitions, 1) for t in names])
    admin.close()
    return names


def _poll_until(consumer: KafkaConsumer, done: Callable[[], bool], timeout_s: float, poll_ms: int) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        consumer.poll(timeout_ms=poll_ms)
        if done():
            return True
    return False


def test_a_settled_subscription_knows_its_partitions_before_the_first_join(kafka_config: KafkaConfig) -> None:
    """Without the metadata fetch the group leader's first assignment records an empty
    partition snapshot, and the next metadata refresh starts a rebalance nobody needed (the
    one that can wedge). Reads the client's snapshot: the name is kafka-python's own."""
    topics = _topics(kafka_config)
    servers = list(kafka_config.bootstrap_servers)
    consumer = new_consumer(kafka_config, servers, f"g-{uuid.uuid4().hex[:8]}")
    try:
        await_topics(consumer, topics)
        events = Events()
        GroupWatch(want_partitions=True).join(consumer, topics, events.on_revoked, events.on_assigned)
        assert consumer._coordinator._metadata_snapshot == {t: {0, 1} for t in topics}
        assert _poll_until(consumer, lambda: bool(events.assigned), 30, 500)
        # the 5 s metadata refresh comes and goes without a second rebalance
        _poll_until(consumer, lambda: False, 7, 500)
        assert events.assigned == [4] and events.revoked == [0]
    finally:
        consumer.close(autocommit=False)


def test_a_rebalance_that_never_finishes_is_joined_again(kafka_config: KafkaConfig) -> None:
    topics = _topics(kafka_config)
    servers = list(kafka_config.bootstrap_servers)
    consumer = new_consumer(kafka_config, servers, f"g-{uuid.uuid4().hex[:8]}")
    watch = GroupWatch(want_partitions=True, rejoin_after_s=6)
    events = Events()
    producer = new_producer(kafka_config, servers)
    try:
        watch.join(consumer, topics, events.on_revoked, events.on_assigned)
        assert _poll_until(consumer, lambda: bool(events.assigned), 30, 500)
        admin = new_admin(kafka_config, servers)
        admin.create_partitions({topics[0]: NewPartitions(3)})
        admin.close()
        # the metadata refresh (5 s) notices the new partition; each JoinGroup outlives the poll
        assert _poll_until(consumer, lambda: len(events.revoked) == 2, 20, 1)
        _poll_until(consumer, lambda: False, 1, 1)
        assert len(events.assigned) == 1, "the rebalance finished on its own: no wedge to recover from"
        assert consumer.assignment(), "the wedged member still lists its revoked partitions"
        # what the worker does after each poll: the watch joins again, and records flow
        producer.send(topics[1], b"after the wedge").get(timeout=30)
        got: list[bytes] = []

        deadline = time.monotonic() + 40
        while b"after the wedge" not in got and time.monotonic() < deadline:
            got.extend(r.value for records in consumer.poll(timeout_ms=500).values() for r in records)
            watch.check(consumer)
        assert b"after the wedge" in got
        assert watch.rejoins == 1 and events.assigned[-1] == 5
    finally:
        producer.close()
        consumer.close(autocommit=False)


def test_a_member_left_idle_by_a_larger_group_stays_put() -> None:
    """Fetch workers may outnumber mailbox partitions; an empty assignment is settled there."""
    rejoined: list[bool] = []
    for want in (False, True):
        consumer = _Consumer()
        watch = GroupWatch(want_partitions=want, rejoin_after_s=0)
        watch.join(cast(KafkaConsumer, consumer), ["t"], _ignore, _ignore)
        watch.revoked()
        watch.assigned([])
        time.sleep(0.01)
        watch.check(cast(KafkaConsumer, consumer))
        rejoined += [want] * (consumer.subscriptions - 1)
    assert rejoined == [True]


def _ignore(partitions: list[TopicPartition]) -> None:
    pass


class _Consumer:
    """All a watch reads and calls on its consumer: subscribing (settled) and leaving."""

    config = {"session_timeout_ms": 45_000}

    def __init__(self) -> None:
        self.subscriptions = 0

    def subscribe(self, topics: list[str], listener: object) -> None:
        self.subscriptions += 1

    def topics(self) -> set[str]:
        return set()

    def unsubscribe(self) -> None:
        pass


def test_a_rebalance_held_by_a_dead_members_session_is_not_restarted(monkeypatch: pytest.MonkeyPatch) -> None:
    """A killed member holds the next rebalance for its session timeout; the chaos suite's
    deliver workers rejoined every 20 s in that wait and so restarted it."""
    from mailferry.kafka import membership

    now = [1000.0]
    monkeypatch.setattr(membership, "time", SimpleNamespace(monotonic=lambda: now[0]))
    consumer = _Consumer()
    rejoined: list[float] = []
    watch = GroupWatch(want_partitions=True)
    watch.join(cast(KafkaConsumer, consumer), ["t"], _ignore, _ignore)
    watch.assigned([TopicPartition("t", 0)])
    watch.revoked()
    for waited in (20, 45, 74, 76):  # 45 s session + 30 s grace
        now[0] = 1000.0 + waited
        before = consumer.subscriptions
        watch.check(cast(KafkaConsumer, consumer))
        rejoined += [now[0]] * (consumer.subscriptions - before)
    assert rejoined == [1076.0]
