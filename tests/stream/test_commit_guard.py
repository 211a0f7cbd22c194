"""At-least-once when Kafka refuses a record the stream app produced.

The worker sends without waiting for each acknowledgement and relies on the producer flush
Faust runs before an offset commit. A flush does not fail for a refused record, so without
a guard the raw record's offset would be committed and the message lost.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient
from mailferry.streams.app import DEDUP_TOPIC
from mailferry.streams.faust_settings import app_id

from mailferry.config import load_config
from mailferry.config.kafka import KafkaConfig
from mailferry.kafka.admin import ensure_topics
from mailferry.kafka.clients import new_admin
from mailferry.kafka.topics import DELIVER, full_name, topic_specs
from tests.stream.test_stream_app import Publisher, StreamRole, _write_config

pytestmark = pytest.mark.integration

REFUSED_ABOVE = 2000  # bytes: the deliver topic refuses the delivery record of this message
BIG = b"Delivered-To: bob@acme.example\r\nMessage-ID: <big@x.example>\r\n\r\n" + b"x" * 8000


@pytest.fixture
def admin(kafka_config: KafkaConfig) -> Iterator[KafkaAdminClient]:
    client = new_admin(kafka_config, list(kafka_config.bootstrap_servers))
    yield client
    client.close()


def test_no_offset_is_committed_past_a_record_kafka_refused(
    tmp_path: Path, kafka_config: KafkaConfig, admin: KafkaAdminClient
) -> None:
    config_path = _write_config(tmp_path, kafka_config)
    with config_path.open("a", encoding="utf-8") as out:
        out.write(
            f"\n[kafka.topics.overrides.{DELIVER}]\npartitions = 2\nmax_message_bytes = {REFUSED_ABOVE}\n"
        )
    ensure_topics(admin, topic_specs(load_config(config_path).kafka, 4))
    role = StreamRole(config_path, tmp_path / "stream.log")
    Publisher(config_path).raw("catchall", BIG)
    group = app_id(load_config(config_path))
    rekeyed = full_name(kafka_config, DEDUP_TOPIC)
    role.start()
    try:
        deadline = time.monotonic() + 60
        while role.alive() and time.monotonic() < deadline:
            time.sleep(1)
        log = role.log.read_text()
        assert "could not be written" in log, log[-3000:]
        committed = admin.list_group_offsets(group).get(group, {})
        # the re-keyed record whose delivery was refused must be read again after a restart
        rekeyed_offsets = {tp.partition: meta.offset for tp, meta in committed.items() if tp.topic == rekeyed}
        assert all(offset <= 0 for offset in rekeyed_offsets.values()), rekeyed_offsets
        assert not role.alive(), "the worker keeps running without committing: it must stop"
    finally:
        if role.alive():
            role.stop()
