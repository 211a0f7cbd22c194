"""IMAP IDLE on every configured folder, against the real Dovecot and the real broker."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from mailferry.config.kafka import KafkaConfig
from mailferry.config.sources import ImapSource
from mailferry.kafka.topics import RAW
from mailferry.producers.context import FetchContext
from mailferry.producers.imap_fetch import imap_pass
from mailferry.producers.imap_idle import idle_known, wait_for_mail
from mailferry.producers.state import MailboxState
from mailferry_testkit.dovecot import DovecotServer
from tests.fetch.helpers import idle_scheduler, make_config, make_context, message_bytes, read_topic, sample
from tests.fetch.test_imap import imap_source_toml

pytestmark = pytest.mark.integration
FOLDERS = 'folders = ["INBOX", "Archive", "Lists"]\n'


def _setup(
    dovecot: DovecotServer, kafka: KafkaConfig, tmp_path: Path, user: str, extra: str
) -> tuple[ImapSource, FetchContext]:
    dovecot.add_user(user, "pw")
    for folder in ("INBOX", "Archive", "Lists"):
        dovecot.seed(user, [], folder=folder)
    config = make_config(tmp_path, kafka, imap_source_toml(dovecot, user, extra=FOLDERS + extra))
    source = config.tenants[0].sources[0]
    assert isinstance(source, ImapSource)
    return source, make_context(config)


def test_idle_wakes_up_on_mail_in_the_last_folder_and_every_watch_ends(
    dovecot: DovecotServer, kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    source, ctx = _setup(dovecot, kafka_config, tmp_path, "idle-any", "")
    threading.Timer(1.0, lambda: dovecot.seed("idle-any", [sample(1)], folder="Lists")).start()
    started = time.monotonic()
    assert wait_for_mail(source, ctx.tokens, 30, threading.Event()) is True
    assert time.monotonic() - started < 10
    assert [t.name for t in threading.enumerate() if t.name.startswith("idle idle-any")] == []
    ctx.publisher.close()


def test_mail_that_reached_a_second_folder_before_idle_is_seen_at_once(
    dovecot: DovecotServer, kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    source, ctx = _setup(dovecot, kafka_config, tmp_path, "idle-gap", 'after_fetch = "none"\n')
    state = MailboxState("acme", "idle-gap")
    imap_pass(source, "acme", state, ctx)
    dovecot.seed("idle-gap", [sample(2)], folder="Archive")  # after the pass, before the IDLE
    started = time.monotonic()
    assert wait_for_mail(source, ctx.tokens, 20, threading.Event(), idle_known(state, source)) is True
    assert time.monotonic() - started < 5
    ctx.publisher.close()


async def test_mail_in_a_second_folder_is_fetched_long_before_the_poll_interval(
    dovecot: DovecotServer, kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    source, ctx = _setup(dovecot, kafka_config, tmp_path, "idle-push", 'poll_interval = "5m"\n')
    state = MailboxState("acme", "idle-push")
    scheduler, status = await idle_scheduler(source, state, ctx)
    assert status.state == "push-wait" and status.passes == 1
    await asyncio.sleep(2)  # every folder's IDLE is in place
    dovecot.seed("idle-push", [sample(3)], folder="Archive")
    deadline = time.monotonic() + 30  # the poll interval is 5 minutes: only a push gets here
    while status.fetched < 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert status.fetched == 1 and dovecot.message_count("idle-push", "Archive") == 0
    await scheduler.stop_all()
    assert status.passes == 2
    assert [message_bytes(r, ctx.blobs) for r in read_topic(kafka_config, RAW)] == [sample(3)]
    ctx.publisher.close()
