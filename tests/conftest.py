"""Shared fixtures: one real embedded Kafka broker for the whole test session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailferry.config.kafka import EmbeddedKafka, KafkaConfig
from mailferry.kafka.embedded import EmbeddedBroker


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Address (host:port) of a real single-node KRaft broker started for this session."""
    home = Path(tmp_path_factory.mktemp("kafka"))
    broker = EmbeddedBroker(EmbeddedKafka(port=0, controller_port=0), home)
    state = broker.start()
    try:
        yield state.address
    finally:
        broker.stop()


@pytest.fixture
def kafka_config(kafka_broker: str) -> KafkaConfig:
    """A KafkaConfig pointing at the session broker with a topic prefix of its own per test."""
    return KafkaConfig(bootstrap_servers=[kafka_broker], topic_prefix=f"t{uuid.uuid4().hex[:10]}")
