"""How the Faust app is set up from a ``MailferryConfig``: its id, store and broker credentials."""

from __future__ import annotations

import importlib.util
import ssl
from typing import Any

import faust

from mailferry.config.models import MailferryConfig


def store_url() -> str:
    """RocksDB when its bindings (rocksdict) are installed, else memory (rebuilt from the changelog)."""
    return "rocksdb://" if importlib.util.find_spec("rocksdict") else "memory://"


def app_id(config: MailferryConfig) -> str:
    """The consumer group and changelog prefix: one per deployment prefix."""
    return f"{config.kafka.topic_prefix}.{config.stream.app_id}"


def credentials(config: MailferryConfig) -> Any:
    """Faust's broker credentials for the configured protocol; certificates always verified."""
    kafka = config.kafka
    if kafka.security_protocol == "PLAINTEXT":
        return None
    context = ssl.create_default_context(cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None)
    if kafka.security_protocol == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(
        username=kafka.sasl_username,
        password=kafka.sasl_password.reveal() if kafka.sasl_password else None,
        ssl_context=context if kafka.security_protocol == "SASL_SSL" else None,
        mechanism=kafka.sasl_mechanism,
    )
