"""End to end: real Dovecot → fetch → real Kafka → stream → deliver → EWS EMULATOR and a Maildir.

Two tenants: acme with a personal POP3S mailbox delivered into the EWS emulator, globex with
a global IMAP catch-all delivered into a Maildir. Every stage runs as the role ``mailferry run``
supervises, in child processes, against the session broker.
"""

from __future__ import annotations

import mailbox
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.parser import BytesHeaderParser
from pathlib import Path

import pytest
from kafka import TopicPartition

from mailferry.audit_trace import trace
from mailferry.config import load_config
from mailferry.config.kafka import KafkaConfig
from mailferry.kafka.clients import new_consumer
from mailferry.kafka.embedded import EmbeddedBroker
from mailferry.kafka.topics import BLOBS, full_name
from mailferry_testkit.demo import (
    ACME_USERS,
    GLOBEX_ACCOUNT,
    GLOBEX_USERS,
    SERVICE_ACCOUNT,
    DemoEnvironment,
    mailbox_summary,
)

pytestmark = pytest.mark.integration


def mailferry(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailferry", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class MainJob:
    """``mailferry run`` as a person runs it: a child process stopped with Ctrl-C (SIGINT)."""

    def __init__(self, env: DemoEnvironment, log: Path) -> None:
        self.env, self.log = env, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mailferry", "-c", str(self.env.config_path), "run"],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def interrupt(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        finally:
            self.process = None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture
def job(tmp_path: Path, embedded_broker: EmbeddedBroker, request: pytest.FixtureRequest) -> Iterator[MainJob]:
    env = DemoEnvironment(tmp_path, globex_target=getattr(request, "param", "maildir"))
    env.start(kafka=embedded_broker.client_config(KafkaConfig(topic_prefix=f"e2e{uuid.uuid4().hex[:8]}")))
    main_job = MainJob(env, tmp_path / "run.log")
    main_job.start()
    try:
        yield main_job
    finally:
        if main_job.process is not None:
            main_job.interrupt()
        env.stop()


@pytest.fixture
def pipeline(job: MainJob) -> DemoEnvironment:
    return job.env


def message_id(data: bytes) -> str:
    return str(BytesHeaderParser().parsebytes(data)["Message-ID"])


def settle(env: DemoEnvironment, seconds: float = 4.0) -> Counter[str]:
    """What the mailboxes hold once nothing more arrives for a while."""
    last = env.delivered()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = env.delivered()
        if now != last:
            last, deadline = now, time.monotonic() + seconds
    return last


@pytest.mark.parametrize("job", ["ews"], indirect=True)
def test_every_message_reaches_each_recipient_once(pipeline: DemoEnvironment, tmp_path: Path) -> None:
    """Both tenants deliver into the EWS emulator, each with its own service account."""
    env = pipeline
    assert env.wait(240, lambda done, total: None), (tmp_path / "run.log").read_text(errors="replace")[-4000:]
    assert settle(env) == env.expected()

    # received, unread, not drafts; and nothing crosses tenants: each tenant's account wrote
    # only into its own mailboxes
    for users, account in ((ACME_USERS, SERVICE_ACCOUNT), (GLOBEX_USERS, GLOBEX_ACCOUNT)):
        for address in users:
            for item in env.ews.items(address):
                assert item.written_by.lower() == account
                assert item.message_flags == 1 and not item.is_read and item.folder.lower() == "inbox"
    assert sum(len(env.ews.items(a)) for a in ACME_USERS) == len(env.personal)
    assert not env.maildir_root.exists()

    # nothing left at the sources: deleted only after Kafka acknowledged
    assert env.dovecot.message_count("alice.private") == 0
    assert env.dovecot.message_count("catchall") == 0

    config = load_config(env.config_path)
    servers = list(config.kafka.bootstrap_servers)
    summary = mailbox_summary(config, servers)
    catchall = summary["globex/globex-catchall"]
    assert catchall["fetched"] == len(env.catchall)
    assert catchall["duplicate"] >= 1
    assert summary["acme/alice-isp"]["delivered"] == len(env.personal)

    bcc = next(m for m in env.catchall if m.name == "catchall-bcc-only")
    events = trace(config.kafka, servers, message_id(bcc.data), tenant="globex")
    kinds = [e["event"] for e in events]
    assert kinds[0] == "fetched" and "routed" in kinds and "delivered" in kinds and "source-deleted" in kinds
    routed = next(e for e in events if e["event"] == "routed")
    assert routed["recipient"] == "it@globex.example"
    assert "possible-lost-bcc" in " ".join(routed["details"].values())

    # the 2 MB attachment went through the blob store, kind kafka (the default with a
    # cluster): chunks in the blobs topic, nothing in a local folder the hosts would share
    assert config.blob_kind == "kafka"
    assert not (config.state_dir / "blobs").exists()
    consumer = new_consumer(config.kafka, servers)
    try:
        topic = full_name(config.kafka, BLOBS)
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        assert sum(consumer.end_offsets(parts).values()) >= 2  # 1 MiB chunks
    finally:
        consumer.close()


def test_import_is_deduplicated_and_replay_bypass_delivers_again(
    pipeline: DemoEnvironment, tmp_path: Path
) -> None:
    env = pipeline
    assert env.wait(240, lambda done, total: None), (tmp_path / "run.log").read_text(errors="replace")[-4000:]
    before = settle(env)
    assert before == env.expected()

    batch = tmp_path / "history.mbox"
    box = mailbox.mbox(batch)
    for message in env.catchall:
        box.add(message.data)
    box.flush()
    began = datetime.now(UTC) - timedelta(seconds=1)
    result = mailferry(
        env.config_path, "import", "mbox", str(batch), "--tenant", "globex", "--mailbox", "globex-catchall"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert settle(env, 8.0) == before  # already delivered: the import delivers nothing twice

    ended = datetime.now(UTC)
    result = mailferry(
        env.config_path,
        "replay",
        "--tenant",
        "globex",
        "--from",
        began.isoformat(),
        "--to",
        ended.isoformat(),
        "--bypass-dedup",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    deadline = time.monotonic() + 120
    again = before
    while time.monotonic() < deadline and again == before:
        time.sleep(1)
        again = env.delivered()
    again = settle(env)
    replayed = Counter[str]()
    for message in env.catchall:
        replayed.update(message.expected)
    # bypass-dedup re-delivers every message of the range, duplicates of the batch included
    assert again - before >= replayed
    assert all(address not in ACME_USERS for address in again - before)


def test_ctrl_c_in_the_middle_then_a_restart_delivers_each_message_once(job: MainJob) -> None:
    env = job.env
    deadline = time.monotonic() + 240
    while sum(env.delivered().values()) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert job.interrupt() == 0, job.tail()

    job.start()
    assert env.wait(240, lambda done, total: None), job.tail()
    assert settle(env) == env.expected()
