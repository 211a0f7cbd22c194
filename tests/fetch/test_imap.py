"""IMAP fetching against the real Dovecot and the real broker."""

from __future__ import annotations

from pathlib import Path

import pytest
from mailferry.producers.imap_fetch import imap_pass
from mailferry.producers.state import MailboxState

from mailferry.config.kafka import KafkaConfig
from mailferry.config.sources import ImapSource
from mailferry.kafka.topics import AUDIT, RAW
from mailferry.testing.dovecot import DovecotServer
from tests.fetch.helpers import make_config, make_context, message_bytes, read_topic, sample

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
