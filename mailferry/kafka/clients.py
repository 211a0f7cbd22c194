"""kafka-python and aiokafka client settings derived from one ``KafkaConfig``.

Producers are idempotent with ``acks=all``: a source message is deleted only after Kafka
acknowledged it, and that promise is only as good as these settings.
"""

from __future__ import annotations

import ssl
from typing import Any

from mailferry.config.kafka import KafkaConfig


def bootstrap(kafka: KafkaConfig, embedded_address: str | None = None) -> list[str]:
    if kafka.bootstrap_servers:
        return list(kafka.bootstrap_servers)
    if embedded_address is None:
        return [f"127.0.0.1:{kafka.embedded.port}"]
    return [embedded_address]


def common_settings(kafka: KafkaConfig, servers: list[str]) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "bootstrap_servers": servers,
        "client_id": kafka.client_id,
        "security_protocol": kafka.security_protocol,
    }
    if kafka.ssl_cafile:
        settings["ssl_cafile"] = str(kafka.ssl_cafile)
    if kafka.sasl_mechanism:
        settings["sasl_mechanism"] = kafka.sasl_mechanism
        settings["sasl_plain_username"] = kafka.sasl_username
        if kafka.sasl_password is not None:
            settings["sasl_plain_password"] = kafka.sasl_password.reveal()
    return settings


def producer_settings(kafka: KafkaConfig, servers: list[str], max_request_size: int) -> dict[str, Any]:
    """kafka-python ``KafkaProducer`` keyword arguments."""
    return common_settings(kafka, servers) | {
        "acks": "all",
        "enable_idempotence": True,
        "max_in_flight_requests_per_connection": 5,
        "retries": 2**31 - 1,
        "linger_ms": 5,
        "max_request_size": max_request_size,
        "compression_type": None,
    }


def consumer_settings(kafka: KafkaConfig, servers: list[str], group_id: str | None) -> dict[str, Any]:
    """kafka-python ``KafkaConsumer`` keyword arguments; offsets are committed by the caller."""
    return common_settings(kafka, servers) | {
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
    }


def aiokafka_settings(kafka: KafkaConfig, servers: list[str]) -> dict[str, Any]:
    """Keyword arguments shared by aiokafka producers and consumers."""
    settings = common_settings(kafka, servers)
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None)
        settings["ssl_context"] = context
        settings.pop("ssl_cafile", None)
    return settings
