"""Failures around the fetcher: Kafka going away mid-poll, a fetch worker killed."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mailferry.config.kafka import EmbeddedKafka, KafkaConfig
from mailferry.config.loader import load_config
from mailferry.config.sources import Pop3Source
from mailferry.errors import TransientError
from mailferry.kafka.embedded import EmbeddedBroker
from mailferry.kafka.topics import AUDIT, RAW
from mailferry.producers.mailboxes import sync_mailboxes
from mailferry.producers.pop3_fetch import pop3_pass
from mailferry.producers.state import MailboxState
from mailferry_testkit.dovecot import DovecotServer
from tests.fetch.helpers import make_config, make_context, message_bytes, read_topic, sample
from tests.fetch.test_worker import _wait, snapshots, start_worker

pytestmark = pytest.mark.integration


def _pop3_toml(dovecot: DovecotServer, user: str) -> str:
    return (
        f'[[tenants.sources]]\nid = "{user}"\nkind = "pop3"\nmode = "personal"\nhost = "127.0.0.1"\n'
        f'port = {dovecot.pop3s_port}\ntls = "implicit"\nca_file = "{dovecot.ca_file}"\nusername = "{user}"\n'
        'auth = { kind = "password", password = "pw" }\ndeliver_to = "alice@acme.example"\n'
        'poll_interval = "1s"\n'
    )


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A second broker this test may stop and start (the session broker stays up)."""
    broker = EmbeddedBroker(EmbeddedKafka(port=0, controller_port=0), tmp_path / "kafka")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def test_broker_down_during_a_poll_deletes_nothing_and_resumes(
    dovecot: DovecotServer, own_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    kafka = own_broker.client_config(KafkaConfig(topic_prefix="down"))
    dovecot.add_user("r-down", "pw")
    config = make_config(tmp_path, kafka, _pop3_toml(dovecot, "r-down"))
    source = config.tenants[0].sources[0]
    assert isinstance(source, Pop3Source)
    ctx = make_context(
        config, delivery_timeout_ms=5000, request_timeout_ms=2000, max_block_ms=4000, linger_ms=5
    )
    ctx.confirm_timeout = 10
    state = MailboxState("acme", "r-down")
    dovecot.seed("r-down", [sample(0)])
    assert pop3_pass(source, "acme", state, ctx).fetched == 1

    dovecot.seed("r-down", [sample(i) for i in range(1, 4)])
    own_broker.stop()
    with pytest.raises(TransientError):
        pop3_pass(source, "acme", state, ctx)
    assert dovecot.message_count("r-down") == 3

    own_broker.start()
    # as the scheduler does: the pass is retried (with back-off) until Kafka takes records
    # again; a restarted broker may refuse them for a while (leaders not elected yet)
    deadline = time.monotonic() + 90
    while True:
        try:
            result = pop3_pass(source, "acme", state, ctx)
            break
        except TransientError:
            assert dovecot.message_count("r-down") == 3
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    assert result.deleted == 3 and dovecot.message_count("r-down") == 0
    raw = read_topic(kafka, RAW)
    assert {message_bytes(r, ctx.blobs) for r in raw} == {sample(i) for i in range(4)}
    ctx.publisher.close()


def test_rebalance_and_kill_never_poll_a_mailbox_twice_at_once(
    kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    """A second worker joins (rebalance), then one is killed (take-over). Dovecot locks POP3
    sessions here, so two workers polling one mailbox at once would show as IN-USE errors."""
    dovecot = DovecotServer(tmp_path / "dovecot", pop3_lock_session=True).start()
    users = [f"r-w{i}" for i in range(6)]
    for user in users:
        dovecot.add_user(user, "pw")
    make_config(tmp_path, kafka_config, "".join(_pop3_toml(dovecot, u) for u in users), partitions=6)
    path = tmp_path / "mailferry.toml"
    config = load_config(path)
    sync_mailboxes(config, list(kafka_config.bootstrap_servers))
    workers: dict[int, subprocess.Popen[bytes]] = {}

    def owners() -> dict[int, set[str]]:
        found: dict[int, set[str]] = {}
        for snap in snapshots(config.state_dir):
            pid = snap["pid"]
            if pid in workers and workers[pid].poll() is None and snap.get("state") == "running":
                found[pid] = set(snap["mailboxes"])  # type: ignore[arg-type]
        return found

    def owned_by(count: int) -> Callable[[], bool]:
        return lambda: len(owners()) == count and sum(len(v) for v in owners().values()) == 6

    def seed_and_wait(round_: int, who: list[str]) -> None:
        for index, user in enumerate(who):
            dovecot.seed(user, [sample(round_ * 100 + index)])
        _wait(lambda: all(dovecot.message_count(u) == 0 for u in who), 90, f"round {round_}")

    try:
        first = start_worker(path, tmp_path / "a.log")
        workers[first.pid] = first
        _wait(owned_by(1), 60, "the first worker")
        seed_and_wait(1, users)
        second = start_worker(path, tmp_path / "b.log")
        workers[second.pid] = second
        _wait(owned_by(2), 60, "the rebalance")
        split = owners()
        assert not set.intersection(*split.values())
        seed_and_wait(2, users)

        victim = max(split, key=lambda pid: len(split[pid]))
        survivor = next(pid for pid in workers if pid != victim)
        workers[victim].send_signal(signal.SIGKILL)
        workers[victim].wait(timeout=10)
        orphaned = [key.split("/")[1] for key in split[victim]]
        seed_and_wait(3, orphaned)
        assert owners()[survivor] == {f"acme/{u}" for u in users}
    finally:
        for process in workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
        dovecot.remove()
    raw = read_topic(kafka_config, RAW)
    uids = [(r["mailbox_id"], r["source_uid"]) for r in raw]
    assert len(uids) == len(set(uids)) == 12 + len(orphaned)  # nothing fetched twice, nothing lost
    errors = [e["details"] for e in read_topic(kafka_config, AUDIT) if e["event"] in ("error", "paused")]
    assert errors == []  # in particular no "-ERR [IN-USE]": never two sessions on one mailbox
