"""A record Kafka refuses neither loses its message nor stops the stream for everyone.

The worker sends without waiting for each acknowledgement and relies on the producer flush
Faust runs before an offset commit. Three ways a record can fail to be written, each on the
real broker with the real ``mailferry stream`` process:

- the client refuses it at once (larger than the producer's request limit): ``send`` raises;
- the broker refuses it later (larger than the topic's ``max.message.bytes``);
- a write of the dedup table's changelog fails.

A delivery that is too large goes on with its body in the blob store; the messages behind
it are not held up; the worker keeps running. A changelog write that fails blocks the
offset commit instead: without the sighting in the changelog the table would forget it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from mailferry.blobs import LocalBlobStore, open_blob_store
from mailferry.config import load_config
from mailferry.config.kafka import KafkaConfig
from mailferry.kafka.admin import ensure_topics
from mailferry.kafka.clients import new_admin
from mailferry.kafka.topics import DELIVER, DLT, RAW, TopicSpec, full_name, topic_specs
from mailferry.rawrecord import RawSource, build_raw_record
from mailferry.schemas.codec import DEAD_LETTER, DELIVERY, RAW_MESSAGE, Record, codec
from mailferry.streams.app import StreamApp
from mailferry.streams.faust_settings import app_id
from tests.stream.test_stream_app import Publisher, StreamRole, Topics, _write_config

pytestmark = pytest.mark.integration

BOB = "bob@acme.example"
TOPICS = {"deliver": DELIVER, "dlt": DLT}


def mail(message_id: str, body_bytes: int) -> bytes:
    head = f"Delivered-To: {BOB}\r\nMessage-ID: <{message_id}@x.example>\r\n\r\n".encode()
    return head + b"x" * body_bytes


def read_blob(config_path: Path, reference: str) -> bytes:
    """A blob as the delivery stage would read it: from the store the config names."""
    store = open_blob_store(load_config(config_path))
    try:
        return store.read(reference)
    finally:
        store.close()


@pytest.fixture
def admin(kafka_config: KafkaConfig) -> Iterator[KafkaAdminClient]:
    client = new_admin(kafka_config, list(kafka_config.bootstrap_servers))
    yield client
    client.close()


def _configure(
    tmp_path: Path, kafka_config: KafkaConfig, admin: KafkaAdminClient, *, every: int = 0, **limits: int
) -> Path:
    """The test config with topic limits: ``every`` for all topics, ``limits`` per topic."""
    config_path = _write_config(tmp_path, kafka_config)
    text = config_path.read_text(encoding="utf-8")
    if every:
        text = text.replace("partitions = 2\n", f"partitions = 2\nmax_message_bytes = {every}\n", 1)
    for logical, limit in limits.items():
        text += (
            f'\n[kafka.topics.overrides."{TOPICS[logical]}"]\npartitions = 2\nmax_message_bytes = {limit}\n'
        )
    config_path.write_text(text, encoding="utf-8")
    ensure_topics(admin, topic_specs(load_config(config_path).kafka, 4))
    return config_path


def _delivered_then_next(config_path: Path, kafka_config: KafkaConfig, big: bytes) -> list[Record]:
    """Publish ``big`` then a small message; both must come out of the running worker."""
    role = StreamRole(config_path, config_path.parent / "stream.log")
    publisher = Publisher(config_path)
    big_sha = publisher.raw("catchall", big)
    small_sha = publisher.raw("catchall", mail("small", 100))
    deliveries = Topics(kafka_config, DELIVER, DELIVERY)
    role.start()
    try:
        found = deliveries.wait(lambda rs: {big_sha, small_sha} <= {r["sha256"] for r in rs}, role)
        assert role.alive()
    finally:
        if role.alive():
            assert role.stop() == 0
    (big_delivery,) = [r for r in found if r["sha256"] == big_sha]
    assert big_delivery["inline"] is None
    assert read_blob(config_path, big_delivery["blob_ref"]) == big
    return found


def test_a_record_the_client_refuses_at_once_goes_on_by_reference(
    tmp_path: Path, kafka_config: KafkaConfig, admin: KafkaAdminClient
) -> None:
    limit = 30_000
    config_path = _configure(tmp_path, kafka_config, admin, every=limit)
    # the raw record just fits every topic; the delivery record (raw bytes plus routing) does not
    config = load_config(config_path)
    probe = mail("big", 0)
    blobs = LocalBlobStore(config.blob_dir)
    _key, raw = build_raw_record(
        RawSource("acme", "catchall", "pop3"), probe, blobs=blobs, inline_threshold=1 << 20
    )
    overhead = len(codec(RAW_MESSAGE).encode(raw))
    big = mail("big", limit - overhead - 200)
    _delivered_then_next(config_path, kafka_config, big)


def test_a_record_the_broker_refuses_goes_on_by_reference(
    tmp_path: Path, kafka_config: KafkaConfig, admin: KafkaAdminClient
) -> None:
    config_path = _configure(tmp_path, kafka_config, admin, deliver=2000)
    _delivered_then_next(config_path, kafka_config, mail("big", 8000))


def test_no_offset_is_committed_past_a_changelog_write_that_failed(
    tmp_path: Path, kafka_config: KafkaConfig, admin: KafkaAdminClient
) -> None:
    config_path = _configure(tmp_path, kafka_config, admin)
    config = load_config(config_path)
    stream = StreamApp(config, kafka_config.bootstrap_servers)
    # the changelog refuses every sighting: each is larger than 40 bytes
    ensure_topics(
        admin,
        [
            TopicSpec(
                s.logical, s.name, s.partitions, s.replication_factor, {**s.config, "max.message.bytes": "40"}
            )
            for s in stream.internal_topic_specs()
        ],
    )
    role = StreamRole(config_path, tmp_path / "stream.log")
    Publisher(config_path).raw("catchall", mail("remembered", 100))
    group = app_id(config)
    raw = full_name(kafka_config, RAW)
    role.start()
    try:
        deadline = time.monotonic() + 60
        while role.alive() and time.monotonic() < deadline:
            time.sleep(1)
        log = role.log.read_text()
        assert "could not be written" in log, log[-3000:]
        committed = admin.list_group_offsets(group).get(group, {})
        raw_offsets = {tp.partition: meta.offset for tp, meta in committed.items() if tp.topic == raw}
        assert all(offset <= 0 for offset in raw_offsets.values()), raw_offsets
        assert not role.alive(), "the worker keeps running without committing: it must stop"
    finally:
        if role.alive():
            role.stop()


def test_a_delivery_refused_even_by_reference_is_dead_lettered_and_the_rest_go_on(
    tmp_path: Path, kafka_config: KafkaConfig, admin: KafkaAdminClient
) -> None:
    config_path = _configure(tmp_path, kafka_config, admin, deliver=300)
    publisher = Publisher(config_path)
    shas = [publisher.raw("catchall", mail(f"m{i}", 100 * i)) for i in range(1, 4)]
    dead = Topics(kafka_config, DLT, DEAD_LETTER)
    role = StreamRole(config_path, tmp_path / "stream.log")
    role.start()
    try:
        letters = dead.wait(lambda rs: len(rs) >= len(shas), role)
    finally:
        assert role.stop() == 0
    assert sorted(d["delivery"]["sha256"] for d in letters) == sorted(shas)
    assert {(d["reason_code"], d["stage"]) for d in letters} == {("record-refused", "stream")}
    assert all(d["delivery"]["inline"] is None and d["delivery"]["blob_ref"] for d in letters)
    assert all(d["origin_topic"] == full_name(kafka_config, RAW) for d in letters)


def test_a_dead_letter_the_broker_refuses_goes_on_by_reference(
    tmp_path: Path, kafka_config: KafkaConfig, admin: KafkaAdminClient
) -> None:
    config_path = _configure(tmp_path, kafka_config, admin, dlt=3000)
    publisher = Publisher(config_path)
    headless = b"\r\n" + b"no headers " * 1000
    sha = publisher.raw("catchall", headless)
    small_sha = publisher.raw("catchall", mail("small", 100))
    dead = Topics(kafka_config, DLT, DEAD_LETTER)
    deliveries = Topics(kafka_config, DELIVER, DELIVERY)
    role = StreamRole(config_path, tmp_path / "stream.log")
    role.start()
    try:
        (letter,) = dead.wait(lambda rs: len(rs) >= 1, role)
        deliveries.wait(lambda rs: small_sha in {r["sha256"] for r in rs}, role)
    finally:
        assert role.stop() == 0
    assert letter["reason_code"] == "no-headers" and letter["raw"]["sha256"] == sha
    assert letter["raw"]["inline"] is None
    assert read_blob(config_path, letter["raw"]["blob_ref"]) == headless
