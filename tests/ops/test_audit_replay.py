"""``audit trace`` and ``replay`` against the real broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from mailferry.audit import audit_event
from mailferry.blobs import LocalBlobStore
from mailferry.cli.main import app
from mailferry.config.kafka import KafkaConfig
from mailferry.kafka.clients import new_producer
from mailferry.kafka.topics import AUDIT, RAW, full_name
from mailferry.packing import RAW_PACK
from mailferry.rawrecord import RawSource, build_raw_record, encode_raw

from ..topics import create_topics, read_values

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def config_file(tmp_path: Path, kafka_config: KafkaConfig) -> Path:
    create_topics(kafka_config, 4)
    path = tmp_path / "c.toml"
    path.write_text(
        f'state_dir = "{tmp_path}"\n'
        + kafka_config.connection_toml()
        + '[[tenants]]\nid = "acme"\naccepted_domains = ["acme.example"]\n'
        'default_mailbox = "postmaster@acme.example"\ndefault_target = "archive"\n'
        '[[tenants.targets]]\nname = "archive"\nkind = "maildir"\npath = "/tmp/a"\n'
        '[[tenants.targets]]\nname = "second"\nkind = "maildir"\npath = "/tmp/b"\n',
        encoding="utf-8",
    )
    return path


def test_trace_follows_a_message_through_every_stage(config_file: Path, kafka_config: KafkaConfig) -> None:
    producer = new_producer(kafka_config, list(kafka_config.bootstrap_servers))
    topic = full_name(kafka_config, AUDIT)
    events = [
        audit_event(
            "fetched",
            stage="fetch",
            tenant="acme",
            mailbox_id="catchall",
            sha256="aa11",
            at=T0,
            details={"uid": "7"},
        ),
        audit_event("fetched", stage="fetch", tenant="acme", mailbox_id="catchall", sha256="bb22", at=T0),
        audit_event(
            "routed",
            stage="stream",
            tenant="acme",
            message_id="<Msg-1@Example.org>",
            sha256="aa11",
            dedup_key="acme|bob@acme.example|msg-1@example.org",
            recipient="bob@acme.example",
            at=T0 + timedelta(seconds=1),
            details={"reason": "envelope Delivered-To #1"},
        ),
        audit_event(
            "routed",
            stage="stream",
            tenant="acme",
            message_id="<other@example.org>",
            sha256="bb22",
            recipient="carol@acme.example",
            at=T0 + timedelta(seconds=1),
        ),
        audit_event(
            "delivered",
            stage="deliver",
            tenant="acme",
            message_id="<Msg-1@Example.org>",
            sha256="aa11",
            dedup_key="acme|bob@acme.example|msg-1@example.org",
            recipient="bob@acme.example",
            at=T0 + timedelta(seconds=2),
        ),
        audit_event(
            "source-deleted",
            stage="fetch",
            tenant="acme",
            mailbox_id="catchall",
            sha256="aa11",
            at=T0 + timedelta(seconds=3),
        ),
    ]
    for key, value in events:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()
    runner = CliRunner()

    result = runner.invoke(app, ["-c", str(config_file), "audit", "trace", "msg-1@example.org", "--json"])
    assert result.exit_code == 0, result.output
    trail = json.loads(result.output)["events"]
    assert [e["event"] for e in trail] == ["fetched", "routed", "delivered", "source-deleted"]
    assert trail[0]["details"] == {"uid": "7"}
    assert trail[1]["details"]["reason"] == "envelope Delivered-To #1"

    by_key = runner.invoke(
        app, ["-c", str(config_file), "audit", "trace", "acme|bob@acme.example|msg-1@example.org", "--json"]
    )
    assert [e["event"] for e in json.loads(by_key.output)["events"]] == [
        "fetched",
        "routed",
        "delivered",
        "source-deleted",
    ]
    table = runner.invoke(app, ["-c", str(config_file), "audit", "trace", "<msg-1@example.org>"])
    assert "audit trace of <msg-1@example.org>" in table.output
    assert "source-" in table.output and "routed" in table.output and "delivered" in table.output
    missing = runner.invoke(app, ["-c", str(config_file), "audit", "trace", "nobody@nowhere"])
    assert missing.exit_code == 1 and "no audit events" in missing.output


def _publish_raw(kafka: KafkaConfig, tmp_path: Path, mails: list[tuple[RawSource, bytes, datetime]]) -> None:
    """Each mail as a plain raw record, fetched (Kafka's timestamp) at its time."""
    producer = new_producer(kafka, list(kafka.bootstrap_servers))
    blobs = LocalBlobStore(tmp_path / "blobs")
    for source, mail, fetched in mails:
        key, record = build_raw_record(source, mail, blobs=blobs, inline_threshold=1024)
        stamp = int(fetched.timestamp() * 1000)
        producer.send(full_name(kafka, RAW), key=key, value=encode_raw(record), timestamp_ms=stamp)
    producer.flush()
    producer.close()


def _raw_values(kafka: KafkaConfig) -> list[dict[str, object]]:
    return [mail for value in read_values(kafka, RAW, 3000) for mail in RAW_PACK.unpack(value)]


def _replay(config_file: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["-c", str(config_file), "replay", "-t", "acme", *args])


def test_replay_by_time_range_dry_run_and_for_real(
    config_file: Path, kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    mailboxes = [("acme", "a"), ("acme", "b"), ("other", "a"), ("acme", "a")]
    _publish_raw(
        kafka_config,
        tmp_path,
        [
            (
                RawSource(tenant, mailbox, "pop3", source_uid=str(minute)),
                f"Subject: {minute}\r\n\r\nbody\r\n".encode(),
                T0 + timedelta(minutes=minute),
            )
            for minute, (tenant, mailbox) in enumerate(mailboxes)
        ],
    )
    window = ["--from", "2026-11-01T12:00:30+00:00", "--to", "2026-11-01T12:03:30+00:00"]

    dry = _replay(config_file, *window, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would replay 2 messages" in dry.output
    assert len(_raw_values(kafka_config)) == 4

    real = _replay(config_file, *window, "--mailbox", "a", "--bypass-dedup", "--target", "second")
    assert real.exit_code == 0, real.output
    assert "replayed 1 messages" in real.output
    values = _raw_values(kafka_config)
    assert len(values) == 5
    replayed = values[-1]
    assert replayed["mailbox_id"] == "a" and replayed["source_uid"] == "3"
    assert replayed["bypass_dedup"] is True and replayed["target_override"] == "second"
    assert str(replayed["replay_of"]).startswith(full_name(kafka_config, RAW) + "/")


def test_replay_reports_an_empty_range_and_bad_arguments(config_file: Path) -> None:
    day_one, day_two = "2020-01-01T00:00:00", "2020-01-02T00:00:00"
    empty = _replay(config_file, "--from", f"{day_one}+00:00", "--to", f"{day_two}+00:00")
    assert empty.exit_code == 0 and "nothing to replay" in empty.output
    backwards = _replay(config_file, "--from", day_two, "--to", day_one)
    assert backwards.exit_code == 2 and "must be after --from" in backwards.output
    no_target = _replay(config_file, "--target", "x", "--from", day_one, "--to", day_two)
    assert no_target.exit_code == 2 and "has no target 'x'" in no_target.output


def test_replay_packs_the_mails_it_sends_again(
    config_file: Path, kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    mails = [
        (
            RawSource("acme", "a", "pop3", source_uid=str(n)),
            f"Message-ID: <{n}@replay.test>\r\nSubject: {n}\r\n\r\nbody\r\n".encode(),
            T0 + timedelta(minutes=1),
        )
        for n in range(40)
    ]
    _publish_raw(kafka_config, tmp_path, mails)
    window = ["--from", "2026-11-01T12:00:30+00:00", "--to", "2026-11-01T12:01:30+00:00"]

    result = _replay(config_file, *window)
    assert result.exit_code == 0, result.output
    assert "replayed 40 messages" in result.output
    assert len(read_values(kafka_config, RAW, 3000)) <= 40 + 6  # the 40 plain ones, then a pack per partition
    replayed = [m for m in _raw_values(kafka_config) if m["replay_of"]]
    assert sorted(int(str(m["source_uid"])) for m in replayed) == list(range(40))
