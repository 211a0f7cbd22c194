"""The worker's outcomes on the real broker with a real SMTP server: retry tiers, dead
letters, the horizon, tenant pause and resume, a crash before the commit, DLT requeue."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mailferry.cli.main import app
from mailferry.config import MailferryConfig
from mailferry.config.kafka import KafkaConfig
from mailferry.consumers.dlq import DeadLetterQueue, Filter
from mailferry.kafka.topics import retry_topic
from mailferry.status import read_snapshots

from .conftest import (
    NeverCommits,
    RunningWorker,
    dead_letters,
    delivery_record,
    events_named,
    maildir_files,
    maildir_target,
    make_config,
    publish,
    read_topic,
    sample_message,
)
from .smtp_sink import LoopbackCA, SmtpSink

pytestmark = pytest.mark.integration


def smtp_config(
    tmp_path: Path, kafka: KafkaConfig, sink: SmtpSink, ca: LoopbackCA, **options: Any
) -> MailferryConfig:
    for tenant in options.get("tenants", ("acme",)):
        (tmp_path / f"{tenant}.pw").write_text("s3cret")
    targets = (
        f'[[targets]]\nname = "exchange"\nkind = "smtp"\nhost = "127.0.0.1"\nport = {sink.port}\n'
        f'ca_file = "{ca.ca_file}"\nusername = "mailferry"\npassword = "file:{tmp_path}/{{tenant}}.pw"\n'
        'timeout = "5s"\nconcurrency = 4\n'
    )
    return make_config(tmp_path, kafka, targets, **options)


def test_transient_failure_waits_for_its_tier_then_succeeds(
    tmp_path: Path,
    kafka_config: KafkaConfig,
    sink: SmtpSink,
    ca: LoopbackCA,
    start_worker: Callable[..., RunningWorker],
) -> None:
    config = smtp_config(tmp_path, kafka_config, sink, ca, tiers='["2s", "2s"]')
    sink.handler.replies["busy@acme.example"] = "451 4.3.0 mailbox busy"
    publish(
        config,
        [
            delivery_record(r, sample_message(i, r))
            for i, r in enumerate(["busy@acme.example", "ok@acme.example"])
        ],
    )
    worker = start_worker(config)
    worker.wait_for(lambda: bool(events_named(config, "retried", "busy@acme.example")))
    sink.wait_for(1)
    assert [a.rcpt_tos for a in sink.handler.accepted] == [["ok@acme.example"]]  # no head-of-line block
    del sink.handler.replies["busy@acme.example"]
    worker.wait_for(lambda: sink.handler.count() == 2)
    worker.shutdown()

    retried = events_named(config, "retried", "busy@acme.example")
    delivered = events_named(config, "delivered", "busy@acme.example")
    assert len(delivered) == 1
    assert retried[0]["details"]["tier"] == "0" and retried[0]["details"]["reason"] == "smtp-451"
    waited = (delivered[0]["at"] - retried[0]["at"]).total_seconds()
    assert waited >= 1.8, f"the tier record was attempted {waited:.2f}s after it was written"
    tier_records = read_topic(config, retry_topic(0), timeout_ms=1000)
    assert tier_records and dict(tier_records[0].headers)["mf-attempts"] == b"1"
    assert dead_letters(config) == []


def test_permanent_failure_is_dead_lettered_with_its_reason_and_requeue_delivers(
    tmp_path: Path,
    kafka_config: KafkaConfig,
    sink: SmtpSink,
    ca: LoopbackCA,
    start_worker: Callable[..., RunningWorker],
) -> None:
    config = smtp_config(tmp_path, kafka_config, sink, ca)
    sink.handler.replies["gone@acme.example"] = "550 5.1.1 no such user here"
    publish(config, [delivery_record("gone@acme.example", sample_message(1, "gone@acme.example"))])
    worker = start_worker(config)
    worker.wait_for(lambda: bool(dead_letters(config)))
    [letter] = dead_letters(config)
    assert (letter["error_class"], letter["reason_code"]) == ("permanent", "recipient-refused")
    assert "no such user here" in letter["error_message"] and "gone@acme.example" in letter["error_message"]
    assert letter["attempts"] == 1
    assert (
        letter["origin_topic"].endswith(".deliver") and letter["delivery"]["recipient"] == "gone@acme.example"
    )

    runner = CliRunner()
    config_file = str(tmp_path / "mailferry.toml")
    listed = runner.invoke(app, ["-c", config_file, "dlq", "list", "--json", "--error-class", "permanent"])
    assert listed.exit_code == 0, listed.output
    assert [e["id"] for e in json.loads(listed.output)["dead_letters"]] == [letter["dead_letter_id"]]
    refused = runner.invoke(app, ["-c", config_file, "dlq", "requeue"])
    assert refused.exit_code != 0  # neither ids nor a filter: refuses to requeue everything

    del sink.handler.replies["gone@acme.example"]  # the mailbox was created
    requeued = runner.invoke(app, ["-c", config_file, "dlq", "requeue", letter["dead_letter_id"]])
    assert requeued.exit_code == 0, requeued.output
    worker.wait_for(lambda: sink.handler.count() == 1)
    worker.shutdown()
    assert sink.handler.accepted[0].rcpt_tos == ["gone@acme.example"]
    assert DeadLetterQueue(config, list(config.kafka.bootstrap_servers)).find(Filter()) == []
    shown = runner.invoke(app, ["-c", config_file, "dlq", "show", letter["dead_letter_id"]])
    assert json.loads(shown.output)["status"] == "requeued"


def test_retries_past_the_horizon_end_in_the_dlt(
    tmp_path: Path,
    kafka_config: KafkaConfig,
    sink: SmtpSink,
    ca: LoopbackCA,
    start_worker: Callable[..., RunningWorker],
) -> None:
    config = smtp_config(tmp_path, kafka_config, sink, ca, tiers='["1s"]', horizon="3s")
    sink.handler.replies["full@acme.example"] = "452 4.2.2 mailbox full"
    publish(config, [delivery_record("full@acme.example", sample_message(1, "full@acme.example"))])
    worker = start_worker(config)
    worker.wait_for(lambda: bool(dead_letters(config)))
    worker.shutdown()
    [letter] = dead_letters(config)
    assert (letter["error_class"], letter["reason_code"]) == ("transient-expired", "smtp-452")
    assert letter["attempts"] >= 2  # 3 on an idle machine; a slow second attempt ends sooner
    assert letter["origin_topic"].endswith(".deliver")  # the first record, not the last tier
    assert (letter["failed_at"] - letter["first_failed_at"]).total_seconds() >= 0.9


def test_discard_takes_a_dead_letter_off_the_list(
    tmp_path: Path,
    kafka_config: KafkaConfig,
    sink: SmtpSink,
    ca: LoopbackCA,
    start_worker: Callable[..., RunningWorker],
) -> None:
    config = smtp_config(tmp_path, kafka_config, sink, ca)
    sink.handler.replies["gone@acme.example"] = "550 5.1.1 no such user"
    publish(
        config,
        [delivery_record("gone@acme.example", sample_message(i, "gone@acme.example")) for i in range(3)],
    )
    worker = start_worker(config)
    worker.wait_for(lambda: len(dead_letters(config)) == 3)
    worker.shutdown()
    queue = DeadLetterQueue(config, list(config.kafka.bootstrap_servers))
    first = queue.find(Filter())[0]
    assert queue.discard([first], note="spam") == 1
    assert {e.id for e in queue.find(Filter())} == {d["dead_letter_id"] for d in dead_letters(config)} - {
        first.id
    }
    everything = queue.find(Filter(include_done=True))
    assert {e.status for e in everything} == {"dead", "discarded"}


def test_bad_credentials_pause_the_tenant_and_fixed_credentials_resume_it(
    tmp_path: Path,
    kafka_config: KafkaConfig,
    sink: SmtpSink,
    ca: LoopbackCA,
    start_worker: Callable[..., RunningWorker],
) -> None:
    config = smtp_config(tmp_path, kafka_config, sink, ca, tenants=("acme", "globex"))
    (tmp_path / "acme.pw").write_text("expired")
    records = [delivery_record(f"u{i}@acme.example", sample_message(i, "x"), tenant="acme") for i in range(3)]
    records += [delivery_record("g@globex.example", sample_message(9, "g"), tenant="globex")]
    publish(config, records)
    worker = start_worker(config, credential_retry=__import__("datetime").timedelta(seconds=1))

    def paused() -> dict[str, Any]:
        for snap in read_snapshots(config.state_dir):
            if snap["role"] == "deliver" and snap.get("paused_tenants"):
                return dict(snap["paused_tenants"])
        return {}

    worker.wait_for(lambda: "acme" in paused())
    sink.wait_for(1)
    assert [a.rcpt_tos for a in sink.handler.accepted] == [["g@globex.example"]]  # other tenants flow
    assert paused()["acme"]["reason"] == "bad-credentials"
    assert dead_letters(config) == []
    assert events_named(config, "paused")
    (tmp_path / "acme.pw").write_text("s3cret")  # the operator fixes the secret
    worker.wait_for(lambda: sink.handler.count() == 4)
    worker.wait_for(lambda: not paused())
    worker.shutdown()
    assert sorted(a.rcpt_tos[0] for a in sink.handler.accepted) == sorted(r["recipient"] for r in records)
    assert events_named(config, "resumed")


def test_crash_between_delivery_and_commit_does_not_deliver_twice(
    tmp_path: Path,
    kafka_config: KafkaConfig,
    sink: SmtpSink,
    ca: LoopbackCA,
    start_worker: Callable[..., RunningWorker],
) -> None:
    config = smtp_config(tmp_path, kafka_config, sink, ca)
    records = [delivery_record(f"u{i}@acme.example", sample_message(i, "x")) for i in range(6)]
    publish(config, records)
    crashed = start_worker(config, worker_class=NeverCommits)
    crashed.wait_for(lambda: len(events_named(config, "delivered")) == 6)
    crashed.shutdown()
    assert sink.handler.count() == 6

    worker = start_worker(config)  # sees all six records again: nothing was committed
    worker.wait_for(lambda: len(events_named(config, "skipped")) == 6)
    worker.shutdown()
    assert sink.handler.count() == 6


def test_requeue_to_another_target_of_the_tenant(
    tmp_path: Path,
    kafka_config: KafkaConfig,
    sink: SmtpSink,
    ca: LoopbackCA,
    start_worker: Callable[..., RunningWorker],
) -> None:
    (tmp_path / "acme.pw").write_text("s3cret")
    archive = tmp_path / "archive"
    targets = (
        f'[[targets]]\nname = "exchange"\nkind = "smtp"\nhost = "127.0.0.1"\nport = {sink.port}\n'
        f'ca_file = "{ca.ca_file}"\nusername = "mailferry"\npassword = "file:{tmp_path}/{{tenant}}.pw"\n'
        + maildir_target(archive)
    )
    config = make_config(tmp_path, kafka_config, targets)
    sink.handler.replies["gone@acme.example"] = "550 5.1.1 no such user"
    publish(config, [delivery_record("gone@acme.example", sample_message(1, "gone@acme.example"))])
    worker = start_worker(config)
    worker.wait_for(lambda: bool(dead_letters(config)))
    queue = DeadLetterQueue(config, list(config.kafka.bootstrap_servers))
    with pytest.raises(Exception, match="no target"):
        queue.requeue(queue.find(Filter(tenant="acme")), target="nowhere")
    assert queue.requeue(queue.find(Filter(tenant="acme", error_class="permanent")), target="archive") == 1
    worker.wait_for(lambda: bool(maildir_files(archive, "gone@acme.example")))
    worker.shutdown()
    assert sink.handler.count() == 0
    assert queue.find(Filter(tenant="acme")) == []
