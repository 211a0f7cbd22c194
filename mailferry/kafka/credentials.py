"""The embedded broker's credentials: generated once into its state folder, files 0600.

Every client of the embedded broker authenticates with SASL/SCRAM-SHA-512 as ``mailferry``;
the broker itself (inter-broker and controller links) uses SASL/PLAIN as ``broker``, a user
known only to its own properties file, so it needs no SCRAM credential to start. Nothing
listens unauthenticated, so another local user cannot read or write mail topics. The
password files are read when a client connects (``file:`` secret references), never
copied into a config file, a Kafka record or a log line.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailferry.config.kafka import KafkaConfig
from mailferry.config.types import SecretRef

CLIENT_USER = "mailferry"
CLIENT_MECHANISM = "SCRAM-SHA-512"
BROKER_USER = "broker"


def _write_secret(path: Path) -> None:
    """Create ``path`` holding a new random password, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process created it first: both use the one on disk
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secrets.token_urlsafe(32))


@dataclass(frozen=True)
class BrokerCredentials:
    """The password files of one embedded broker (or one test cluster) under ``home``."""

    home: Path

    @property
    def client_password_file(self) -> Path:
        return self.home / "client.password"

    @property
    def broker_password_file(self) -> Path:
        return self.home / "broker.password"

    def ensure(self) -> None:
        for path in (self.client_password_file, self.broker_password_file):
            if not path.exists():
                _write_secret(path)

    def client_password(self) -> str:
        return SecretRef(f"file:{self.client_password_file}").reveal()

    def broker_password(self) -> str:
        return SecretRef(f"file:{self.broker_password_file}").reveal()

    def client_settings(self) -> dict[str, Any]:
        """``KafkaConfig`` fields with which a mailferry client reaches the broker."""
        return {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": CLIENT_MECHANISM,
            "sasl_username": CLIENT_USER,
            "sasl_password": SecretRef(f"file:{self.client_password_file}"),
        }

    def broker_settings(self) -> dict[str, Any]:
        """The broker's own login: only to create the SCRAM credential before any client."""
        return {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "PLAIN",
            "sasl_username": BROKER_USER,
            "sasl_password": SecretRef(f"file:{self.broker_password_file}"),
        }

    def apply(self, kafka: KafkaConfig) -> KafkaConfig:
        """``kafka`` with this broker's client login in place of any security settings."""
        return kafka.model_copy(update=self.client_settings())
