"""Shared pieces of the fetch tests: a config around a Dovecot, topics, reading them back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from mailferry.audit import read_events
from mailferry.blobs import BlobStore, open_blob_store
from mailferry.config import MailferryConfig
from mailferry.config.kafka import KafkaConfig
from mailferry.config.loader import parse_config
from mailferry.config.sources import ImapSource
from mailferry.kafka.topics import RAW
from mailferry.packing import RAW_PACK
from mailferry.producers.context import FetchContext
from mailferry.producers.imap_fetch import imap_pass
from mailferry.producers.imap_idle import idle_known, wait_for_mail
from mailferry.producers.publish import Publisher, make_producer
from mailferry.producers.scheduler import MailboxStatus, Scheduler
from mailferry.producers.state import MailboxState

from ..topics import create_topics, read_records


def make_config(
    tmp_path: Path, kafka: KafkaConfig, sources_toml: str, *, threshold: str = "64KiB", partitions: int = 2
) -> MailferryConfig:
    """Parse (and write to ``tmp_path/mailferry.toml``) a one-tenant config; create its topics."""
    text = (
        f'state_dir = "{tmp_path / "state"}"\nallow_plaintext_secrets = true\n'
        + kafka.connection_toml()
        + f"[kafka.topics.defaults]\npartitions = {partitions}\n"
        f'[blob_store]\ninline_threshold = "{threshold}"\n'
        '[[tenants]]\nid = "acme"\naccepted_domains = ["acme.example"]\n'
        'default_mailbox = "postmaster@acme.example"\ndefault_target = "archive"\n'
        '[[tenants.targets]]\nname = "archive"\nkind = "maildir"\npath = "/tmp/unused"\n' + sources_toml
    )
    (tmp_path / "mailferry.toml").write_text(text, encoding="utf-8")
    config = parse_config(text, check_secrets=False)
    create_topics(config.kafka, len(config.retry.tiers))
    return config


def make_context(config: MailferryConfig, **producer_overrides: Any) -> FetchContext:
    producer = make_producer(config, list(config.kafka.bootstrap_servers), **producer_overrides)
    return FetchContext(
        publisher=Publisher(config, producer),
        blobs=open_blob_store(config),  # as the fetch role does: kind kafka on the test broker
        inline_threshold=config.blob_store.inline_threshold,
        confirm_timeout=20.0,
    )


def read_topic(kafka: KafkaConfig, logical: str, timeout_ms: int = 2000) -> list[dict[str, Any]]:
    records = read_records(kafka, logical, timeout_ms)
    if logical == RAW:  # one record may pack several mails (mailferry.packing)
        return [mail for m in records for mail in RAW_PACK.unpack(m.value)]
    return [event for m in records for event in read_events(m)]


def message_bytes(record: dict[str, Any], blobs: BlobStore) -> bytes:
    if record["inline"] is not None:
        data: bytes = record["inline"]
        return data
    return blobs.read(record["blob_ref"])


def sample(n: int, size: int = 0) -> bytes:
    """A message with a Message-ID, a dot-stuffing trap and an optional padding body."""
    body = b"line one\r\n.starts with a dot\r\n..two dots\r\n" + b"x" * size
    return f"Message-ID: <m{n}@fetch.test>\r\nSubject: message {n}\r\n\r\n".encode() + body + b"\r\n"


async def idle_scheduler(
    source: ImapSource, state: MailboxState, ctx: FetchContext
) -> tuple[Scheduler, MailboxStatus]:
    """A scheduler polling ``source`` with IMAP IDLE between passes, once its first pass is done
    and it waits on the server."""
    scheduler = Scheduler(
        lambda tenant, src: imap_pass(src, tenant, state, ctx),  # type: ignore[arg-type]
        {"acme": 2},
        idle_fn=lambda tenant, src, timeout, stop: wait_for_mail(
            src,  # type: ignore[arg-type]
            ctx.tokens,
            timeout,
            stop,
            idle_known(state, src),  # type: ignore[arg-type]
        ),
    )
    await scheduler.upsert("acme", source, "v1")
    status = scheduler.loops[f"acme/{source.id}"].status
    deadline = time.monotonic() + 60
    while status.state != "push-wait" and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return scheduler, status
