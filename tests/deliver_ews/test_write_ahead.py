"""Write-ahead delivery under ``kill -9`` (docs/reliability.md), on the real broker.

A deliver role runs as its own process and SIGKILLs itself at a named crash point
(``MAILFERRY_CRASH_POINT``); then a fresh worker takes over and the copies are counted at the
target: the EWS EMULATOR and the GRAPH EMULATOR (not Microsoft Exchange / Graph) and an
aiosmtpd sink.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mailferry.config import MailferryConfig
from mailferry.config.kafka import KafkaConfig
from mailferry.consumers import crashpoints
from mailferry_testkit.ews_emulator.faults import Fault
from mailferry_testkit.ews_emulator.server import EwsEmulator
from mailferry_testkit.graph_emulator import GraphEmulator

from ..deliver.conftest import (
    NeverCommits,
    RunningWorker,
    crash_at,
    delivery_record,
    events_named,
    make_config,
    publish,
    sample_message,
)
from ..deliver.smtp_sink import SmtpSink, make_test_ca
from .workers import ews_targets, graph_targets

pytestmark = pytest.mark.integration
MAILBOXES = [f"u{i}@acme.example" for i in range(3)]


def finish(
    start_worker: Callable[..., RunningWorker], config: MailferryConfig, done: int = len(MAILBOXES)
) -> list[dict[str, Any]]:
    """A fresh worker until every delivery has a delivered event; those events.

    It joins a group of its own: in the killed worker's group the dead member would hold
    its partitions until its session times out (45 s per test). Starting from the earliest
    offsets it reads at least what a restart in that group would (the ledger does the rest).
    """
    worker = start_worker(config, group_id=f"{config.kafka.topic_prefix}.after-crash")
    worker.wait_for(lambda: len({e["recipient"] for e in events_named(config, "delivered")}) == done)
    worker.shutdown()
    return events_named(config, "delivered")


@pytest.mark.parametrize("kind", ["ews", "graph-import-mime", "graph-json"])
def test_kill_between_target_write_and_ledger_ack_leaves_one_copy(
    tmp_path: Path,
    kafka_config: KafkaConfig,
    start_exchange: Callable[..., EwsEmulator],
    start_graph: Callable[..., GraphEmulator],
    start_worker: Callable[..., RunningWorker],
    kind: str,
) -> None:
    """The crash the issue describes: the target has the message, the ledger does not. The
    next worker finds the attempt without an outcome, asks the target, and writes nothing."""
    target: EwsEmulator | GraphEmulator
    if kind == "ews":
        target = start_exchange(MAILBOXES)
        targets = ews_targets(target)
    else:
        target = start_graph(MAILBOXES)
        targets = graph_targets(target, kind.removeprefix("graph-"))
    config = make_config(tmp_path, kafka_config, targets)

    def copies() -> list[int]:
        return [len(target.items(m)) for m in MAILBOXES]

    publish(config, [delivery_record(m, sample_message(i, m)) for i, m in enumerate(MAILBOXES)])
    crash_at(tmp_path, crashpoints.AFTER_TARGET_WRITE)
    assert sum(copies()) >= 1  # the killed attempt did write
    delivered = finish(start_worker, config)
    assert copies() == [1, 1, 1]
    found = [e for e in delivered if "found" in e["details"]]
    assert found, "the interrupted attempt was not checked at the target"


def test_smtp_kill_before_the_final_dot_leaves_one_copy(
    tmp_path: Path, kafka_config: KafkaConfig, start_worker: Callable[..., RunningWorker]
) -> None:
    """SMTP cannot be asked; the attempt is recorded right before the final dot, so a crash
    at that point leaves nothing at the server (it discards a transaction without its dot)."""
    with SmtpSink(make_test_ca(tmp_path / "ca"), require_starttls=False) as sink:
        config = make_config(tmp_path, kafka_config, _smtp_targets(sink))
        publish(config, [delivery_record(m, sample_message(i, m)) for i, m in enumerate(MAILBOXES)])
        crash_at(tmp_path, crashpoints.AFTER_WRITE_AHEAD)
        assert sink.handler.count() == 0
        finish(start_worker, config)
        assert sorted(r for a in sink.handler.accepted for r in a.rcpt_tos) == MAILBOXES


def test_smtp_kill_after_the_final_dot_is_the_documented_duplicate(
    tmp_path: Path, kafka_config: KafkaConfig, start_worker: Callable[..., RunningWorker]
) -> None:
    """The one window SMTP leaves: accepted, then killed before the ledger has it. The next
    pass cannot ask, delivers again (never loses) and says so in its delivered event."""
    with SmtpSink(make_test_ca(tmp_path / "ca"), require_starttls=False) as sink:
        config = make_config(tmp_path, kafka_config, _smtp_targets(sink, concurrency=1))
        publish(config, [delivery_record(m, sample_message(i, m)) for i, m in enumerate(MAILBOXES)])
        crash_at(tmp_path, crashpoints.AFTER_TARGET_WRITE)
        assert sink.handler.count() == 1  # one pool thread: one message in the window
        delivered = finish(start_worker, config)
        recipients = sorted(r for a in sink.handler.accepted for r in a.rcpt_tos)
        assert len(recipients) == len(MAILBOXES) + 1
        assert sorted(set(recipients)) == MAILBOXES
        [noted] = [e for e in delivered if "possible duplicate" in e["details"].get("note", "")]
        assert recipients.count(noted["recipient"]) == 2


def _smtp_targets(sink: SmtpSink, concurrency: int = 2) -> str:
    return (
        f'[[targets]]\nname = "relay"\nkind = "smtp"\nhost = "127.0.0.1"\nport = {sink.port}\n'
        f'tls = "none"\ntimeout = "5s"\nconcurrency = {concurrency}\n'
    )


def test_the_original_of_a_retry_record_is_skipped_when_read_again(
    tmp_path: Path,
    kafka_config: KafkaConfig,
    start_exchange: Callable[..., EwsEmulator],
    start_worker: Callable[..., RunningWorker],
) -> None:
    """A worker fails once (Exchange busy), writes the retry record and dies before its
    offset commit: the original is read again next to its retry record. Only the retry
    record may deliver; the original is stale (the ledger says the delivery moved)."""
    exchange = start_exchange(MAILBOXES)
    config = make_config(tmp_path, kafka_config, ews_targets(exchange), tiers='["6s"]')
    exchange.inject(Fault.SERVER_BUSY, operation="CreateItem", back_off_ms=10)
    publish(config, [delivery_record(MAILBOXES[0], sample_message(0, MAILBOXES[0]))])
    never_commits = start_worker(config, worker_class=NeverCommits)
    never_commits.wait_for(lambda: bool(events_named(config, "retried")))
    never_commits.shutdown()  # before the retry record is due (6 s), nothing committed
    assert not events_named(config, "delivered")

    [delivered] = finish(start_worker, config, done=1)
    assert delivered["details"]["attempts"] == "2"  # by the retry record
    skipped = [e for e in events_named(config, "skipped") if "superseded" in e["details"]["reason"]]
    assert len(skipped) == 1
    assert len(exchange.items(MAILBOXES[0])) == 1
