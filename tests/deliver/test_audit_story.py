"""One lookup in the audit index tells a message's whole story: fetched, routed, dead-lettered
by the real delivery worker, requeued by an operator (who is named), delivered."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailferry.audit import audit_event
from mailferry.audit_index.access import LocalIndex
from mailferry.audit_index.indexer import Indexer
from mailferry.audit_index.store import IndexStore
from mailferry.audit_trace import trace_message
from mailferry.cli.main import app
from mailferry.config.kafka import KafkaConfig
from mailferry.kafka.clients import new_producer
from mailferry.kafka.topics import AUDIT, full_name

from .conftest import (
    RunningWorker,
    dead_letters,
    delivery_record,
    maildir_files,
    maildir_target,
    make_config,
    publish,
)

pytestmark = pytest.mark.integration


def test_fetch_dead_letter_requeue_delivered_in_one_trace(
    tmp_path: Path, kafka_config: KafkaConfig, start_worker: Callable[..., RunningWorker]
) -> None:
    targets = maildir_target(
        tmp_path / "small", name="small", extra="max_message_size = 10\n"
    ) + maildir_target(tmp_path / "archive")
    config = make_config(tmp_path, kafka_config, targets)
    body = b"From: a@example.org\r\nMessage-ID: <Story-1@Example.org>\r\nSubject: s\r\n\r\nhello\r\n"
    record = delivery_record("bob@acme.example", body, message_id="<Story-1@Example.org>")
    producer = new_producer(kafka_config, list(kafka_config.bootstrap_servers), acks="all")
    for event in (
        audit_event(
            "fetched",
            stage="fetch",
            tenant="acme",
            mailbox_id="catchall",
            sha256=record["sha256"],
            at=datetime.now(UTC) - timedelta(seconds=1),  # events of one millisecond have no order
        ),
        audit_event(
            "routed",
            stage="stream",
            tenant="acme",
            mailbox_id="catchall",
            message_id=record["message_id"],
            sha256=record["sha256"],
            dedup_key=record["dedup_key"],
            recipient="bob@acme.example",
        ),
    ):
        producer.send(full_name(kafka_config, AUDIT), key=event[0], value=event[1])
    producer.flush()
    producer.close()
    publish(config, [record])
    worker = start_worker(config)
    worker.wait_for(lambda: bool(dead_letters(config)))
    [letter] = dead_letters(config)
    requeued = CliRunner().invoke(
        app,
        [
            "-c",
            str(tmp_path / "mailferry.toml"),
            "dlq",
            "requeue",
            letter["dead_letter_id"],
            "--target",
            "archive",
        ],
    )
    assert requeued.exit_code == 0, requeued.output
    worker.wait_for(lambda: len(maildir_files(tmp_path / "archive", "bob@acme.example")) == 1)
    worker.shutdown()

    topic = full_name(kafka_config, AUDIT)
    store = IndexStore(tmp_path / "index", topic=topic)
    indexer = Indexer(kafka_config, list(kafka_config.bootstrap_servers), topic, store)
    indexer.catch_up()
    indexer.close()
    story = trace_message(
        kafka_config, list(kafka_config.bootstrap_servers), "story-1@example.org", index=LocalIndex(store)
    )
    steps = [(e["stage"], e["event"]) for e in story.events]
    assert steps == [
        ("fetch", "fetched"),
        ("stream", "routed"),
        ("deliver", "dead-lettered"),
        ("dlq", "retried"),
        ("deliver", "delivered"),
    ]
    requeue = story.events[3]["details"]
    assert requeue["action"] == "requeued" and requeue["actor"] and requeue["dead_letter_id"]
    assert {e["sha256"] for e in story.events} == {record["sha256"]}  # one correlation key throughout
