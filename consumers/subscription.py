"""Joining the delivery consumer group safely with kafka-python 3.

Two things learned the hard way on a loaded machine: a group leader that assigns before its
metadata lists a topic assigns none of that topic's partitions (kafka-python notices only
at its next metadata refresh, five minutes later), and the rebalance listener runs on the
client's network thread, where blocking calls such as ``commit`` are refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener

from mailferry.errors import TransientError


def await_topics(consumer: KafkaConsumer, topics: list[str], timeout_s: float = 60.0) -> None:
    """Return once every topic's partitions are known; a missing topic is an error."""
    deadline = time.monotonic() + timeout_s
    while True:
        missing = [t for t in topics if not consumer.partitions_for_topic(t)]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TransientError(
                f"topics {', '.join(missing)} do not exist: run `mailferry topics ensure`",
                reason_code="missing-topics",
            )
        time.sleep(0.5)


class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Hands revoked and assigned partitions to the worker; must not block."""

    def __init__(
        self,
        revoked: Callable[[list[TopicPartition]], None],
        assigned: Callable[[list[TopicPartition]], None],
    ) -> None:
        self._revoked = revoked
        self._assigned = assigned

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self._revoked(list(revoked))

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._assigned(list(assigned))
