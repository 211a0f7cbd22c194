"""IMAP fetching against the real Dovecot and the real broker."""

from __future__ import annotations

import asyncio
import imaplib
import ssl
import threading
import time
from pathlib import Path

import pytest

from mailferry.config.kafka import KafkaConfig
from mailferry.config.sources import ImapSource
from mailferry.errors import TransientError
from mailferry.kafka.topics import AUDIT, RAW
from mailferry.producers import imap_fetch, imap_session
from mailferry.producers.context import FetchContext
from mailferry.producers.imap_fetch import imap_pass
from mailferry.producers.imap_idle import wait_for_mail
from mailferry.producers.imap_session import quote
from mailferry.producers.state import MailboxState
from mailferry_testkit.dovecot import DovecotServer
from tests.fetch.helpers import idle_scheduler, make_config, make_context, message_bytes, read_topic, sample
from tests.fetch.netfaults import CuttingProxy

pytestmark = pytest.mark.integration


def imap_source_toml(dovecot: DovecotServer, user: str, *, tls: str = "starttls", extra: str = "") -> str:
    port = {"implicit": dovecot.imaps_port, "starttls": dovecot.imap_port, "none": dovecot.imap_port}[tls]
    return (
        f'[[tenants.sources]]\nid = "{user}"\nkind = "imap"\nmode = "global"\nhost = "127.0.0.1"\n'
        f'port = {port}\ntls = "{tls}"\nca_file = "{dovecot.ca_file}"\nusername = "{user}"\n'
        'auth = { kind = "password", password = "pw" }\n' + extra
    )


def _imap(config: object) -> ImapSource:
    source = config.tenants[0].sources[0]  # type: ignore[attr-defined]
    assert isinstance(source, ImapSource)
    return source


def test_imap_starttls_two_folders_fetch_then_delete(
    dovecot: DovecotServer, kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    dovecot.add_user("i-basic", "pw")
    inbox = [sample(i) for i in range(4)] + [sample(50, size=300_000)]
    archive = [sample(i) for i in range(100, 103)]
    dovecot.seed("i-basic", inbox)
    dovecot.seed("i-basic", archive, folder="Archive")
    config = make_config(
        tmp_path, kafka_config, imap_source_toml(dovecot, "i-basic", extra='folders = ["INBOX", "Archive"]\n')
    )
    ctx = make_context(config)
    state = MailboxState("acme", "i-basic")

    result = imap_pass(_imap(config), "acme", state, ctx)

    assert (result.fetched, result.deleted) == (8, 8)
    assert dovecot.message_count("i-basic") == 0 and dovecot.message_count("i-basic", "Archive") == 0
    raw = read_topic(kafka_config, RAW)
    assert sorted(message_bytes(r, ctx.blobs) for r in raw) == sorted(inbox + archive)
    assert {r["folder"] for r in raw} == {"INBOX", "Archive"}
    events = [e["event"] for e in read_topic(kafka_config, AUDIT)]
    assert events.count("fetched") == 8 and events.count("source-deleted") == 8

    dovecot.seed("i-basic", [sample(7)])
    again = imap_pass(_imap(config), "acme", state, ctx)
    assert again.fetched == 1
    ctx.publisher.close()


def _setup(
    dovecot: DovecotServer,
    kafka: KafkaConfig,
    tmp_path: Path,
    user: str,
    messages: list[bytes],
    *,
    tls: str = "starttls",
    extra: str = "",
) -> tuple[ImapSource, FetchContext, MailboxState]:
    dovecot.add_user(user, "pw")
    dovecot.seed(user, messages)
    config = make_config(tmp_path, kafka, imap_source_toml(dovecot, user, tls=tls, extra=extra))
    return _imap(config), make_context(config), MailboxState("acme", user)


def _flags(dovecot: DovecotServer, user: str, folder: str = "INBOX") -> list[bytes]:
    imap = imaplib.IMAP4_SSL(
        "127.0.0.1", dovecot.imaps_port, ssl_context=ssl.create_default_context(cafile=str(dovecot.ca_file))
    )
    imap.login(user, "pw")
    imap.select(quote(folder), readonly=True)
    _, data = imap.fetch("1:*", "(FLAGS)")
    imap.logout()
    return [d for d in data if isinstance(d, bytes)]


def test_imaps_move_and_large_message_in_ranges(
    dovecot: DovecotServer, kafka_config: KafkaConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imap_session, "PART_SIZE", 100_000)
    big = sample(1, size=450_000)
    extra = 'after_fetch = "move"\nmove_to = "Fetched"\n'
    source, ctx, state = _setup(
        dovecot, kafka_config, tmp_path, "i-move", [big, sample(2)], tls="implicit", extra=extra
    )
    dovecot.seed("i-move", [], folder="Fetched")
    result = imap_pass(source, "acme", state, ctx)
    assert (result.fetched, result.moved) == (2, 2)
    assert dovecot.message_count("i-move") == 0 and dovecot.message_count("i-move", "Fetched") == 2
    raw = read_topic(kafka_config, RAW)
    blob = [r for r in raw if r["blob_ref"]]
    assert len(blob) == 1 and message_bytes(blob[0], ctx.blobs) == big
    ctx.publisher.close()


def test_mark_seen_and_nothing_keep_mail_and_fetch_once(
    dovecot: DovecotServer, kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    source, ctx, state = _setup(
        dovecot, kafka_config, tmp_path, "i-seen", [sample(1), sample(2)], extra='after_fetch = "seen"\n'
    )
    assert imap_pass(source, "acme", state, ctx).fetched == 2
    assert dovecot.message_count("i-seen") == 2
    assert all(b"\\Seen" in f for f in _flags(dovecot, "i-seen"))
    assert imap_pass(source, "acme", state, ctx).fetched == 0
    dovecot.add_user("i-none", "pw")
    dovecot.seed("i-none", [sample(3)])
    untouched = source.model_copy(update={"username": "i-none", "id": "i-none", "after_fetch": "none"})
    other_state = MailboxState("acme", "i-none")
    assert imap_pass(untouched, "acme", other_state, ctx).fetched == 1
    assert imap_pass(untouched, "acme", other_state, ctx).fetched == 0
    assert not any(b"\\Seen" in f for f in _flags(dovecot, "i-none"))
    assert len(read_topic(kafka_config, RAW)) == 3
    ctx.publisher.close()


def test_uidvalidity_change_is_detected_and_does_not_republish(
    dovecot: DovecotServer, kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    source, ctx, state = _setup(
        dovecot, kafka_config, tmp_path, "i-uv", [sample(1), sample(2)], extra='after_fetch = "none"\n'
    )
    assert imap_pass(source, "acme", state, ctx).fetched == 2
    new_validity = dovecot.change_uidvalidity("i-uv")
    dovecot.seed("i-uv", [sample(3)])
    result = imap_pass(source, "acme", state, ctx)
    assert (result.fetched, result.skipped) == (1, 2)
    assert any("UIDVALIDITY changed" in note for note in result.notes)
    raw = read_topic(kafka_config, RAW)
    assert sorted(message_bytes(r, ctx.blobs) for r in raw) == sorted([sample(1), sample(2), sample(3)])
    cursor = state.cursor("INBOX")
    assert cursor is not None and cursor["uidvalidity"] == new_validity
    assert {v for v, _ in state.imap("INBOX")} == {new_validity}
    assert imap_pass(source, "acme", state, ctx).fetched == 0
    ctx.publisher.close()


def test_size_limit_headers_notice(dovecot: DovecotServer, kafka_config: KafkaConfig, tmp_path: Path) -> None:
    extra = 'max_message_size = "4KiB"\noversize_action = "headers-notice"\n'
    big = sample(1, size=20_000)
    source, ctx, state = _setup(dovecot, kafka_config, tmp_path, "i-size", [big, sample(2)], extra=extra)
    result = imap_pass(source, "acme", state, ctx)
    assert (result.fetched, result.skipped, result.deleted) == (1, 1, 1)
    notice = [r for r in read_topic(kafka_config, RAW) if r["headers_only"]]
    assert notice[0]["inline"] == big[: big.index(b"\r\n\r\n") + 4]
    assert dovecot.message_count("i-size") == 1
    ctx.publisher.close()


def test_connection_cut_mid_fetch_loses_nothing_and_deletes_nothing(
    dovecot: DovecotServer, kafka_config: KafkaConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imap_fetch, "GROUP_BYTES", 70_000)  # several FETCH commands per pass
    messages = [sample(i, size=30_000) for i in range(6)]
    source, ctx, state = _setup(dovecot, kafka_config, tmp_path, "i-cut", messages, tls="implicit")
    proxy = CuttingProxy(dovecot.imaps_port, cut_after=120_000)
    try:
        with pytest.raises(TransientError):
            imap_pass(source.model_copy(update={"port": proxy.port}), "acme", state, ctx)
        assert proxy.cuts == 1
    finally:
        proxy.close()
    assert dovecot.message_count("i-cut") == 6
    partial = len(read_topic(kafka_config, RAW, 1000))
    assert 0 < partial < 6
    result = imap_pass(source, "acme", state, ctx)
    assert result.fetched == 6 - partial and result.deleted == 6
    raw = read_topic(kafka_config, RAW)
    assert sorted(message_bytes(r, ctx.blobs) for r in raw) == sorted(messages)
    ctx.publisher.close()


def test_idle_wakes_up_on_new_mail_and_stops_on_request(
    dovecot: DovecotServer, kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    source, ctx, _state = _setup(dovecot, kafka_config, tmp_path, "i-idle", [])
    stop = threading.Event()
    threading.Timer(1.0, lambda: dovecot.seed("i-idle", [sample(1)])).start()
    started = time.monotonic()
    assert wait_for_mail(source, ctx.tokens, 30, stop) is True
    assert time.monotonic() - started < 10
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    assert wait_for_mail(source, ctx.tokens, 30, stop) is False
    assert time.monotonic() - started < 5
    ctx.publisher.close()


async def test_scheduler_fetches_pushed_mail_long_before_the_poll_interval(
    dovecot: DovecotServer, kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    source, ctx, state = _setup(
        dovecot, kafka_config, tmp_path, "i-push", [sample(1)], extra='poll_interval = "5m"\n'
    )
    scheduler, status = await idle_scheduler(source, state, ctx)
    assert status.fetched == 1 and status.state == "push-wait"
    dovecot.seed("i-push", [sample(2)])
    deadline = time.monotonic() + 30  # the poll interval is 5 minutes: only a push gets here
    while status.fetched < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert status.fetched == 2 and dovecot.message_count("i-push") == 0
    await scheduler.stop_all()
    assert status.passes == 2
    ctx.publisher.close()


def test_state_of_messages_removed_by_someone_else_is_forgotten(
    dovecot: DovecotServer, kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    source, ctx, state = _setup(
        dovecot,
        kafka_config,
        tmp_path,
        "i-gone",
        [sample(i) for i in range(3)],
        extra='after_fetch = "none"\n',
    )
    assert imap_pass(source, "acme", state, ctx).fetched == 3
    assert len(state.imap("INBOX")) == 3
    imap = imaplib.IMAP4_SSL(
        "127.0.0.1", dovecot.imaps_port, ssl_context=ssl.create_default_context(cafile=str(dovecot.ca_file))
    )
    imap.login("i-gone", "pw")
    imap.select("INBOX")
    imap.store("2", "+FLAGS", "(\\Deleted)")
    imap.expunge()
    imap.logout()
    assert imap_pass(source, "acme", state, ctx).fetched == 0
    assert sorted(uid for _, uid in state.imap("INBOX")) == [1, 3]
    ctx.publisher.close()
