"""Which partitions this worker owns: checked at start, watched while it runs.

Ownership follows the partition: a delivery's records on the deliver topic and on every
retry tier, and its ledger entries, sit on partitions of one number, so the worker owning
that number owns the delivery. That needs one partition count for all of them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from kafka import KafkaConsumer

from mailferry.errors import ConfigError

log = logging.getLogger(__name__)
UNASSIGNED_REJOIN_S = 20.0


def check_partition_counts(counts: dict[str, int]) -> None:
    """Refuse to start when the deliver topic, its tiers and the ledger differ in partitions."""
    if len(set(counts.values())) > 1:
        found = ", ".join(f"{t}: {n}" for t, n in counts.items())
        raise ConfigError(
            "the deliver topic, its retry tiers and the ledger need the same number of "
            f"partitions ({found}); set them alike under [kafka.topics] and run `mailferry topics ensure`"
        )


def partition_counts(consumer: KafkaConsumer, topics: list[str]) -> dict[str, int]:
    return {t: len(consumer.partitions_for_topic(t) or ()) for t in topics}


class AssignmentWatch:
    """Rejoin when no partition arrives for a long time.

    kafka-python 3.0 can finish a rebalance without applying the new assignment when the
    SyncGroup answer comes after the poll's timeout (seen on a loaded machine): the worker
    then sits idle until the next metadata refresh, minutes later. Subscribing again forces
    a fresh join. A deployment with more workers than partitions would rejoin needlessly
    every ``UNASSIGNED_REJOIN_S``; there are at least 18 partitions.
    """

    def __init__(self) -> None:
        self._unassigned_since: float | None = None

    def subscribed(self) -> None:
        self._unassigned_since = time.monotonic()

    def check(self, consumer: KafkaConsumer, resubscribe: Callable[[], None]) -> None:
        if consumer.assignment():
            self._unassigned_since = None
        elif self._unassigned_since is None:
            self._unassigned_since = time.monotonic()
        elif time.monotonic() - self._unassigned_since > UNASSIGNED_REJOIN_S:
            log.warning("no partitions assigned for %ss: joining the group again", UNASSIGNED_REJOIN_S)
            consumer.unsubscribe()
            resubscribe()
