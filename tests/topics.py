"""The session broker's topics for a test: created as the roles expect them, and read whole
from their start to check what a role or a command wrote."""

from __future__ import annotations

from typing import Any

from mailferry.config.kafka import KafkaConfig
from mailferry.kafka.admin import ensure_topics
from mailferry.kafka.clients import new_admin, new_consumer
from mailferry.kafka.topics import full_name, topic_specs


def read_records(kafka: KafkaConfig, logical: str, timeout_ms: int = 2000) -> list[Any]:
    """Every record of the topic, as Kafka has it (key, value, headers); the read ends after
    ``timeout_ms`` without a new record."""
    consumer = new_consumer(
        kafka,
        list(kafka.bootstrap_servers),
        topics=[full_name(kafka, logical)],
        auto_offset_reset="earliest",
        consumer_timeout_ms=timeout_ms,
    )
    try:
        return list(consumer)
    finally:
        consumer.close()


def read_values(kafka: KafkaConfig, logical: str, timeout_ms: int = 2000) -> list[bytes]:
    """The value of every record of the topic."""
    return [record.value for record in read_records(kafka, logical, timeout_ms)]


def create_topics(kafka: KafkaConfig, retry_tiers: int) -> None:
    """The topics of ``kafka``'s prefix that the roles expect, with ``retry_tiers`` retry tiers."""
    admin = new_admin(kafka, list(kafka.bootstrap_servers))
    try:
        ensure_topics(admin, topic_specs(kafka, retry_tiers))
    finally:
        admin.close()
