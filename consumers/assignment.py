"""Which partitions this worker owns: checked at start (the group's joins are watched by
``mailferry.kafka.membership``).

Ownership follows the partition: a delivery's records on the deliver topic and on every
retry tier, and its ledger entries, sit on partitions of one number, so the worker owning
that number owns the delivery. That needs one partition count for all of them.
"""

from __future__ import annotations

from kafka import KafkaConsumer

from mailferry.errors import ConfigError


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
