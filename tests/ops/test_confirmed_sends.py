"""Every send that marks something done is confirmed: a record Kafka refuses fails the command
and nothing is marked (dead letters, replay, import), against the real broker.

A topic whose ``max.message.bytes`` is below the record's size makes the broker refuse it;
kafka-python's ``flush()`` only logs such a batch, so these tests fail when a writer trusts it.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient
from kafka import errors as kafka_errors
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from typer.testing import CliRunner

from mailferry.audit import read_events
from mailferry.blobs import LocalBlobStore
from mailferry.cli.main import app
from mailferry.config.kafka import KafkaConfig
from mailferry.errors import OperatorError, PermanentError, TransientError
from mailferry.kafka.admin import ensure_topics
from mailferry.kafka.clients import new_admin, new_producer
from mailferry.kafka.confirm import ConfirmedSends, Outcome
from mailferry.kafka.topics import AUDIT, DELIVER, DLT, DLT_STATE, RAW, full_name, topic_specs
from mailferry.raw_sends import RawSends
from mailferry.rawrecord import RawSource, build_raw_record, encode_raw
from mailferry.schemas import DEAD_LETTER, DELIVERY, RAW_MESSAGE, codec

from ..factories import records
from ..topics import read_records, read_values
from .conftest import history_config

pytestmark = pytest.mark.integration
SMALL = 1024  # bytes a refusing topic accepts; every record below is larger
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _limit(admin: KafkaAdminClient, topic: str, max_bytes: int) -> None:
    resource = ConfigResource(ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": str(max_bytes)})
    admin.alter_configs([resource], incremental=True)
    deadline = time.monotonic() + 10  # the broker applies it from its metadata log, a moment later
    while time.monotonic() < deadline:
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        if described["topic"][topic]["max.message.bytes"]["value"] == str(max_bytes):
            return
        time.sleep(0.1)


def _audit(kafka: KafkaConfig) -> list[dict[str, Any]]:
    return [event for m in read_records(kafka, AUDIT) for event in read_events(m)]


@pytest.fixture
def admin(kafka_config: KafkaConfig) -> Any:
    client = new_admin(kafka_config, list(kafka_config.bootstrap_servers))
    ensure_topics(client, topic_specs(kafka_config, 2))
    yield client
    client.close()


@pytest.fixture
def config_file(tmp_path: Path, kafka_config: KafkaConfig, admin: KafkaAdminClient) -> Path:
    return history_config(
        tmp_path, kafka_config, inline_threshold="64KiB", extra='[retry]\ntiers = ["1s", "2s"]\n'
    )


def test_a_refused_record_is_failed_and_its_marks_are_never_sent(
    kafka_config: KafkaConfig, admin: KafkaAdminClient
) -> None:
    servers = list(kafka_config.bootstrap_servers)
    refusing = f"{kafka_config.topic_prefix}.refusing"
    admin.create_topics([NewTopic(refusing, 1, 1, topic_configs={"max.message.bytes": str(SMALL)})])
    marks = full_name(kafka_config, AUDIT)
    producer = new_producer(kafka_config, servers)
    sends: ConfirmedSends[str] = ConfirmedSends(producer, timeout=30)
    sends.send(marks, key=b"kept", value=b"work", tag="kept")
    sends.then("kept", marks, key=b"kept", value=b"mark")
    kept = sends.wait()
    # an idempotent producer stops after a refused batch: what follows on it fails as well
    sends.send(refusing, key=b"lost", value=b"x" * (4 * SMALL), tag="lost")
    sends.then("lost", marks, key=b"lost", value=b"mark")
    lost = sends.wait()
    producer.close()

    assert (kept.acknowledged, kept.failed) == (["kept"], [])
    assert lost.acknowledged == [] and [tag for tag, _ in lost.failed] == ["lost"]
    with pytest.raises(
        PermanentError, match="did not acknowledge 1 of 1 things: MessageSizeTooLarge"
    ) as refused:
        lost.raise_for_failures("things")
    assert refused.value.reason_code == "kafka-record-refused"  # the Kafka mapper's verdict
    assert read_values(kafka_config, AUDIT) == [b"work", b"mark"]  # no mark for the refused record


def test_a_pack_not_taken_fails_every_mail_in_it_and_sends_none_of_their_marks(
    kafka_config: KafkaConfig, admin: KafkaAdminClient
) -> None:
    """One record stands for each mail packed in it (``RawSends``): when it is not taken (a
    topic not created yet), none of their marks goes, while the producer itself stays sound."""
    servers = list(kafka_config.bootstrap_servers)
    marks = full_name(kafka_config, AUDIT)
    producer = new_producer(kafka_config, servers, max_block_ms=1500)
    sends: ConfirmedSends[str] = ConfirmedSends(producer, timeout=30)
    raw = RawSends(sends, f"{kafka_config.topic_prefix}.not-yet-created", 1, 64 * SMALL, float("inf"))
    for tag in ("a", "b", "c"):
        raw.add(tag.encode(), b"mail " + tag.encode(), tag=tag)
        sends.then(tag, marks, key=tag.encode(), value=b"mark")
    raw.flush()
    outcome = sends.wait()
    producer.close()

    assert raw.records == 1
    assert outcome.acknowledged == [] and sorted(tag for tag, _ in outcome.failed) == ["a", "b", "c"]
    with pytest.raises(TransientError, match="did not acknowledge 3 of 3 mails"):
        outcome.raise_for_failures("mails")
    assert read_values(kafka_config, AUDIT) == []


def test_a_send_refused_for_a_retriable_reason_is_transient(kafka_config: KafkaConfig) -> None:
    """A topic the broker does not know (yet: auto-creation is off) is UnknownTopicOrPartition,
    which kafka-python retries until ``max_block_ms``: an outage to wait out, not a verdict."""
    producer = new_producer(kafka_config, list(kafka_config.bootstrap_servers), max_block_ms=1500)
    sends: ConfirmedSends[str] = ConfirmedSends(producer, timeout=30)
    sends.send(f"{kafka_config.topic_prefix}.not-yet-created", key=b"k", value=b"v", tag="waiting")
    outcome = sends.wait()
    producer.close()

    assert outcome.acknowledged == [] and [tag for tag, _ in outcome.failed] == ["waiting"]
    with pytest.raises(TransientError, match="did not acknowledge 1 of 1 things") as raised:
        outcome.raise_for_failures("things")
    assert raised.value.reason_code == "kafka-unavailable"
    assert not isinstance(raised.value, OperatorError | PermanentError)


def test_an_authorization_failure_is_the_operators_whatever_else_failed() -> None:
    """An ACL refusal (a broker without an authorizer cannot give one: kafka-python's own
    exceptions, as its futures hold them) pauses the role; the outages after it do not hide it."""
    outcome: Outcome[str] = Outcome(
        ["kept"],
        [
            ("a", kafka_errors.KafkaTimeoutError("expired")),
            ("b", kafka_errors.TopicAuthorizationFailedError("mailferry.raw")),
            ("c", kafka_errors.NotEnoughReplicasError()),
        ],
    )
    with pytest.raises(
        OperatorError, match="did not acknowledge 3 of 4 records: TopicAuthorizationFailed"
    ) as raised:
        outcome.raise_for_failures("records")
    assert raised.value.reason_code == "kafka-acl-denied"


def _dead_letter(body_size: int) -> dict[str, Any]:
    body = b"Subject: big\r\n\r\n" + b"x" * body_size
    delivery = records.delivery(
        delivery_id=uuid.uuid4().hex,
        target="",
        dedup_key=f"acme/alice/{hashlib.sha256(body).hexdigest()}",
        message_id="<big@test>",
        inline=body,
    )
    letter = records.dead_letter(
        dead_letter_id=uuid.uuid4().hex,
        reason_code="recipient-refused",
        origin_topic="deliver",
        origin_offset=0,
        delivery=delivery,
    )
    return dict(letter)


def test_dlq_requeue_refused_by_kafka_fails_and_leaves_the_dead_letter_dead(
    config_file: Path, kafka_config: KafkaConfig, admin: KafkaAdminClient
) -> None:
    letter = _dead_letter(4 * SMALL)
    producer = new_producer(kafka_config, list(kafka_config.bootstrap_servers))
    producer.send(full_name(kafka_config, DLT), key=b"acme", value=codec(DEAD_LETTER).encode(letter))
    producer.flush()
    producer.close()
    _limit(admin, full_name(kafka_config, DELIVER), SMALL)
    runner = CliRunner()
    base = ["-c", str(config_file), "dlq"]

    refused = runner.invoke(app, [*base, "requeue", letter["dead_letter_id"]])
    assert refused.exit_code == 1, refused.output
    assert "did not acknowledge 1 of 1 dead letters to requeue" in refused.output
    listed = runner.invoke(app, [*base, "list", "--json"])
    assert [e["status"] for e in json.loads(listed.output)["dead_letters"]] == ["dead"]
    assert read_values(kafka_config, DLT_STATE) == [] and _audit(kafka_config) == []

    _limit(admin, full_name(kafka_config, DELIVER), 8 * 1024 * 1024)
    requeued = runner.invoke(app, [*base, "requeue", letter["dead_letter_id"]])
    assert requeued.exit_code == 0, requeued.output
    assert [codec(DELIVERY).decode(v)["delivery_id"] for v in read_values(kafka_config, DELIVER)] == [
        letter["delivery"]["delivery_id"]
    ]
    assert [e["event"] for e in _audit(kafka_config)] == ["retried"]


def test_dlq_discard_refused_by_kafka_fails(
    config_file: Path, kafka_config: KafkaConfig, admin: KafkaAdminClient
) -> None:
    letter = _dead_letter(100)
    producer = new_producer(kafka_config, list(kafka_config.bootstrap_servers))
    producer.send(full_name(kafka_config, DLT), key=b"acme", value=codec(DEAD_LETTER).encode(letter))
    producer.flush()
    producer.close()
    _limit(admin, full_name(kafka_config, DLT_STATE), 64)  # below any state record

    result = CliRunner().invoke(app, ["-c", str(config_file), "dlq", "discard", letter["dead_letter_id"]])
    assert result.exit_code == 1, result.output
    assert "did not acknowledge 1 of 1 dead letters to discard" in result.output
    assert read_values(kafka_config, DLT_STATE) == []


def test_replay_refused_by_kafka_fails_without_replayed_events(
    config_file: Path, kafka_config: KafkaConfig, admin: KafkaAdminClient, tmp_path: Path
) -> None:
    key, record = build_raw_record(
        RawSource("acme", "history", "pop3", source_uid="1"),
        b"Subject: big\r\n\r\n" + b"x" * (4 * SMALL),
        blobs=LocalBlobStore(tmp_path / "blobs"),
        inline_threshold=64 * 1024,
    )
    producer = new_producer(kafka_config, list(kafka_config.bootstrap_servers))
    stamp = int(T0.timestamp() * 1000)
    producer.send(full_name(kafka_config, RAW), key=key, value=encode_raw(record), timestamp_ms=stamp)
    producer.flush()
    producer.close()
    _limit(admin, full_name(kafka_config, RAW), SMALL)
    window = [
        "--from",
        (T0 - timedelta(minutes=1)).isoformat(),
        "--to",
        (T0 + timedelta(minutes=1)).isoformat(),
    ]

    result = CliRunner().invoke(app, ["-c", str(config_file), "replay", "--tenant", "acme", *window])
    assert result.exit_code == 1, result.output
    assert "did not acknowledge 1 of 1 records to replay" in result.output
    assert len(read_values(kafka_config, RAW)) == 1
    assert [e["event"] for e in _audit(kafka_config)] == []


def test_import_refused_by_kafka_fails_and_keeps_no_checkpoint(
    config_file: Path, kafka_config: KafkaConfig, admin: KafkaAdminClient, tmp_path: Path
) -> None:
    mbox = tmp_path / "in.mbox"
    mbox.write_bytes(
        b"From sender@example.org Mon Nov  2 10:00:00 2026\n"
        b"Message-ID: <big@import.test>\nSubject: big\n\n" + b"x" * (4 * SMALL) + b"\n\n"
    )
    _limit(admin, full_name(kafka_config, RAW), SMALL)
    args = ["-c", str(config_file), "import", "mbox", str(mbox), "--tenant", "acme", "--mailbox", "history"]

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "did not acknowledge 1 of 1 messages to import" in result.output
    assert not list((tmp_path / "state" / "imports").glob("*.json"))
    assert _audit(kafka_config) == []

    _limit(admin, full_name(kafka_config, RAW), 8 * 1024 * 1024)
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert [codec(RAW_MESSAGE).decode(v)["size"] for v in read_values(kafka_config, RAW)] != []
    assert [e["event"] for e in _audit(kafka_config)] == ["imported"]
