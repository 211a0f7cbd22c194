"""``mailferry status``: role snapshots and consumer lag from the real broker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from kafka.admin import NewTopic
from typer.testing import CliRunner

from mailferry.cli.main import app
from mailferry.config.kafka import KafkaConfig
from mailferry.kafka.clients import new_admin, new_consumer, new_producer
from mailferry.status import read_snapshots, write_snapshot

pytestmark = pytest.mark.integration


def test_snapshots_of_dead_processes_are_marked(tmp_path: Path) -> None:
    write_snapshot(tmp_path, "fetch", {"mailboxes": {"acme/box": {"fetched": 3}}})
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    (tmp_path / "status" / "fetch-gone.json").write_text(
        json.dumps({"role": "fetch", "pid": int(dead.stdout), "mailboxes": {}}), encoding="utf-8"
    )
    alive = {s["pid"]: s["alive"] for s in read_snapshots(tmp_path)}
    assert alive[int(dead.stdout)] is False
    assert list(alive.values()).count(True) == 1


def test_status_shows_mailboxes_paused_tenants_and_lag(tmp_path: Path, kafka_config: KafkaConfig) -> None:
    topic = f"{kafka_config.topic_prefix}.deliver"
    servers = list(kafka_config.bootstrap_servers)
    admin = new_admin(kafka_config, servers)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    producer = new_producer(kafka_config, servers)
    for _ in range(5):
        producer.send(topic, b"x")
    producer.flush()
    producer.close()
    group = f"{kafka_config.topic_prefix}-deliver"
    consumer = new_consumer(kafka_config, servers, group, topics=[topic], max_poll_records=2)
    while not consumer.poll(timeout_ms=2000, max_records=2):
        pass
    consumer.commit()
    consumer.close()
    write_snapshot(
        tmp_path,
        "fetch",
        {
            "mailboxes": {
                "acme/alice-isp": {
                    "fetched": 4,
                    "deleted": 4,
                    "errors": 1,
                    "last_error": "timeout",
                    "state": "polling",
                    "last_poll": "2026-11-27T12:00:00+00:00",
                }
            }
        },
    )
    write_snapshot(tmp_path, "deliver", {"paused_tenants": {"globex": "bad credentials"}})
    config = tmp_path / "c.toml"
    config.write_text(
        f'state_dir = "{tmp_path}"\n' + kafka_config.connection_toml(),
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["-c", str(config), "status", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    (lag,) = [entry for entry in report["lag"] if entry["group"] == group]
    assert (lag["topic"], lag["committed"], lag["end"], lag["lag"]) == (topic, 2, 5, 3)
    roles = {r["role"]: r for r in report["roles"]}
    assert roles["fetch"]["mailboxes"]["acme/alice-isp"]["last_error"] == "timeout"
    assert roles["deliver"]["paused_tenants"] == {"globex": "bad credentials"}
    table = CliRunner().invoke(app, ["-c", str(config), "status"])
    assert "paused tenants: globex: bad credentials" in table.output
