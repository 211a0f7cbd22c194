"""Reading a topic whole, from its start, to check what a role or a command wrote to it."""

from __future__ import annotations

from typing import Any

from mailferry.config.kafka import KafkaConfig
from mailferry.kafka.clients import new_consumer
from mailferry.kafka.topics import full_name


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
