"""Metrics, /healthz and /readyz of every role, scraped while ``mailferry run`` moves real mail.

Real Dovecot, the session's real Kafka broker, the EWS EMULATOR for tenant acme and a Maildir
for globex: the same environment as the demo, with a metrics port per role.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import TopicPartition
from kafka.admin import NewTopic
from kafka.structs import OffsetAndMetadata

from mailferry.config.kafka import KafkaConfig
from mailferry.kafka.clients import new_admin, new_consumer, new_producer
from mailferry.observe.lag import LagProbe
from mailferry_testkit.demo import DemoEnvironment

pytestmark = pytest.mark.integration

ROLES = ("fetch", "stream", "deliver", "audit-index")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def sample_sum(text: str, name: str, **labels: str) -> float:
    """The sum of every sample of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", line)
        if match is None:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


@pytest.fixture
def running(
    tmp_path: Path, kafka_config: KafkaConfig
) -> Iterator[tuple[DemoEnvironment, dict[str, int], Path]]:
    env = DemoEnvironment(tmp_path, globex_target="maildir")
    env.start(kafka=kafka_config)
    ports = {role: free_port() for role in ROLES}
    table = ", ".join(f'"{role}" = {port}' for role, port in ports.items())
    with env.config_path.open("a", encoding="utf-8") as config:
        config.write(f'\n[metrics]\nhost = "127.0.0.1"\nrole_ports = {{ {table} }}\nlag_interval = "1s"\n')
        config.write('\n[logging]\nformat = "json"\n')
    log = tmp_path / "run.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "mailferry", "-c", str(env.config_path), "run"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield env, ports, log
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
        env.stop()


def test_every_role_serves_metrics_health_and_readiness_during_a_run(
    running: tuple[DemoEnvironment, dict[str, int], Path],
) -> None:
    env, ports, log = running
    assert env.wait(240, lambda done, total: None), log.read_text(errors="replace")[-4000:]

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        answers = {role: get(port, "/readyz") for role, port in ports.items()}
        if all(status == 200 for status, _ in answers.values()):
            break
        time.sleep(1)
    assert all(status == 200 for status, _ in answers.values()), answers
    for role, port in ports.items():
        assert get(port, "/healthz") == (200, "alive\n"), role
        assert get(port, "/nothing")[0] == 404

    delivered = sum(env.expected().values())
    fetched = len(env.personal) + len(env.catchall)
    metrics = {role: get(port, "/metrics")[1] for role, port in ports.items()}

    fetch = metrics["fetch"]
    assert sample_sum(fetch, "mailferry_fetch_messages_total") == fetched
    assert sample_sum(fetch, "mailferry_fetch_messages_total", tenant="acme", mailbox="alice-isp") == len(
        env.personal
    )
    assert sample_sum(fetch, "mailferry_fetch_bytes_total", tenant="globex") > 2 * 1024 * 1024
    assert sample_sum(fetch, "mailferry_fetch_polls_total", tenant="globex", result="ok") >= 1
    assert 0 <= sample_sum(fetch, "mailferry_fetch_poll_lag_seconds", mailbox="alice-isp") < 60

    stream = metrics["stream"]
    assert sample_sum(stream, "mailferry_stream_routed_total") >= delivered
    assert sample_sum(stream, "mailferry_stream_duplicates_total") >= 1  # the catch-all holds one
    assert sample_sum(stream, "mailferry_stream_stage_seconds_count", stage="route") >= fetched
    assert sample_sum(stream, "mailferry_stream_stage_seconds_count", stage="dedup") >= delivered

    deliver = metrics["deliver"]
    assert sample_sum(deliver, "mailferry_deliveries_total", outcome="delivered") == delivered
    assert sample_sum(
        deliver, "mailferry_delivery_seconds_count", target="exchange", outcome="delivered"
    ) == len(env.personal)
    assert sample_sum(deliver, "mailferry_delivery_seconds_count", target="archive", outcome="delivered") >= 1

    # consumer lag is measured by each role's probe for its own group; all delivered: it drains to 0
    deadline = time.monotonic() + 60
    lag = get(ports["deliver"], "/metrics")[1]
    while time.monotonic() < deadline and "mailferry_consumer_lag{" not in lag:
        time.sleep(1)
        lag = get(ports["deliver"], "/metrics")[1]
    topic = next(t for t in re.findall(r'topic="([^"]+)"', lag) if t.endswith(".deliver"))
    assert re.search(rf'mailferry_consumer_lag\{{[^}}]*topic="{re.escape(topic)}"', lag)
    while time.monotonic() < deadline and sample_sum(lag, "mailferry_consumer_lag", topic=topic) != 0:
        time.sleep(1)
        lag = get(ports["deliver"], "/metrics")[1]
    assert sample_sum(lag, "mailferry_consumer_lag", topic=topic) == 0, lag[-1500:]

    # [logging] format = "json": each role's log (written by `mailferry run` per role) is JSON lines
    fetch_log = (env.root / "state" / "logs" / "fetch.log").read_text(errors="replace")
    entries = [json.loads(line) for line in fetch_log.splitlines() if line.startswith("{")]
    assert entries and all(e["role"] == "fetch" and e["level"] for e in entries), fetch_log[-2000:]


def test_lag_probe_reports_what_the_group_has_not_committed(kafka_config: KafkaConfig) -> None:
    servers = list(kafka_config.bootstrap_servers)
    topic = f"{kafka_config.topic_prefix}.lagged"
    admin = new_admin(kafka_config, servers)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    producer = new_producer(kafka_config, servers)
    for n in range(5):
        producer.send(topic, value=b"%d" % n)
    producer.flush()
    producer.close()
    group = f"{kafka_config.topic_prefix}.group"
    consumer = new_consumer(kafka_config, servers, group)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.commit({tp: OffsetAndMetadata(2, "", -1)})
    consumer.close()

    probe = LagProbe(kafka_config, servers, group)
    try:
        assert probe.measure() == {tp: 3}
    finally:
        probe._close_clients()
