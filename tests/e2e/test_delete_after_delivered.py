"""``delete_when = "delivered"`` end to end: real Dovecot, the real broker, the real roles.

Fetch and stream run first, without a delivery worker: the messages are in Kafka and routed,
yet they must stay on the server. Once a delivery worker has written them into the Maildir
(every recipient), the fetcher deletes them at the source.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mailferry.config import load_config
from mailferry.config.kafka import KafkaConfig
from mailferry.consumers.targets.maildir import mailbox_dirname
from mailferry.kafka.topics import AUDIT
from mailferry_testkit.dovecot import DovecotServer
from tests.fetch.helpers import read_topic

pytestmark = pytest.mark.integration
RECIPIENTS = ("bob@acme.example", "carol@acme.example", "alice@acme.example")


def _message(n: int, to: str) -> bytes:
    return (
        f"Message-ID: <strict{n}@delete.test>\r\nFrom: someone@elsewhere.example\r\nTo: {to}\r\n"
        f"Subject: strict {n}\r\n\r\nbody {n}\r\n"
    ).encode()


def _config(root: Path, dovecot: DovecotServer, kafka: KafkaConfig) -> Path:
    common = (
        f'host = "127.0.0.1"\nca_file = "{dovecot.ca_file}"\npoll_interval = "1s"\n'
        'delete_when = "delivered"\n'
    )
    text = f"""\
allow_plaintext_secrets = true
state_dir = "{root / "state"}"
{kafka.model_copy(update={"topic_prefix": f"strict{uuid.uuid4().hex[:8]}"}).connection_toml()}[stream]
web_port = 0
[[tenants]]
id = "acme"
accepted_domains = ["acme.example"]
default_mailbox = "postmaster@acme.example"
default_target = "archive"
[[tenants.targets]]
name = "archive"
kind = "maildir"
path = "{root / "maildir"}"
[[tenants.sources]]
id = "catchall"
kind = "imap"
mode = "global"
guess_from_headers = true
port = {dovecot.imaps_port}
username = "strict-imap"
auth = {{ kind = "password", password = "pw" }}
{common}
[[tenants.sources]]
id = "alice-pop3"
kind = "pop3"
mode = "personal"
deliver_to = "alice@acme.example"
port = {dovecot.pop3s_port}
username = "strict-pop3"
auth = {{ kind = "password", password = "pw" }}
{common}"""
    path = root / "mailferry.toml"
    path.write_text(text, encoding="utf-8")
    return path


class Roles:
    """``mailferry run --role ...`` children, stopped with SIGINT as a person would."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.children: list[subprocess.Popen[bytes]] = []

    def start(self, *roles: str) -> None:
        argv = [sys.executable, "-m", "mailferry", "-c", str(self.config), "run"]
        with self.log.open("ab") as out:
            self.children.append(
                subprocess.Popen(
                    [*argv, *(a for r in roles for a in ("--role", r))], stdout=out, stderr=subprocess.STDOUT
                )
            )

    def stop(self) -> None:
        for child in self.children:
            child.send_signal(signal.SIGINT)
        for child in self.children:
            try:
                child.wait(timeout=90)
            except subprocess.TimeoutExpired:
                child.kill()


@pytest.fixture
def setup(tmp_path: Path, kafka_config: KafkaConfig) -> Iterator[tuple[DovecotServer, Path, Roles]]:
    dovecot = DovecotServer(tmp_path / "dovecot").start()
    roles = Roles(_config(tmp_path, dovecot, kafka_config), tmp_path / "roles.log")
    try:
        yield dovecot, tmp_path, roles
    finally:
        roles.stop()
        dovecot.remove()


def _until(what: Callable[[], bool], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, log.read_text(errors="replace")[-4000:]
        time.sleep(0.5)


def _maildir_count(root: Path) -> int:
    folders = [root / "maildir" / mailbox_dirname(a) for a in RECIPIENTS]
    return sum(
        1 for f in folders for sub in ("new", "cur") if (f / sub).is_dir() for _ in (f / sub).iterdir()
    )


def test_messages_stay_on_the_server_until_every_recipient_has_them(
    setup: tuple[DovecotServer, Path, Roles],
) -> None:
    dovecot, root, roles = setup
    dovecot.add_user("strict-imap", "pw")
    dovecot.add_user("strict-pop3", "pw")
    dovecot.seed("strict-imap", [_message(1, "bob@acme.example, carol@acme.example")])
    dovecot.seed("strict-pop3", [_message(2, "alice@acme.example")])
    kafka = load_config(roles.config).kafka
    log = root / "roles.log"

    def events(kind: str) -> list[dict[str, Any]]:
        return [e for e in read_topic(kafka, AUDIT, 1000) if e["event"] == kind]

    roles.start("fetch", "stream")  # no delivery worker yet
    _until(lambda: len(events("routed")) == 3, 120, log)
    time.sleep(5)  # five more passes of each mailbox
    assert dovecot.message_count("strict-imap") == 1 and dovecot.message_count("strict-pop3") == 1
    assert events("source-deleted") == [] and _maildir_count(root) == 0

    roles.start("deliver")
    _until(lambda: dovecot.message_count("strict-imap") + dovecot.message_count("strict-pop3") == 0, 120, log)
    assert _maildir_count(root) == 3
    delivered = events("delivered")
    assert sorted(e["recipient"] for e in delivered) == sorted(RECIPIENTS)
    deleted = events("source-deleted")
    assert sorted(e["mailbox_id"] for e in deleted) == ["alice-pop3", "catchall"]
    for gone in deleted:  # each message went only after its last recipient had it
        assert gone["at"] >= max(e["at"] for e in delivered if e["sha256"] == gone["sha256"])
