"""The pipeline across two "hosts" on a real 3-broker cluster while a partition leader is
``kill -9``'d and restarted: every (message, recipient) is delivered exactly once.

Host A runs ``mailferry run --role fetch`` against a real Dovecot; host B runs ``mailferry run
--role stream --role deliver`` into the EWS EMULATOR (driven by the real exchangelib). Each host
has its own state folder and process tree; they share nothing but the Kafka cluster. Topics
are replicated 3 times with ``min.insync.replicas = 2``, producers ``acks=all`` and idempotent.
Some messages are above the inline threshold: their content travels through the ``blobs``
topic (``[blob_store] kind = "kafka"``), since host B cannot read host A's disk.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailferry.config.kafka import KafkaConfig
from mailferry.kafka.topics import DELIVER, RAW, full_name
from mailferry_testkit.dovecot import DovecotServer
from mailferry_testkit.ews_emulator.server import EwsEmulator
from mailferry_testkit.kafka_cluster import KafkaCluster

# its own waits add up to 540 s on a loaded machine (cluster start, two batches, a broker restart):
# the suite-wide 300 s would cut it short before they decide
pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(900),
]
USERS = ("ann@acme.example", "ben@acme.example", "cat@acme.example", "dan@acme.example")
SERVICE, SERVICE_PASSWORD = "svc-mailferry", "svc-password"
BATCH = 40
LARGE_EVERY = 10  # every tenth message carries a 1.5 MB attachment (threshold: 512 KiB)


def _message(index: int, recipients: tuple[str, ...], attachment: bytes | None) -> bytes:
    msg = EmailMessage()
    for recipient in recipients:
        msg["Delivered-To"] = recipient
    msg["From"] = "sender@elsewhere.example"
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = f"cluster test {index}"
    msg["Message-ID"] = f"<{index}.{uuid.uuid4().hex[:8]}@cluster.test>"
    msg.set_content(f"message {index}\n" + "x" * 2000)
    if attachment is not None:
        msg.add_attachment(attachment, maintype="application", subtype="octet-stream", filename="big.bin")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def _batch(start: int) -> tuple[list[bytes], Counter[tuple[str, str]]]:
    """Messages and the (Message-ID, recipient) pairs they must produce, once each."""
    messages, wanted = [], Counter[tuple[str, str]]()
    for index in range(start, start + BATCH):
        recipient = USERS[index % len(USERS)]
        large = os.urandom(1536 * 1024) if index % LARGE_EVERY == 0 else None
        data = _message(index, (recipient,), large)
        messages.append(data)
        message_id = data.split(b"Message-ID: ", 1)[1].split(b"\r\n", 1)[0].decode()
        wanted[(message_id, recipient)] += 1
    return messages, wanted


def _config(host: Path, kafka: KafkaConfig, dovecot: DovecotServer, ews: EwsEmulator) -> Path:
    path = host / "mailferry.toml"
    path.write_text(
        f'state_dir = "{host / "state"}"\nallow_plaintext_secrets = true\n'
        + kafka.connection_toml()
        + "[kafka.topics.defaults]\npartitions = 3\nreplication_factor = 3\n"
        '[blob_store]\nkind = "kafka"\n[retry]\ntiers = ["2s", "10s"]\n[stream]\nweb_port = 0\n'
        '[[tenants]]\nid = "acme"\naccepted_domains = ["acme.example"]\n'
        'default_mailbox = "ann@acme.example"\ndefault_target = "exchange"\n'
        f'[[tenants.targets]]\nname = "exchange"\nkind = "ews"\nendpoint = "{ews.url}"\n'
        f'version = "Exchange2016"\nauth = "basic"\nusername = "{SERVICE}"\n'
        f'password = "{SERVICE_PASSWORD}"\nimpersonation = true\n'
        '[[tenants.sources]]\nid = "catchall"\nkind = "pop3"\nmode = "global"\nhost = "127.0.0.1"\n'
        f'port = {dovecot.pop3_port}\ntls = "none"\nallow_plaintext_login = true\nusername = "catchall"\n'
        'auth = { kind = "password", password = "catchall-pw" }\nenvelope_headers = ["Delivered-To"]\n'
        'poll_interval = "1s"\n',
        encoding="utf-8",
    )
    return path


class Host:
    """``mailferry run --role ...`` as a child process with a state folder of its own."""

    def __init__(self, config: Path, roles: list[str]) -> None:
        self.log = config.parent / "run.log"
        argv = [sys.executable, "-m", "mailferry", "-c", str(config), "run"]
        for role in roles:
            argv += ["--role", role]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def _delivered(ews: EwsEmulator) -> Counter[tuple[str, str]]:
    found = Counter[tuple[str, str]]()
    for user in USERS:
        for item in ews.items(user):
            found[(item.internet_message_id or "", user)] += 1
    return found


def _wait(ews: EwsEmulator, count: int, timeout: float, hosts: list[Host]) -> None:
    deadline = time.monotonic() + timeout
    while sum(_delivered(ews).values()) < count:
        if time.monotonic() > deadline:
            logs = "\n---\n".join(h.tail() for h in hosts)
            pytest.fail(f"{sum(_delivered(ews).values())} of {count} delivered in {timeout:.0f}s\n{logs}")
        time.sleep(0.5)


def test_two_hosts_deliver_exactly_once_while_a_leader_is_killed(
    cluster: KafkaCluster, tmp_path: Path
) -> None:
    kafka = cluster.client_config(KafkaConfig(topic_prefix=f"hosts{uuid.uuid4().hex[:6]}"))
    ews = EwsEmulator().start()
    dovecot = DovecotServer(tmp_path / "dovecot").start()
    hosts: list[Host] = []
    try:
        ews.add_account(SERVICE, SERVICE_PASSWORD)
        for user in USERS:
            ews.add_mailbox(user)
        dovecot.add_user("catchall", "catchall-pw")
        first, wanted = _batch(0)
        dovecot.seed("catchall", first)
        host_a, host_b = tmp_path / "host-a", tmp_path / "host-b"
        for host in (host_a, host_b):
            host.mkdir()
        hosts.append(Host(_config(host_b, kafka, dovecot, ews), ["stream", "deliver"]))
        hosts.append(Host(_config(host_a, kafka, dovecot, ews), ["fetch"]))
        _wait(ews, BATCH // 2, timeout=240, hosts=hosts)

        # kill -9 the node leading the most raw and deliver partitions, mid-flow
        leaders = Counter(
            [
                *cluster.leaders(full_name(kafka, RAW)).values(),
                *cluster.leaders(full_name(kafka, DELIVER)).values(),
            ]
        )
        victim = leaders.most_common(1)[0][0]
        cluster.kill(victim)
        second, more = _batch(BATCH)
        dovecot.seed("catchall", second)
        wanted += more
        time.sleep(10)
        cluster.restart(victim)

        _wait(ews, sum(wanted.values()), timeout=300, hosts=hosts)
        time.sleep(5)  # anything delivered twice would show up now
        delivered = _delivered(ews)
        assert delivered == wanted, {
            "missing": wanted - delivered,
            "twice or unexpected": delivered - wanted,
        }
        assert dovecot.message_count("catchall") == 0  # deleted at the source only after Kafka kept it
        large = [item for user in USERS for item in ews.items(user) if len(item.mime) > 1024 * 1024]
        assert len(large) == 2 * BATCH // LARGE_EVERY  # the large ones arrived whole, through Kafka
        assert not any(p.is_file() for p in (host_a / "state").rglob("*") if "blob" in str(p))
    finally:
        for host in reversed(hosts):
            host.stop()
        dovecot.stop()
        ews.stop()
