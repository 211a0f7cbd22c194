"""Shared fixtures: one real embedded Kafka broker for the whole test session.

The broker requires SASL/SCRAM like every embedded broker; ``kafka_config`` carries its
generated client login, and clients are built from it (``mailferry.kafka.clients``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailferry.config.kafka import EmbeddedKafka, KafkaConfig
from mailferry.kafka.embedded import EmbeddedBroker


@pytest.fixture(scope="session")
def embedded_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A real single-node KRaft broker started for this session."""
    home = Path(tmp_path_factory.mktemp("kafka"))
    broker = EmbeddedBroker(EmbeddedKafka(port=0, controller_port=0), home)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_broker(embedded_broker: EmbeddedBroker) -> str:
    """Address (host:port) of the session broker."""
    return embedded_broker.address


@pytest.fixture
def kafka_config(embedded_broker: EmbeddedBroker) -> KafkaConfig:
    """A KafkaConfig for the session broker (with its login) and a topic prefix of its own per test."""
    return embedded_broker.client_config(KafkaConfig(topic_prefix=f"t{uuid.uuid4().hex[:10]}"))
