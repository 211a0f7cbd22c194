"""Partitions the worker stops reading for a while, and why.

A retry-tier partition whose head record is not due yet is paused (and sought back to it)
until it is due, so nothing sleeps per record; a paused tenant with too many records
parked holds the partitions they come from, so memory stays bounded.
"""

from __future__ import annotations

from datetime import UTC, datetime

from kafka import KafkaConsumer, TopicPartition


class PartitionHolds:
    def __init__(self) -> None:
        self.tier_waits: dict[TopicPartition, datetime] = {}

    def wait_until(self, tp: TopicPartition, due: datetime) -> None:
        self.tier_waits[tp] = due

    def drop(self, tp: TopicPartition) -> None:
        self.tier_waits.pop(tp, None)

    def sync(self, consumer: KafkaConsumer, parked: set[TopicPartition]) -> None:
        """Pause what must wait (due tiers, ``parked`` partitions), resume the rest."""
        now = datetime.now(UTC)
        for tp, due in list(self.tier_waits.items()):
            if due <= now:
                del self.tier_waits[tp]
        assigned = consumer.assignment()
        wanted = {tp for tp in self.tier_waits if tp in assigned}
        wanted |= {tp for tp in parked if tp in assigned}
        paused = set(consumer.paused()) & assigned  # kafka's own view, right after a rebalance too
        if wanted - paused:
            consumer.pause(*(wanted - paused))
        if paused - wanted:
            consumer.resume(*(paused - wanted))

    def snapshot(self) -> dict[str, str]:
        return {f"{tp.topic}/{tp.partition}": due.isoformat() for tp, due in self.tier_waits.items()}
