"""The embedded broker is real Kafka: both client libraries the pipeline uses talk to it,
and ``topics ensure`` leaves every topic as configured."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import KafkaError
from typer.testing import CliRunner

from mailferry.cli.main import app
from mailferry.config.kafka import EmbeddedKafka, KafkaConfig
from mailferry.config.types import SecretRef
from mailferry.errors import SetupError
from mailferry.kafka.admin import partition_counts
from mailferry.kafka.clients import aiokafka_settings, new_admin, new_consumer, new_producer
from mailferry.kafka.embedded import EmbeddedBroker

pytestmark = pytest.mark.integration


def test_kafka_python_and_aiokafka_share_one_topic(kafka_config: KafkaConfig) -> None:
    topic = f"clients-{uuid.uuid4().hex[:8]}"
    servers = list(kafka_config.bootstrap_servers)
    admin = new_admin(kafka_config, servers)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()

    producer = new_producer(kafka_config, servers)
    producer.send(topic, key=b"k", value=b"from kafka-python").get(timeout=30)
    producer.close()
    aio = aiokafka_settings(kafka_config, servers)

    async def aio_round() -> list[bytes]:
        aio_producer = AIOKafkaProducer(**aio, acks="all", enable_idempotence=True)
        await aio_producer.start()
        await aio_producer.send_and_wait(topic, b"from aiokafka", key=b"k")
        await aio_producer.stop()
        consumer = AIOKafkaConsumer(topic, **aio, auto_offset_reset="earliest")
        await consumer.start()
        values: list[bytes] = []
        try:
            while len(values) < 2:
                batch = await consumer.getmany(timeout_ms=10_000)
                if not batch:
                    break
                values += [m.value for records in batch.values() for m in records]
        finally:
            await consumer.stop()
        return values

    assert asyncio.run(aio_round()) == [b"from kafka-python", b"from aiokafka"]

    consumer = new_consumer(kafka_config, servers, consumer_timeout_ms=10_000)
    consumer.subscribe([topic])
    assert [m.value for m in consumer][:2] == [b"from kafka-python", b"from aiokafka"]
    consumer.close()


def _topic_configs(admin: KafkaAdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    answer = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, n) for n in names], config_filter="all"
    )
    return {name: {k: e["value"] for k, e in entries.items()} for name, entries in answer["topic"].items()}


def _write_config(path: Path, kafka: KafkaConfig, extra: str = "") -> Path:
    path.write_text(
        kafka.connection_toml() + "[kafka.topics.defaults]\npartitions = 3\n" + extra,
        encoding="utf-8",
    )
    return path


def test_topics_ensure_creates_then_changes_nothing_then_alters(
    kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    prefix = kafka_config.topic_prefix
    config = _write_config(tmp_path / "a.toml", kafka_config)
    runner = CliRunner()

    first = runner.invoke(app, ["-c", str(config), "topics", "ensure"])
    assert first.exit_code == 0, first.output
    assert f"created {prefix}.raw" in first.output

    admin = new_admin(kafka_config, list(kafka_config.bootstrap_servers))
    names = sorted(t for t in admin.list_topics() if t.startswith(prefix + "."))
    assert names == sorted(
        f"{prefix}.{n}"
        for n in [
            "mailboxes",
            "fetch-state",
            "deliver.ledger",
            "deliver.dlt.state",
            "raw",
            "deliver",
            "deliver.dlt",
            "audit",
            "blobs",
            "blobs.index",
            "deliver.retry.0",
            "deliver.retry.1",
            "deliver.retry.2",
            "deliver.retry.3",
        ]
    )
    configs = _topic_configs(admin, names)
    assert configs[f"{prefix}.mailboxes"]["cleanup.policy"] == "compact"
    assert configs[f"{prefix}.fetch-state"]["cleanup.policy"] == "compact"
    assert configs[f"{prefix}.raw"]["cleanup.policy"] == "delete"
    assert configs[f"{prefix}.raw"]["retention.ms"] == str(90 * 24 * 3600 * 1000)
    assert configs[f"{prefix}.audit"]["retention.ms"] == str(365 * 24 * 3600 * 1000)
    assert configs[f"{prefix}.blobs"]["retention.ms"] == str(97 * 24 * 3600 * 1000)  # raw/dlt + 7 d
    assert configs[f"{prefix}.blobs.index"]["cleanup.policy"] == "compact,delete"
    assert all(c["max.message.bytes"] == str(8 * 1024 * 1024) for c in configs.values())
    assert set(partition_counts(admin, names).values()) == {3}

    second = runner.invoke(app, ["-c", str(config), "topics", "ensure"])
    assert second.exit_code == 0, second.output
    assert "nothing to change (14 topics in place)" in second.output

    changed = _write_config(
        tmp_path / "b.toml",
        kafka_config,
        '[kafka.topics.overrides.raw]\npartitions = 5\nretention = "30d"\nmax_message_bytes = "16MiB"\n',
    )
    third = runner.invoke(app, ["-c", str(changed), "topics", "ensure"])
    assert third.exit_code == 0, third.output
    assert f"{prefix}.raw partitions: 3 -> 5" in third.output
    deadline = time.monotonic() + 15  # KRaft applies an altered config a moment after the answer
    while True:
        after = _topic_configs(admin, [f"{prefix}.raw"])[f"{prefix}.raw"]
        if after["retention.ms"] != str(90 * 24 * 3600 * 1000) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert after["retention.ms"] == str(30 * 24 * 3600 * 1000)
    assert after["max.message.bytes"] == str(16 * 1024 * 1024)
    assert after["cleanup.policy"] == "delete"
    assert partition_counts(admin, [f"{prefix}.raw"]) == {f"{prefix}.raw": 5}
    blobs = _topic_configs(admin, [f"{prefix}.blobs"])[f"{prefix}.blobs"]
    assert blobs["retention.ms"] == str(97 * 24 * 3600 * 1000)  # deliver.dlt's 90 d still names them
    admin.close()


def test_cli_start_ensure_stop_on_the_embedded_default(tmp_path: Path) -> None:
    """``mailferry kafka start && mailferry topics ensure`` with nothing but a state folder."""
    config = tmp_path / "embedded.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\n[kafka.embedded]\nport = 0\n', encoding="utf-8")
    runner = CliRunner()
    started = runner.invoke(app, ["-c", str(config), "kafka", "start"])
    assert started.exit_code == 0, started.output
    try:
        status = runner.invoke(app, ["-c", str(config), "kafka", "status", "--json"])
        info = json.loads(status.output)
        assert info["running"] and info["answers"]
        home = tmp_path / "state" / "kafka"
        for secret in ("client.password", "broker.password", "server.properties"):
            assert (home / secret).stat().st_mode & 0o777 == 0o600, secret
        assert home.stat().st_mode & 0o777 == 0o700
        ensured = runner.invoke(app, ["-c", str(config), "topics", "ensure"])
        assert ensured.exit_code == 0, ensured.output
        assert "created mailferry.raw" in ensured.output
        assert (tmp_path / "state" / "kafka" / "logs" / "server.log").exists()
    finally:
        stopped = runner.invoke(app, ["-c", str(config), "kafka", "stop"])
    assert stopped.exit_code == 0 and "stopped" in stopped.output
    after = runner.invoke(app, ["-c", str(config), "kafka", "status"])
    assert after.exit_code == 3


def test_port_in_use_is_reported_at_once(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        broker = EmbeddedBroker(EmbeddedKafka(port=port), tmp_path)
        with pytest.raises(SetupError, match=f"port {port} .* already in use"):
            broker.start()


def test_broker_that_cannot_start_shows_its_log(tmp_path: Path) -> None:
    broker = EmbeddedBroker(EmbeddedKafka(port=0, heap="2k"), tmp_path)
    with pytest.raises(SetupError) as info:
        broker.start()
    message = str(info.value)
    assert "heap" in message.lower()


def test_missing_java_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SetupError, match="java was not found on PATH; install it first: apt-get install"):
        EmbeddedBroker(EmbeddedKafka(port=0), tmp_path).start()


def test_the_embedded_broker_refuses_clients_without_its_login(kafka_config: KafkaConfig) -> None:
    """Another local user reaches the port but not the mail: no listener is unauthenticated."""
    servers = list(kafka_config.bootstrap_servers)
    anonymous = KafkaConfig(bootstrap_servers=servers)
    with pytest.raises(KafkaError):
        admin = new_admin(anonymous, servers, request_timeout_ms=3000, api_version_auto_timeout_ms=3000)
        try:
            admin.list_topics()
        finally:
            admin.close()
    wrong = kafka_config.model_copy(update={"sasl_password": SecretRef.plaintext("guessed")})
    with pytest.raises(KafkaError):
        new_admin(wrong, servers, request_timeout_ms=3000).close()
    admin = new_admin(kafka_config, servers)
    assert admin.describe_cluster()["brokers"]
    admin.close()
