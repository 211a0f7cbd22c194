"""``mailferry deliver`` on the real broker: delivery records in, Maildir files out, once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mailferry.config.kafka import KafkaConfig

from .conftest import (
    RunningWorker,
    audit_events,
    delivery_record,
    maildir_files,
    make_config,
    publish,
    sample_message,
)

pytestmark = pytest.mark.integration


def test_records_become_maildir_files_exactly_once(
    tmp_path: Path, kafka_config: KafkaConfig, start_worker: Callable[..., RunningWorker]
) -> None:
    root = tmp_path / "maildirs"
    config = make_config(
        tmp_path, kafka_config, f'[[targets]]\nname = "archive"\nkind = "maildir"\npath = "{root}"\n'
    )
    recipients = [f"user{i}@acme.example" for i in range(5)]
    records = [
        delivery_record(r, sample_message(i, r)) for i in range(20) for r in recipients[i % 5 : i % 5 + 1]
    ]
    publish(config, records)
    publish(config, records[:5])  # the same deliveries again, as a stream restart would send them

    worker = start_worker(config)
    worker.wait_for(lambda: sum(len(maildir_files(root, r)) for r in recipients) >= 20)
    worker.wait_for(
        lambda: sum(1 for e in audit_events(config) if e["event"] in ("delivered", "skipped")) >= 25
    )
    worker.shutdown()

    for index, record in enumerate(records):
        files = maildir_files(root, record["recipient"])
        contents = [f.read_bytes() for f in files]
        expected = b"X-Mailferry-Trace: acme; test\r\n" + record["inline"]
        assert contents.count(expected) == 1, f"record {index}"
    assert sum(len(maildir_files(root, r)) for r in recipients) == 20

    again = start_worker(config)  # offsets were committed: nothing is delivered twice
    again.wait_for(lambda: again.worker.consumer is not None and bool(again.worker.consumer.assignment()))
    again.shutdown()
    assert sum(len(maildir_files(root, r)) for r in recipients) == 20
    events = audit_events(config)
    assert sum(1 for e in events if e["event"] == "delivered") == 20
    assert sum(1 for e in events if e["event"] == "skipped") == 5
