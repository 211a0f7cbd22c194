"""Committing what is settled, at most every ``COMMIT_EVERY_S``.

A synchronous commit per delivery held the loop for a broker round trip each time. Waiting
longer only means more records read again after a crash, which the ledger keeps single.

A commit that fails for a retriable reason (the broker or the group coordinator is away,
say during a broker restart) is kept for the next round, bounded by ``COMMIT_TIMEOUT_MS``:
raising ended the worker, and its replacement joined as a new member, so the group
waited for the old member's session to expire before anyone got partitions again.
"""

from __future__ import annotations

import logging
import time

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    KafkaError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)
from kafka.structs import OffsetAndMetadata

from mailferry.consumers.offsets import OffsetTracker

log = logging.getLogger(__name__)
COMMIT_EVERY_S = 0.5
COMMIT_TIMEOUT_MS = 5000  # the loop (and the heartbeat's partner, poll) waits no longer
REBALANCING = (CommitFailedError, IllegalGenerationError, RebalanceInProgressError, UnknownMemberIdError)


class Committer:
    def __init__(self, tracker: OffsetTracker) -> None:
        self.tracker = tracker
        self._last = 0.0

    def commit(self, consumer: KafkaConsumer, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < COMMIT_EVERY_S:
            return
        self._last = now
        points = self.tracker.to_commit()
        if not points:
            return
        offsets = {TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in points.items()}
        try:
            consumer.commit(offsets, timeout_ms=COMMIT_TIMEOUT_MS)
        except REBALANCING as exc:  # poll returned mid-rebalance; the ledger makes a re-read harmless
            log.info("commit deferred: %s", exc)
            return
        except KafkaError as exc:
            if not exc.retriable:
                raise
            log.warning("commit deferred, Kafka not reachable: %s", exc)
            return
        log.debug("committed %s", points)
        self.tracker.committed(points)
