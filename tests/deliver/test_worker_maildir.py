"""``mailferry deliver`` on the real broker: delivery records in, Maildir files out, once."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from mailferry.config import MailferryConfig
from mailferry.config.kafka import KafkaConfig
from mailferry.consumers.registry import TargetRegistry
from mailferry.consumers.target import Committing, DeliveryItem, DeliveryTarget, Outcome
from mailferry.consumers.targets.maildir import MaildirDelivery
from mailferry.errors import AmbiguousOutcomeError
from mailferry.kafka.clients import new_admin
from mailferry.kafka.topics import DELIVER, full_name

from .conftest import (
    RunningWorker,
    audit_events,
    dead_letters,
    delivery_record,
    maildir_config,
    maildir_files,
    maildir_target,
    make_config,
    publish,
    sample_message,
)

pytestmark = pytest.mark.integration


def test_records_become_maildir_files_exactly_once(
    tmp_path: Path, kafka_config: KafkaConfig, start_worker: Callable[..., RunningWorker]
) -> None:
    root, config = maildir_config(tmp_path, kafka_config)
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

    events = audit_events(config)
    assert sum(1 for e in events if e["event"] == "delivered") == 20
    # 5 duplicates, plus whatever a rebalance had the worker read again: the ledger skips those
    assert sum(1 for e in events if e["event"] == "skipped") >= 5
    assert _committed(kafka_config, config) == 25  # a restarted worker starts after them


def _committed(kafka_config: KafkaConfig, config: MailferryConfig) -> int:
    admin = new_admin(kafka_config, list(kafka_config.bootstrap_servers))
    group = f"{kafka_config.topic_prefix}.deliver"
    committed = admin.list_group_offsets({group: None})[group]
    admin.close()
    deliver_topic = full_name(config.kafka, DELIVER)
    return sum(meta.offset for tp, meta in committed.items() if tp.topic == deliver_topic)


def test_oversized_message_is_dead_lettered_and_the_rest_flows(
    tmp_path: Path, kafka_config: KafkaConfig, start_worker: Callable[..., RunningWorker]
) -> None:
    root, config = maildir_config(tmp_path, kafka_config, target_extra='max_message_size = "1KiB"\n')
    big = delivery_record("big@acme.example", sample_message(0, "big") + b"x" * 4096)
    small = [delivery_record(f"s{i}@acme.example", sample_message(i, "s")) for i in range(3)]
    publish(config, [big, *small])
    worker = start_worker(config)
    worker.wait_for(
        lambda: bool(dead_letters(config)) and all(maildir_files(root, r["recipient"]) for r in small)
    )
    worker.shutdown()
    [letter] = dead_letters(config)
    assert (letter["error_class"], letter["reason_code"]) == ("permanent", "message-too-large")
    assert "over this target's limit" in letter["error_message"]
    assert maildir_files(root, "big@acme.example") == []


class _TimesOutAfterWriting(MaildirDelivery):
    """A Maildir whose first write 'times out' after the file is in place (like EWS can)."""

    def __init__(self, root: Path) -> None:
        super().__init__("archive", root)
        self.writes = 0

    def deliver_batch(self, items: Sequence[DeliveryItem], committing: Committing) -> list[Outcome]:
        self.writes += len(items)
        outcomes = super().deliver_batch(items, committing)
        if self.writes == 1:
            return [AmbiguousOutcomeError("timed out waiting for the answer")]
        return outcomes


class _Registry(TargetRegistry):
    def __init__(self, config: MailferryConfig, target: MaildirDelivery) -> None:
        super().__init__(config)
        self.target = target

    def get(self, tenant_id: str, target_name: str | None) -> DeliveryTarget:
        self.resolve(tenant_id, target_name)
        return self.target


def test_ambiguous_outcome_checks_the_mailbox_before_writing_again(
    tmp_path: Path, kafka_config: KafkaConfig, start_worker: Callable[..., RunningWorker]
) -> None:
    root, config = maildir_config(tmp_path, kafka_config)
    target = _TimesOutAfterWriting(root)
    publish(config, [delivery_record("bob@acme.example", sample_message(1, "bob"))])
    worker = start_worker(config, registry=_Registry(config, target))
    worker.wait_for(lambda: any(e["event"] == "delivered" for e in audit_events(config, 1000)))
    worker.shutdown()
    [delivered] = [e for e in audit_events(config) if e["event"] == "delivered"]
    assert "already in the mailbox" in delivered["details"]["found"]
    assert target.writes == 1  # found by already_delivered, not written again
    assert not [e for e in audit_events(config) if e["event"] == "retried"]
    assert len(maildir_files(root, "bob@acme.example")) == 1


def test_the_role_stops_cleanly_on_sigterm_with_offsets_committed(
    tmp_path: Path, kafka_config: KafkaConfig
) -> None:
    root, config = maildir_config(tmp_path, kafka_config)
    records = [delivery_record(f"u{i}@acme.example", sample_message(i, "u")) for i in range(10)]
    publish(config, records)
    process = subprocess.Popen(
        [sys.executable, "-m", "mailferry", "-c", str(tmp_path / "mailferry.toml"), "deliver"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while (
            time.monotonic() < deadline
            and sum(len(maildir_files(root, r["recipient"])) for r in records) < 10
        ):
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            time.sleep(0.3)
        time.sleep(1.5)  # a commit round after the last outcome
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert _committed(kafka_config, config) == 10


def test_prometheus_metrics_count_deliveries(
    tmp_path: Path, kafka_config: KafkaConfig, start_worker: Callable[..., RunningWorker]
) -> None:
    import socket
    import urllib.request

    from mailferry.observe.server import observe

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    root = tmp_path / "maildirs"
    config = make_config(
        tmp_path,
        kafka_config,
        maildir_target(root, name="metered"),
        extra=f"[metrics]\nport = {port}\n",
    )
    publish(config, [delivery_record(f"m{i}@acme.example", sample_message(i, "m")) for i in range(3)])
    worker = start_worker(config)
    observer = observe(config, "deliver", list(config.kafka.bootstrap_servers), worker.worker.group_id)
    try:
        worker.wait_for(lambda: sum(len(maildir_files(root, f"m{i}@acme.example")) for i in range(3)) == 3)
        worker.shutdown()
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    finally:
        observer.close()
    line = 'mailferry_deliveries_total{outcome="delivered",target="metered",tenant="acme"} 3.0'
    assert line in text


def test_the_records_of_one_poll_share_a_folder_sync(
    tmp_path: Path,
    kafka_config: KafkaConfig,
    start_worker: Callable[..., RunningWorker],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Group commit through the worker: 60 messages for two mailboxes, published before the
    worker starts, are written with far fewer fsyncs of the ``new/`` folders than messages."""
    import os

    root, config = maildir_config(tmp_path, kafka_config)
    recipients = ["ann@acme.example", "bob@acme.example"]
    records = [delivery_record(recipients[i % 2], sample_message(i, recipients[i % 2])) for i in range(60)]
    publish(config, records)
    folder_syncs: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if path.startswith(str(root)) and os.path.isdir(path):
            folder_syncs.append(path)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    worker = start_worker(config)
    worker.wait_for(lambda: sum(1 for e in audit_events(config) if e["event"] == "delivered") >= 60)
    worker.shutdown()
    assert sum(len(maildir_files(root, r)) for r in recipients) == 60
    assert 2 <= len(folder_syncs) <= 20, folder_syncs


def test_a_batchs_delivered_and_skipped_events_share_audit_records(
    tmp_path: Path, kafka_config: KafkaConfig, start_worker: Callable[..., RunningWorker]
) -> None:
    """60 deliveries for two mailboxes and 10 of them again, published before the worker
    starts: their events travel in far fewer audit records than events, and every reader's
    path (``read_events``, the trace) finds each one with its own delivery id."""
    from mailferry.audit import read_events
    from mailferry.audit_trace import trace
    from mailferry.kafka.topics import AUDIT

    from .conftest import read_topic

    root, config = maildir_config(tmp_path, kafka_config)
    recipients = ["ann@acme.example", "bob@acme.example"]
    records = [delivery_record(recipients[i % 2], sample_message(i, recipients[i % 2])) for i in range(60)]
    publish(config, records + records[:10])
    worker = start_worker(config)
    worker.wait_for(
        lambda: sum(1 for e in audit_events(config) if e["event"] in ("delivered", "skipped")) >= 70
    )
    worker.shutdown()
    assert sum(len(maildir_files(root, r)) for r in recipients) == 60

    audit = read_topic(config, AUDIT)
    events = [event for record in audit for event in read_events(record)]
    delivered = [e["details"]["delivery_id"] for e in events if e["event"] == "delivered"]
    skipped = [e["details"]["delivery_id"] for e in events if e["event"] == "skipped"]
    assert sorted(delivered) == sorted(r["delivery_id"] for r in records)
    assert sorted(skipped) == sorted(r["delivery_id"] for r in records[:10])
    assert len(audit) <= 20, f"{len(audit)} audit records for {len(events)} events"  # one each: 70
    packed = [e for e in events if e["_offset"].count("/") == 2]
    assert packed, "no event inside an audit pack"
    one = records[17]
    found = trace(kafka_config, list(kafka_config.bootstrap_servers), one["delivery_id"], tenant="acme")
    assert [e["event"] for e in found] == ["delivered"]
    assert found[0]["recipient"] == one["recipient"]
