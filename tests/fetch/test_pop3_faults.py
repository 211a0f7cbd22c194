"""POP3 servers that misbehave in ways Dovecot will not on demand: a scripted loopback server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mailferry.config.kafka import KafkaConfig
from mailferry.config.sources import Pop3Source
from mailferry.errors import TransientError
from mailferry.kafka.topics import AUDIT, RAW
from mailferry.producers import pop3_client
from mailferry.producers.pop3_fetch import pop3_pass
from mailferry.producers.state import MailboxState
from tests.fetch.helpers import make_config, make_context, message_bytes, read_topic, sample
from tests.fetch.netfaults import FakePop3Server

pytestmark = pytest.mark.integration


def _source(kafka: KafkaConfig, tmp_path: Path, port: int, extra: str = "") -> tuple[Pop3Source, object]:
    toml = (
        '[[tenants.sources]]\nid = "fake"\nkind = "pop3"\nmode = "personal"\nhost = "127.0.0.1"\n'
        f'port = {port}\ntls = "none"\nallow_plaintext_login = true\nusername = "u"\n'
        'auth = { kind = "password", password = "pw" }\ndeliver_to = "alice@acme.example"\n' + extra
    )
    config = make_config(tmp_path, kafka, toml)
    source = config.tenants[0].sources[0]
    assert isinstance(source, Pop3Source)
    return source, config


def _mailbox(uidl: str, message: bytes) -> dict[str, bytes]:
    return {
        "UIDL": f"+OK\r\n1 {uidl}\r\n.\r\n".encode(),
        "LIST": f"+OK\r\n1 {len(message)}\r\n.\r\n".encode(),
        "RETR 1": b"+OK\r\n" + message.replace(b"\r\n.", b"\r\n..") + b".\r\n",  # dot-stuffed
        "TOP 1 0": b"+OK\r\n" + message[: message.index(b"\r\n\r\n") + 4] + b".\r\n",
    }


@pytest.mark.parametrize("leave_on_server", [False, True])
def test_a_reused_uidl_names_a_new_message_that_is_fetched_before_anything_is_deleted(
    kafka_config: KafkaConfig, tmp_path: Path, leave_on_server: bool
) -> None:
    first, second = sample(1), sample(2, size=500)
    server = FakePop3Server(_mailbox("reused-id", first))  # type: ignore[arg-type]
    source, config = _source(
        kafka_config, tmp_path, server.port, f"leave_on_server = {str(leave_on_server).lower()}\n"
    )
    ctx = make_context(config)  # type: ignore[arg-type]
    state = MailboxState("acme", "fake")
    try:
        assert pop3_pass(source, "acme", state, ctx).fetched == 1
        # the first message went away; the server gave its UIDL to the next one
        server.replies.update(_mailbox("reused-id", second))
        server.commands.clear()
        server.deleted.clear()

        again = pop3_pass(source, "acme", state, ctx)

        assert again.fetched == 1 and "RETR 1" in server.commands
        if not leave_on_server:
            assert server.commands.index("RETR 1") < server.commands.index("DELE 1")
        raw = read_topic(kafka_config, RAW)
        assert sorted(message_bytes(r, ctx.blobs) for r in raw) == sorted([first, second])
        assert state.pop3()["reused-id"]["size"] == len(second)
        assert pop3_pass(source, "acme", state, ctx).fetched == 0  # the same message: known
    finally:
        server.close()
        ctx.publisher.close()


def test_a_reused_uidl_on_a_message_of_the_same_size_is_not_deleted_unseen(
    kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    first, second = sample(1), sample(2)
    assert len(first) == len(second)  # the size cannot tell them apart
    server = FakePop3Server(_mailbox("reused-id", first))  # type: ignore[arg-type]
    source, config = _source(
        kafka_config, tmp_path, server.port, 'leave_on_server = true\ndelete_after = "1d"\n'
    )
    ctx = make_context(config)  # type: ignore[arg-type]
    state = MailboxState("acme", "fake")
    try:
        assert pop3_pass(source, "acme", state, ctx).fetched == 1 and server.deleted == []
        server.replies.update(_mailbox("reused-id", second))
        later = datetime.now(UTC) + timedelta(days=2)  # the first message is due for deletion
        ctx.now = lambda: later

        checked = pop3_pass(source, "acme", state, ctx)
        assert (checked.deleted, checked.errors) == (0, 1) and server.deleted == []
        again = pop3_pass(source, "acme", state, ctx)
        assert again.fetched == 1 and server.deleted == []  # fetched as new; its own clock starts
        raw = read_topic(kafka_config, RAW)
        assert sorted(message_bytes(r, ctx.blobs) for r in raw) == sorted([first, second])
        reused = [e for e in read_topic(kafka_config, AUDIT) if e["details"].get("reason") == "uidl-reused"]
        assert len(reused) == 1
    finally:
        server.close()
        ctx.publisher.close()


@pytest.mark.parametrize("command", ["UIDL", "LIST"])
def test_a_listing_without_end_is_refused_with_a_clear_error(
    kafka_config: KafkaConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    monkeypatch.setattr(pop3_client, "MAX_LISTING_LINES", 10_000)
    sent = [0]

    def endless() -> Iterator[bytes]:
        yield b"+OK\r\n"
        for block in range(100):  # 200,000 lines, twenty times the cap; never ends if read
            sent[0] += 1
            yield b"".join(b"%d uid-%d\r\n" % (n, n) for n in range(block * 2000 + 1, block * 2000 + 2001))
        yield b".\r\n"

    replies: dict[str, object] = {**_mailbox("one", sample(1)), command: endless}
    server = FakePop3Server(replies)  # type: ignore[arg-type]
    source, config = _source(kafka_config, tmp_path, server.port)
    ctx = make_context(config)  # type: ignore[arg-type]
    try:
        with pytest.raises(TransientError) as caught:
            pop3_pass(source, "acme", MailboxState("acme", "fake"), ctx)
        assert caught.value.reason_code == "reply-too-long"
        assert f"{command} reply is longer than 10,000 lines" in str(caught.value)
        assert server.deleted == [] and not any(c.startswith("RETR") for c in server.commands)
        assert read_topic(kafka_config, RAW, 1000) == []
    finally:
        server.close()
        ctx.publisher.close()
