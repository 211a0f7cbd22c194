"""Kafka connection, embedded broker and topic settings."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mailferry.config.types import ByteSize, Duration, SecretRef


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors, not silently ignored.

    Errors never echo the input: a value that failed to validate may be (or hold) a secret.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class EmbeddedKafka(Strict):
    """The single-node KRaft broker mailferry starts itself when no cluster is configured."""

    port: int = Field(19092, ge=0, le=65535, description="0 picks a free port")
    controller_port: int = Field(0, ge=0, le=65535, description="0 picks a free port")
    state_dir: Path | None = Field(None, description="default: <state_dir>/kafka")
    heap: str = "512m"
    start_timeout: Duration = timedelta(seconds=60)
    kafka_version: str = "4.1.1"


class TopicSettings(Strict):
    partitions: int = Field(6, ge=1)
    replication_factor: int = Field(1, ge=1)
    retention: Duration | None = Field(None, description="None keeps the topic type's default")
    max_message_bytes: ByteSize = 8 * 1024 * 1024


class TopicsConfig(Strict):
    """Per-topic overrides on top of the defaults in ``mailferry.kafka.topics``."""

    defaults: TopicSettings = TopicSettings()
    overrides: dict[str, TopicSettings] = Field(
        default_factory=dict,
        description="keyed by logical topic name: raw, deliver, audit, dlt, mailboxes, ...",
    )


class KafkaConfig(Strict):
    bootstrap_servers: list[str] = Field(
        default_factory=list, description="empty: start and use the embedded broker"
    )
    topic_prefix: str = Field("mailferry", pattern=r"^[A-Za-z0-9._-]+$")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretRef | None = None
    ssl_cafile: Path | None = None
    client_id: str = "mailferry"
    embedded: EmbeddedKafka = EmbeddedKafka()
    topics: TopicsConfig = TopicsConfig()

    @property
    def uses_embedded(self) -> bool:
        return not self.bootstrap_servers
