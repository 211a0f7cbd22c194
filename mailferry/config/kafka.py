"""Kafka connection, embedded broker and topic settings."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

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
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="an existing cluster: SASL_SSL or SSL; the embedded broker: its own login"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretRef | None = Field(None, description="a reference: env:NAME or file:/path")
    ssl_cafile: Path | None = Field(None, description="CA bundle (PEM) for the brokers; default: system CAs")
    ssl_verify: bool = Field(True, description="verify the brokers' certificates and host names")
    ssl_certfile: Path | None = Field(None, description="client certificate (PEM) for mutual TLS")
    ssl_keyfile: Path | None = Field(None, description="its private key (PEM)")
    ssl_key_password: SecretRef | None = Field(None, description="the key's passphrase, if it has one")
    client_id: str = "mailferry"
    embedded: EmbeddedKafka = EmbeddedKafka()
    topics: TopicsConfig = TopicsConfig()

    @property
    def uses_embedded(self) -> bool:
        return not self.bootstrap_servers

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @model_validator(mode="after")
    def _consistent_security(self) -> KafkaConfig:
        """A configured cluster's TLS settings must fit together (SASL: ``config/viability.py``).
        The embedded broker ignores them: it accepts only the login it generated."""
        if self.uses_embedded:
            return self
        tls_fields = [
            name
            for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_key_password")
            if getattr(self, name) is not None
        ] + ([] if self.ssl_verify else ["ssl_verify"])
        if tls_fields and not self.uses_tls:
            raise ValueError(f"{', '.join(tls_fields)} need security_protocol SSL or SASL_SSL")
        if (self.ssl_keyfile or self.ssl_key_password) and not self.ssl_certfile:
            raise ValueError("ssl_keyfile and ssl_key_password need ssl_certfile (the client certificate)")
        return self

    def connection_toml(self) -> str:
        """The ``[kafka]`` table that reaches this cluster (for generated configs: demo, tests).

        Secrets are written as their references; a clear-text secret is refused.
        """
        lines = [
            "[kafka]",
            f"bootstrap_servers = {json.dumps(self.bootstrap_servers)}",
            f"topic_prefix = {json.dumps(self.topic_prefix)}",
            f"security_protocol = {json.dumps(self.security_protocol)}",
        ]
        for name in ("sasl_mechanism", "sasl_username", "ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            value = getattr(self, name)
            if value is not None:
                lines.append(f"{name} = {json.dumps(str(value))}")
        for name in ("sasl_password", "ssl_key_password"):
            secret: SecretRef | None = getattr(self, name)
            if secret is not None:
                if secret.is_plaintext:
                    raise ValueError(f"{name} is a clear-text secret; write it as env: or file: reference")
                lines.append(f"{name} = {json.dumps(secret.reference)}")
        if not self.ssl_verify:
            lines.append("ssl_verify = false")
        return "\n".join(lines) + "\n"
