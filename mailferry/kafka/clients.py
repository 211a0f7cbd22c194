"""The one place Kafka clients are built: kafka-python producers, consumers and admin clients,
aiokafka keyword arguments and Faust's broker settings, all from one ``KafkaConfig``.

Nobody else calls ``KafkaProducer(...)`` or reads security settings: a connection setting
(SASL, TLS, a client certificate) added here reaches every role, command and test at once.
Producers are idempotent with ``acks=all``: a source message is deleted only after Kafka
acknowledged it, and that promise is only as good as these settings. Sizes come from the
topic settings (``mailferry.kafka.topics.largest_message_bytes``), never from a call site's
own arithmetic.

Every kafka-python client refreshes its metadata every ``METADATA_MAX_AGE_MS``, not the
library's 5 minutes: kafka-python 3.0 answers a ListOffsets ``NOT_LEADER_OR_FOLLOWER`` by
asking the same stale leader again until the call times out, without refreshing (the bug
Java fixed as KAFKA-9535), and an idle client (the blob index reader, the ledger, a lag
probe) learns of a moved leader only from that periodic refresh. After a broker restart the
fetch role's blob lookups failed for five minutes (tests/cluster/test_leader_moves.py).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from mailferry.config.kafka import KafkaConfig
from mailferry.kafka.topics import largest_message_bytes

METADATA_MAX_AGE_MS = 5000


def bootstrap(kafka: KafkaConfig, embedded_address: str | None = None) -> list[str]:
    if kafka.bootstrap_servers:
        return list(kafka.bootstrap_servers)
    if embedded_address is None:
        return [f"127.0.0.1:{kafka.embedded.port}"]
    return [embedded_address]


def _loopback(servers: list[str]) -> bool:
    return all(s.rpartition(":")[0] in ("127.0.0.1", "localhost", "[::1]") for s in servers)


def common_settings(kafka: KafkaConfig, servers: list[str]) -> dict[str, Any]:
    """Connection and security keyword arguments shared by every kafka-python client."""
    if kafka.security_protocol == "SASL_PLAINTEXT" and _loopback(servers):
        # the clients warn on every connection that SASL runs without TLS; on loopback (the
        # embedded broker) nothing crosses a network, and the warning would drown the logs
        for name in ("kafka.net.sasl.plain", "kafka.net.sasl.scram", "aiokafka.conn"):
            logging.getLogger(name).addFilter(_drop_clear_text_warning)
    settings: dict[str, Any] = {
        "bootstrap_servers": servers,
        "client_id": kafka.client_id,
        "security_protocol": kafka.security_protocol,
        "metadata_max_age_ms": METADATA_MAX_AGE_MS,
    }
    if kafka.uses_tls:
        settings["ssl_context"] = ssl_context(kafka)
    if kafka.sasl_mechanism:
        settings["sasl_mechanism"] = kafka.sasl_mechanism
        settings["sasl_plain_username"] = kafka.sasl_username
        if kafka.sasl_password is not None:
            settings["sasl_plain_password"] = kafka.sasl_password.reveal()
    return settings


def _drop_clear_text_warning(record: logging.LogRecord) -> bool:
    message = str(record.msg)
    return "in the clear" not in message


def producer_settings(
    kafka: KafkaConfig, servers: list[str], max_request_size: int | None = None
) -> dict[str, Any]:
    """kafka-python ``KafkaProducer`` keyword arguments; the request size follows the topics."""
    limit = max_request_size or largest_message_bytes(kafka)
    return common_settings(kafka, servers) | {
        "acks": "all",
        "enable_idempotence": True,
        "max_in_flight_requests_per_connection": 5,
        "retries": 2**31 - 1,
        "linger_ms": 5,
        "max_request_size": limit,
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


def new_producer(kafka: KafkaConfig, servers: list[str], **overrides: Any) -> KafkaProducer:
    """An idempotent ``acks=all`` producer; ``overrides`` tune batching, never security."""
    return KafkaProducer(**(producer_settings(kafka, servers) | overrides))


def new_consumer(
    kafka: KafkaConfig,
    servers: list[str],
    group_id: str | None = None,
    *,
    topics: Iterable[str] = (),
    **overrides: Any,
) -> KafkaConsumer:
    """A consumer that commits only when told to; ``overrides`` tune polling and isolation."""
    return KafkaConsumer(*topics, **(consumer_settings(kafka, servers, group_id) | overrides))


def new_admin(kafka: KafkaConfig, servers: list[str], **overrides: Any) -> KafkaAdminClient:
    return KafkaAdminClient(**(common_settings(kafka, servers) | overrides))


def ssl_context(kafka: KafkaConfig) -> ssl.SSLContext:
    """TLS to the brokers: verified against ``ssl_cafile`` (or the system CAs) unless
    ``ssl_verify = false``; with ``ssl_certfile`` the client proves itself (mutual TLS)."""
    context = ssl.create_default_context(cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None)
    if not kafka.ssl_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if kafka.ssl_certfile:
        context.load_cert_chain(
            str(kafka.ssl_certfile),
            str(kafka.ssl_keyfile) if kafka.ssl_keyfile else None,
            kafka.ssl_key_password.reveal() if kafka.ssl_key_password else None,
        )
    return context


def aiokafka_settings(kafka: KafkaConfig, servers: list[str]) -> dict[str, Any]:
    """Keyword arguments shared by aiokafka producers and consumers (the same ``ssl_context``)."""
    return common_settings(kafka, servers)


def faust_credentials(kafka: KafkaConfig) -> Any:
    """Faust's ``broker_credentials`` for the configured protocol; certificates always verified."""
    import faust

    if kafka.security_protocol == "PLAINTEXT":
        return None
    context = ssl_context(kafka)
    if kafka.security_protocol == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(
        username=kafka.sasl_username,
        password=kafka.sasl_password.reveal() if kafka.sasl_password else None,
        ssl_context=context if kafka.security_protocol == "SASL_SSL" else None,
        mechanism=kafka.sasl_mechanism,
    )


def faust_settings(kafka: KafkaConfig, servers: list[str]) -> dict[str, Any]:
    """The broker, credential and size keyword arguments of ``faust.App``."""
    largest = largest_message_bytes(kafka)
    return {
        "broker": ";".join(f"kafka://{s}" for s in servers),
        "broker_credentials": faust_credentials(kafka),
        "producer_acks": -1,
        "producer_max_request_size": largest,
        "consumer_max_fetch_size": largest,
    }
