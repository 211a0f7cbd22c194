"""Joining a consumer group with kafka-python 3 so that every rebalance finishes.

Three things learned the hard way on a loaded machine, all with kafka-python 3.0.12 (the
newest release):

- A group leader that assigns before its metadata lists a topic assigns none of that topic's
  partitions; ``await_topics`` waits for them before the member subscribes.
- ``subscribe`` asks for metadata without waiting for it, so the first JoinGroup can be
  answered before the client has a partition snapshot of its topics. The leader then records
  an empty snapshot, and the next metadata refresh (every 5 s, ``mailferry.kafka.clients``)
  "changes" the topics and starts a rebalance nobody needed. ``subscribe_settled`` fetches
  the metadata before the first poll.
- A rebalance started by a metadata change (that one, or partitions added to a topic) whose
  JoinGroup outlives the ``poll`` timeout is never finished: the leader's new assignment makes
  the snapshots equal again, the client stops asking to rejoin, and the member stays
  "rebalancing" for good. Its partitions are revoked, nothing is fetched, every commit is
  refused, and ``assignment()`` still lists the old partitions. ``GroupWatch`` notices a
  revocation that no assignment followed for longer than a rebalance can take, and joins
  the group again.

The rebalance listener runs on the client's network thread, where blocking calls such as
``commit`` are refused: the callbacks handed to ``GroupWatch.join`` must not block.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener

from mailferry.errors import TransientError

log = logging.getLogger(__name__)
REBALANCE_GRACE_S = 30.0  # beyond the session timeout, which a dead member holds a rebalance for

Partitions = Callable[[list[TopicPartition]], None]


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


def subscribe_settled(
    consumer: KafkaConsumer, topics: list[str], listener: ConsumerRebalanceListener
) -> None:
    """Subscribe, then fetch metadata so the first join assigns from a full partition snapshot."""
    consumer.subscribe(topics, listener=listener)
    consumer.topics()


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, watch: GroupWatch, revoked: Partitions, assigned: Partitions) -> None:
        self._watch = watch
        self._revoked = revoked
        self._assigned = assigned

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self._watch.revoked()
        self._revoked(list(revoked))

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._watch.assigned(list(assigned))
        self._assigned(list(assigned))


class GroupWatch:
    """Join the group again when a rebalance has not finished for the consumer's session
    timeout plus ``REBALANCE_GRACE_S`` (or ``rejoin_after_s``).

    A rebalance that follows a killed member waits for its session to expire (45 s by
    default): rejoining sooner would restart that rebalance, and the chaos suite's deliver
    workers did so every 20 s, adding rebalances to every fault.

    Settled means the last rebalance ended in the listener's ``assigned``. With
    ``want_partitions`` an empty assignment counts as unsettled too (kafka-python can end a
    rebalance without applying the assignment); a group with more members than partitions
    must not set it, or its idle members would rejoin, and so rebalance everyone, forever.
    A rebalance that really takes longer (a member stuck for its whole poll interval) is
    restarted by the rejoin, which costs a round, not a mail.
    """

    def __init__(self, *, want_partitions: bool, rejoin_after_s: float | None = None) -> None:
        self.want_partitions = want_partitions
        self.rejoin_after_s = rejoin_after_s
        self.rejoins = 0
        self._unsettled_since: float | None = None
        self._subscription: tuple[list[str], ConsumerRebalanceListener] | None = None

    def join(
        self, consumer: KafkaConsumer, topics: list[str], revoked: Partitions, assigned: Partitions
    ) -> None:
        """Subscribe ``consumer`` (``subscribe_settled``) with the rebalance callbacks; the
        watch subscribes the same way again when it rejoins."""
        self._subscription = (topics, _Listener(self, revoked, assigned))
        self._subscribe(consumer)

    def _subscribe(self, consumer: KafkaConsumer) -> None:
        assert self._subscription is not None, "join() first"
        subscribe_settled(consumer, *self._subscription)
        self._unsettled_since = time.monotonic()

    def revoked(self) -> None:
        if self._unsettled_since is None:
            self._unsettled_since = time.monotonic()

    def assigned(self, partitions: list[TopicPartition]) -> None:
        if partitions or not self.want_partitions:
            self._unsettled_since = None
        elif self._unsettled_since is None:
            self._unsettled_since = time.monotonic()

    def check(self, consumer: KafkaConsumer) -> None:
        """Call after each ``poll``."""
        since = self._unsettled_since
        limit = self.rejoin_after_s
        if limit is None:
            limit = consumer.config["session_timeout_ms"] / 1000 + REBALANCE_GRACE_S
        if since is None or time.monotonic() - since <= limit:
            return
        log.warning("the group has not settled for %.0fs: joining it again", limit)
        self.rejoins += 1
        consumer.unsubscribe()
        self._subscribe(consumer)
