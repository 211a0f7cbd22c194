"""The fetch role end to end: mailboxes sync, a worker process polling via the consumer group."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mailferry.config.kafka import KafkaConfig
from mailferry.config.loader import load_config
from mailferry.kafka.topics import AUDIT, RAW
from mailferry.producers.mailboxes import current_mailboxes, sync_mailboxes
from mailferry_testkit.dovecot import DovecotServer
from tests.fetch.helpers import make_config, read_topic, sample
from tests.fetch.netfaults import GarbageServer

pytestmark = pytest.mark.integration


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _broken(prefix: str, name: str, port: int) -> str:
    return (
        f'[[tenants.sources]]\nid = "{prefix}-{name}"\nkind = "pop3"\nmode = "personal"\n'
        f'host = "127.0.0.1"\nport = {port}\ntls = "none"\nallow_plaintext_login = true\n'
        'username = "x"\nauth = { kind = "password", password = "x" }\n'
        'deliver_to = "alice@acme.example"\npoll_interval = "1s"\n'
    )


def _write_config(
    tmp_path: Path, kafka: KafkaConfig, dovecot: DovecotServer, prefix: str, extra: str = ""
) -> Path:
    sources = extra + (
        f'[[tenants.sources]]\nid = "{prefix}-pop"\nkind = "pop3"\nmode = "personal"\nhost = "127.0.0.1"\n'
        f'port = {dovecot.pop3s_port}\ntls = "implicit"\nca_file = "{dovecot.ca_file}"\n'
        f'username = "{prefix}-pop"\nauth = {{ kind = "password", password = "pw" }}\n'
        'deliver_to = "alice@acme.example"\npoll_interval = "1s"\n'
        f'[[tenants.sources]]\nid = "{prefix}-imap"\nkind = "imap"\nmode = "global"\nhost = "127.0.0.1"\n'
        f'port = {dovecot.imap_port}\ntls = "starttls"\nca_file = "{dovecot.ca_file}"\n'
        f'username = "{prefix}-imap"\nauth = {{ kind = "password", password = "pw" }}\npoll_interval = "1s"\n'
        f'[[tenants.sources]]\nid = "{prefix}-bad"\nkind = "pop3"\nmode = "personal"\nhost = "127.0.0.1"\n'
        f'port = {dovecot.pop3s_port}\ntls = "implicit"\nca_file = "{dovecot.ca_file}"\n'
        f'username = "{prefix}-pop"\nauth = {{ kind = "password", password = "wrong" }}\n'
        'deliver_to = "alice@acme.example"\npoll_interval = "1s"\n'
    )
    make_config(tmp_path, kafka, sources)  # writes the file and creates the topics
    return tmp_path / "mailferry.toml"


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def start_worker(config_path: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mailferry", "-c", str(config_path), "fetch", "--status-every", "0.5"],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def snapshots(state_dir: Path) -> list[dict[str, object]]:
    out = []
    for path in (state_dir / "status").glob("fetch-*.json"):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return out


def test_sync_then_worker_fetches_both_kinds_and_stops_bad_credentials(
    dovecot: DovecotServer, kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    dovecot.add_user("w1-pop", "pw")
    dovecot.add_user("w1-imap", "pw")
    dovecot.seed("w1-pop", [sample(i) for i in range(3)])
    dovecot.seed("w1-imap", [sample(i) for i in range(10, 14)])
    garbage = GarbageServer()
    broken = _broken("w1", "unreachable", _closed_port()) + _broken("w1", "garbage", garbage.port)
    path = _write_config(tmp_path, kafka_config, dovecot, "w1", broken)
    config = load_config(path)
    servers = list(kafka_config.bootstrap_servers)

    cli = subprocess.run(
        [sys.executable, "-m", "mailferry", "mailboxes", "sync", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    assert "5 published, 0 unchanged, 0 removed" in cli.stdout
    again = sync_mailboxes(config, servers)
    assert len(again.unchanged) == 5 and not again.published

    worker = start_worker(path, tmp_path / "worker.log")
    try:
        _wait(lambda: dovecot.message_count("w1-pop") + dovecot.message_count("w1-imap") == 0, 60, "fetch")
        _wait(lambda: len(read_topic(kafka_config, RAW, 1000)) == 7, 30, "7 raw records")

        def reported(mailbox: str, state: str, reason: str) -> Callable[[], bool]:
            def check() -> bool:
                for snap in snapshots(config.state_dir):
                    box = snap.get("mailboxes", {}).get(f"acme/{mailbox}")  # type: ignore[union-attr]
                    if box and box["state"] == state and box["reason_code"] == reason:
                        return True
                return False

            return check

        _wait(reported("w1-bad", "paused", "bad-credentials"), 30, "the bad mailbox to pause")
        _wait(reported("w1-unreachable", "backoff", "unreachable"), 30, "unreachable reported")
        _wait(reported("w1-garbage", "backoff", "protocol"), 30, "garbage reply reported")
        dovecot.seed("w1-pop", [sample(20)])
        _wait(lambda: dovecot.message_count("w1-pop") == 0, 30, "the next poll")
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=60)
        garbage.close()
    assert code == 0, (tmp_path / "worker.log").read_text()[-3000:]
    assert len(read_topic(kafka_config, RAW)) == 8
    problems = {
        (e["mailbox_id"], e["event"], e["details"]["reason"])
        for e in read_topic(kafka_config, AUDIT)
        if e["event"] in ("error", "paused")
    }
    assert problems == {
        ("w1-bad", "paused", "bad-credentials"),
        ("w1-unreachable", "error", "unreachable"),
        ("w1-garbage", "error", "protocol"),
    }
    final = [s for s in snapshots(config.state_dir) if s.get("state") == "stopped"]
    assert final, "the worker writes a final status on exit"
    last = final[0]["mailboxes"]
    assert isinstance(last, dict)
    assert last["acme/w1-bad"]["reason_code"] == "bad-credentials", "a stopped worker still tells why"
    assert last["acme/w1-pop"]["last_poll"], "and when each mailbox was last polled"

    # removing a source from the config tombstones it
    text = path.read_text()
    path.write_text(text[: text.index('[[tenants.sources]]\nid = "w1-bad"')])
    removed = sync_mailboxes(load_config(path), servers)
    assert removed.removed == ["acme/w1-bad"]
    assert "acme/w1-bad" not in current_mailboxes(load_config(path), servers)


def test_fetch_with_two_processes_shares_the_mailboxes_and_stops_cleanly(
    dovecot: DovecotServer, kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    users = [f"mp{i}" for i in range(6)]
    sources = ""
    for index, user in enumerate(users):
        dovecot.add_user(user, "pw")
        dovecot.seed(user, [sample(100 * index + n) for n in range(3)])
        sources += (
            f'[[tenants.sources]]\nid = "{user}"\nkind = "pop3"\nmode = "personal"\nhost = "127.0.0.1"\n'
            f'port = {dovecot.pop3_port}\ntls = "none"\nallow_plaintext_login = true\nusername = "{user}"\n'
            'auth = { kind = "password", password = "pw" }\ndeliver_to = "alice@acme.example"\n'
            'poll_interval = "1s"\n'
        )
    make_config(tmp_path, kafka_config, sources)
    path = tmp_path / "mailferry.toml"
    config = load_config(path)
    sync_mailboxes(config, list(kafka_config.bootstrap_servers))
    log = tmp_path / "fetch.log"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mailferry",
            "-c",
            str(path),
            "fetch",
            "--processes",
            "2",
            "--status-every",
            "0.5",
        ],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )

    def workers() -> list[dict[str, object]]:
        return [
            s for s in snapshots(config.state_dir) if s.get("state") == "running" and s["pid"] != parent.pid
        ]

    def shared() -> bool:
        parts = [set(s["assigned_partitions"]) for s in workers()]  # type: ignore[call-overload]
        return len(parts) == 2 and all(parts) and not parts[0] & parts[1]

    try:
        _wait(shared, 90, "two worker processes, each with its own mailbox partitions")
        _wait(lambda: sum(dovecot.message_count(u) for u in users) == 0, 60, "every mailbox fetched")
        pids = {s["pid"] for s in workers()}
    finally:
        parent.send_signal(signal.SIGTERM)
        code = parent.wait(timeout=90)
    assert code == 0, log.read_text()[-3000:]
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    raws = read_topic(kafka_config, RAW)
    assert sorted(r["source_uid"] is not None for r in raws) == [True] * 18
    assert len({(r["mailbox_id"], r["sha256"]) for r in raws}) == 18


def test_sigusr1_makes_the_worker_poll_now_instead_of_at_its_timer(
    dovecot: DovecotServer, kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    dovecot.add_user("wake", "pw")
    dovecot.seed("wake", [sample(300)])
    source = (
        '[[tenants.sources]]\nid = "wake"\nkind = "pop3"\nmode = "personal"\nhost = "127.0.0.1"\n'
        f'port = {dovecot.pop3_port}\ntls = "none"\nallow_plaintext_login = true\nusername = "wake"\n'
        'auth = { kind = "password", password = "pw" }\ndeliver_to = "alice@acme.example"\n'
        'poll_interval = "1h"\nleave_on_server = false\n'
    )
    make_config(tmp_path, kafka_config, source)
    path = tmp_path / "mailferry.toml"
    sync_mailboxes(load_config(path), list(kafka_config.bootstrap_servers))
    worker = start_worker(path, tmp_path / "worker.log")
    try:
        _wait(lambda: dovecot.message_count("wake") == 0, 60, "the first pass")
        dovecot.seed("wake", [sample(301)])
        time.sleep(1.0)
        assert dovecot.message_count("wake") == 1, "the next pass is an hour away"
        worker.send_signal(signal.SIGUSR1)
        _wait(lambda: dovecot.message_count("wake") == 0, 20, "the pass SIGUSR1 asked for")
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=60)
    assert code == 0, (tmp_path / "worker.log").read_text()[-3000:]
    assert "poll requested: 1 mailbox(es) start a pass now" in (tmp_path / "worker.log").read_text()
