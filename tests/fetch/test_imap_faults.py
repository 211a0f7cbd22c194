"""IMAP answers that a correct client must not trust blindly: the real Dovecot behind a proxy
that rewrites one thing (a UID left out of a FETCH answer, a wrong RFC822.SIZE)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mailferry.config.kafka import KafkaConfig
from mailferry.config.sources import ImapSource
from mailferry.kafka.topics import AUDIT, RAW
from mailferry.producers import imap_session
from mailferry.producers.context import FetchContext
from mailferry.producers.imap_fetch import imap_pass
from mailferry.producers.state import MailboxState
from mailferry_testkit.dovecot import DovecotServer
from tests.fetch.helpers import make_config, make_context, message_bytes, read_topic, sample
from tests.fetch.netfaults import RewritingProxy
from tests.fetch.test_imap import imap_source_toml

pytestmark = pytest.mark.integration


def _setup(
    dovecot: DovecotServer, kafka: KafkaConfig, tmp_path: Path, user: str, port: int
) -> tuple[ImapSource, FetchContext]:
    toml = imap_source_toml(dovecot, user, tls="none", extra="allow_plaintext_login = true\n")
    config = make_config(tmp_path, kafka, toml)
    source = config.tenants[0].sources[0]
    assert isinstance(source, ImapSource)
    return source.model_copy(update={"port": port}), make_context(config)


def test_uid_left_out_of_the_fetch_answer_is_audited_and_fetched_on_the_next_pass(
    dovecot: DovecotServer, kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    messages = [sample(i) for i in range(1, 4)]
    dovecot.add_user("f-gap", "pw")
    dovecot.seed("f-gap", messages)
    dropped = []

    def leave_out_uid_2(line: bytes) -> bytes:
        # the first body FETCH asks for 1:3; the server is made to answer for 1 and 3 only
        if not dropped and b"UID FETCH 1:3 (UID BODY.PEEK[])" in line:
            dropped.append(line)
            return line.replace(b"1:3", b"1,3")
        return line

    proxy = RewritingProxy(dovecot.imap_port, to_server=leave_out_uid_2)
    source, ctx = _setup(dovecot, kafka_config, tmp_path, "f-gap", proxy.port)
    state = MailboxState("acme", "f-gap")
    try:
        first = imap_pass(source, "acme", state, ctx)
        assert dropped and (first.fetched, first.deleted, first.errors) == (2, 2, 1)
        assert dovecot.message_count("f-gap") == 1
        gaps = [
            e for e in read_topic(kafka_config, AUDIT) if e["details"].get("reason") == "no-body-in-fetch"
        ]
        assert [(g["event"], g["details"]["uid"].split("/")[1]) for g in gaps] == [("error", "2")]

        second = imap_pass(source, "acme", state, ctx)
        assert (second.fetched, second.deleted, second.errors) == (1, 1, 0)
        assert dovecot.message_count("f-gap") == 0
        raw = read_topic(kafka_config, RAW)
        assert sorted(message_bytes(r, ctx.blobs) for r in raw) == sorted(messages)
        assert state.cursor("INBOX")["uid"] == 3  # type: ignore[index]
    finally:
        proxy.close()
        ctx.publisher.close()


def test_wrong_announced_size_reads_the_whole_message_and_leaves_it_on_the_server(
    dovecot: DovecotServer, kafka_config: KafkaConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imap_session, "PART_SIZE", 100_000)
    big, small, honest = sample(1, size=450_000), sample(2), sample(3, size=100)
    dovecot.add_user("f-size", "pw")
    dovecot.seed("f-size", [big, small, honest])
    lies = {len(big): 150_000, len(small): len(small) - 7}  # the big one: 1.5 ranges announced, 4.5 real

    def announce_less(line: bytes) -> bytes:
        return re.sub(
            rb"RFC822\.SIZE (\d+)", lambda m: b"RFC822.SIZE %d" % lies.get(int(m[1]), int(m[1])), line
        )

    proxy = RewritingProxy(dovecot.imap_port, to_client=announce_less)
    source, ctx = _setup(dovecot, kafka_config, tmp_path, "f-size", proxy.port)
    state = MailboxState("acme", "f-size")
    try:
        result = imap_pass(source, "acme", state, ctx)
        assert (result.fetched, result.deleted, result.errors) == (3, 1, 2)
        raw = read_topic(kafka_config, RAW)
        assert sorted(message_bytes(r, ctx.blobs) for r in raw) == sorted([big, small, honest])
        mismatches = [e for e in read_topic(kafka_config, AUDIT) if e["event"] == "size-mismatch"]
        assert sorted((e["details"]["announced"], e["details"]["fetched"]) for e in mismatches) == sorted(
            [("150000", str(len(big))), (str(len(small) - 7), str(len(small)))]
        )
        assert dovecot.message_count("f-size") == 2

        again = imap_pass(source, "acme", state, ctx)  # neither fetched again nor deleted
        assert (again.fetched, again.deleted) == (0, 0)
        assert dovecot.message_count("f-size") == 2
    finally:
        proxy.close()
        ctx.publisher.close()
