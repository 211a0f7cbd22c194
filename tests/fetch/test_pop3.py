"""POP3 fetching against the real Dovecot and the real broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mailferry.config.kafka import KafkaConfig
from mailferry.config.sources import Pop3Source
from mailferry.errors import ConfigError, TransientError
from mailferry.kafka.clients import new_consumer, new_producer
from mailferry.kafka.topics import AUDIT, FETCH_STATE, RAW, full_name
from mailferry.producers.access import PlaintextLoginRefusedError
from mailferry.producers.context import FetchContext
from mailferry.producers.pop3_fetch import pop3_pass
from mailferry.producers.state import MailboxState, load_states
from mailferry_testkit.certs import make_test_pki
from mailferry_testkit.dovecot import DovecotServer
from tests.fetch.helpers import make_config, make_context, message_bytes, read_records, read_topic, sample
from tests.fetch.netfaults import CuttingProxy, FakePop3Server

pytestmark = pytest.mark.integration


def _source(dovecot: DovecotServer, user: str, *, tls: str = "implicit", extra: str = "") -> str:
    port = {"implicit": dovecot.pop3s_port, "starttls": dovecot.pop3_port, "none": dovecot.pop3_port}[tls]
    return (
        f'[[tenants.sources]]\nid = "{user}"\nkind = "pop3"\nmode = "personal"\nhost = "127.0.0.1"\n'
        f'port = {port}\ntls = "{tls}"\nca_file = "{dovecot.ca_file}"\nusername = "{user}"\n'
        'auth = { kind = "password", password = "pw" }\ndeliver_to = "alice@acme.example"\n' + extra
    )


def test_pop3s_fetches_publishes_then_deletes(
    dovecot: DovecotServer, kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    dovecot.add_user("p-basic", "pw")
    messages = [sample(i) for i in range(5)] + [sample(99, size=200_000)]
    dovecot.seed("p-basic", messages)
    config = make_config(tmp_path, kafka_config, _source(dovecot, "p-basic"))
    source = config.tenants[0].sources[0]
    ctx = make_context(config)
    state = MailboxState("acme", "p-basic")

    result = pop3_pass(source, "acme", state, ctx)  # type: ignore[arg-type]

    assert result.fetched == 6 and result.deleted == 6
    assert dovecot.message_count("p-basic") == 0
    raw = read_topic(kafka_config, RAW)
    assert sorted(message_bytes(r, ctx.blobs) for r in raw) == sorted(messages)
    assert sum(1 for r in raw if r["blob_ref"]) == 1
    events = [e["event"] for e in read_topic(kafka_config, AUDIT)]
    assert events.count("fetched") == 6 and events.count("source-deleted") == 6
    # the events of a batch go packed: one audit record for the 6 "fetched", one for the deletions
    assert len(read_records(kafka_config, AUDIT)) == 2
    reloaded = load_states(kafka_config, list(kafka_config.bootstrap_servers), [("acme", "p-basic")])
    assert {r["status"] for r in reloaded[("acme", "p-basic")].pop3().values()} == {"deleted"}
    # fetch state once per batch, not per message (issue 14): "fetched" and "deleted", 6 each
    states = [r for r in read_records(kafka_config, FETCH_STATE) if r.key.startswith(b"acme/p-basic/")]
    assert len(states) == 2
    ctx.publisher.close()


def _setup(
    dovecot: DovecotServer,
    kafka: KafkaConfig,
    tmp_path: Path,
    user: str,
    messages: list[bytes],
    *,
    tls: str = "implicit",
    extra: str = "",
) -> tuple[Pop3Source, FetchContext, MailboxState]:
    dovecot.add_user(user, "pw")
    dovecot.seed(user, messages)
    config = make_config(tmp_path, kafka, _source(dovecot, user, tls=tls, extra=extra))
    source = config.tenants[0].sources[0]
    assert isinstance(source, Pop3Source)
    return source, make_context(config), MailboxState("acme", user)


def test_stls_and_apop(dovecot: DovecotServer, kafka_config: KafkaConfig, tmp_path: Path) -> None:
    source, ctx, state = _setup(dovecot, kafka_config, tmp_path, "p-stls", [sample(1)], tls="starttls")
    assert pop3_pass(source, "acme", state, ctx).fetched == 1
    apop = source.model_copy(update={"auth": source.auth.model_copy(update={"apop": True})})
    dovecot.seed("p-stls", [sample(2)])
    assert pop3_pass(apop, "acme", state, ctx).fetched == 1
    assert dovecot.message_count("p-stls") == 0
    ctx.publisher.close()


def test_wrong_ca_is_refused_and_nothing_is_touched(
    dovecot: DovecotServer, kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    source, ctx, state = _setup(dovecot, kafka_config, tmp_path, "p-ca", [sample(1)])
    other = make_test_pki(tmp_path / "other-ca")
    wrong = source.model_copy(update={"ca_file": other.ca_file})
    with pytest.raises(TransientError) as info:
        pop3_pass(wrong, "acme", state, ctx)
    assert info.value.reason_code == "tls"
    assert dovecot.message_count("p-ca") == 1 and read_topic(kafka_config, RAW, 1000) == []
    ctx.publisher.close()


def test_plaintext_login_needs_explicit_permission(
    dovecot: DovecotServer, kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="allow_plaintext_login"):
        make_config(tmp_path, kafka_config, _source(dovecot, "p-plain", tls="none"))
    source, ctx, state = _setup(
        dovecot,
        kafka_config,
        tmp_path,
        "p-plain",
        [sample(1)],
        tls="none",
        extra="allow_plaintext_login = true\n",
    )
    assert pop3_pass(source, "acme", state, ctx).fetched == 1
    # a config that slipped past validation is still refused at login time
    unsafe = source.model_copy(update={"allow_plaintext_login": False})
    dovecot.seed("p-plain", [sample(2)])
    with pytest.raises(PlaintextLoginRefusedError):
        pop3_pass(unsafe, "acme", state, ctx)
    assert dovecot.message_count("p-plain") == 1
    ctx.publisher.close()


def test_leave_on_server_then_delete_after_days(
    dovecot: DovecotServer, kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    extra = 'leave_on_server = true\ndelete_after = "3d"\n'
    source, ctx, state = _setup(
        dovecot, kafka_config, tmp_path, "p-leave", [sample(1), sample(2)], extra=extra
    )
    start = datetime.now(UTC)
    ctx.now = lambda: start
    assert pop3_pass(source, "acme", state, ctx).fetched == 2
    dovecot.seed("p-leave", [sample(3)])
    ctx.now = lambda: start + timedelta(days=2)
    second = pop3_pass(source, "acme", state, ctx)
    assert (second.fetched, second.deleted) == (1, 0)
    assert dovecot.message_count("p-leave") == 3
    ctx.now = lambda: start + timedelta(days=3, hours=1)
    third = pop3_pass(source, "acme", state, ctx)
    assert (third.fetched, third.deleted) == (0, 2)  # the third message is only one day old
    assert dovecot.message_count("p-leave") == 1
    assert len(read_topic(kafka_config, RAW)) == 3
    ctx.publisher.close()


def test_oversize_skip_and_headers_notice(
    dovecot: DovecotServer, kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    extra = 'max_message_size = "2KiB"\noversize_action = "headers-notice"\n'
    big, small = sample(1, size=10_000), sample(2)
    source, ctx, state = _setup(dovecot, kafka_config, tmp_path, "p-size", [big, small], extra=extra)
    result = pop3_pass(source, "acme", state, ctx)
    assert (result.fetched, result.skipped, result.deleted) == (1, 1, 1)
    raw = {r["headers_only"]: r for r in read_topic(kafka_config, RAW)}
    assert raw[True]["inline"] == big[: big.index(b"\r\n\r\n") + 4]
    assert raw[False]["inline"] == small
    assert dovecot.message_count("p-size") == 1  # the oversize message stays at the source
    assert pop3_pass(source, "acme", state, ctx).skipped == 0  # reported once, not every pass
    ctx.publisher.close()


def test_connection_cut_mid_retr_loses_nothing_and_deletes_nothing(
    dovecot: DovecotServer, kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    messages = [sample(i, size=30_000) for i in range(6)]
    source, ctx, state = _setup(dovecot, kafka_config, tmp_path, "p-cut", messages)
    proxy = CuttingProxy(dovecot.pop3s_port, cut_after=100_000)
    try:
        via_proxy = source.model_copy(update={"port": proxy.port})
        with pytest.raises(TransientError):
            pop3_pass(via_proxy, "acme", state, ctx)
        assert proxy.cuts == 1
        assert dovecot.message_count("p-cut") == 6
        partial = len(read_topic(kafka_config, RAW, 1000))
        assert 0 < partial < 6  # what arrived whole before the cut is published and remembered
    finally:
        proxy.close()
    result = pop3_pass(source, "acme", state, ctx)
    assert result.fetched == 6 - partial and result.deleted == 6
    raw = read_topic(kafka_config, RAW)
    assert sorted(message_bytes(r, ctx.blobs) for r in raw) == sorted(messages)  # each exactly once
    ctx.publisher.close()


def test_malformed_uidl_line_skips_that_message_only(kafka_config: KafkaConfig, tmp_path: Path) -> None:
    replies = {
        "UIDL": b"+OK\r\n1 uid-one\r\n2 bad id with spaces\r\n3 uid-three\r\n.\r\n",
        "LIST": b"+OK\r\n1 20\r\n2 20\r\n3 20\r\n.\r\n",
        "RETR 1": b"+OK\r\n" + sample(1) + b".\r\n",
        "RETR 3": b"+OK\r\n" + sample(3) + b".\r\n",
    }
    server = FakePop3Server(replies)
    toml = (
        '[[tenants.sources]]\nid = "fake"\nkind = "pop3"\nmode = "personal"\nhost = "127.0.0.1"\n'
        f'port = {server.port}\ntls = "none"\nallow_plaintext_login = true\nusername = "u"\n'
        'auth = { kind = "password", password = "pw" }\ndeliver_to = "alice@acme.example"\n'
    )
    config = make_config(tmp_path, kafka_config, toml)
    source = config.tenants[0].sources[0]
    assert isinstance(source, Pop3Source)
    ctx = make_context(config)
    result = pop3_pass(source, "acme", MailboxState("acme", "fake"), ctx)
    assert (result.fetched, result.errors) == (2, 1)
    assert sorted(server.deleted) == [1, 3] and "RETR 2" not in server.commands
    errors = [e for e in read_topic(kafka_config, AUDIT) if e["event"] == "error"]
    assert errors[0]["details"]["reason"] == "malformed-uidl"
    assert errors[0]["details"]["line"] == "2 bad id with spaces"
    server.close()
    ctx.publisher.close()


def test_per_pass_cap(dovecot: DovecotServer, kafka_config: KafkaConfig, tmp_path: Path) -> None:
    messages = [sample(i) for i in range(5)]
    source, ctx, state = _setup(
        dovecot, kafka_config, tmp_path, "p-cap", messages, extra="max_messages_per_pass = 2\n"
    )
    counts = [pop3_pass(source, "acme", state, ctx).fetched for _ in range(4)]
    assert counts == [2, 2, 1, 0]
    assert dovecot.message_count("p-cap") == 0
    assert sorted(message_bytes(r, ctx.blobs) for r in read_topic(kafka_config, RAW)) == sorted(messages)
    ctx.publisher.close()


def test_raw_records_go_to_the_partition_of_their_dedup_shard(
    dovecot: DovecotServer, kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    """The fetcher picks the raw partition itself; it must be the one Kafka's default
    partitioner gives the record's key, the dedup shard (tenant and Message-ID), so a copy
    of a message fetched from another mailbox, by another producer, lands beside it."""

    from mailferry.packing import RAW_PACK
    from mailferry.shard import shard_of_record

    users = [f"p-part{i}" for i in range(6)]
    sources = ""
    for index, user in enumerate(users):
        dovecot.add_user(user, "pw")
        dovecot.seed(user, [sample(10 * index + n) for n in range(2)])
        sources += _source(dovecot, user, tls="none", extra="allow_plaintext_login = true\n")
    config = make_config(tmp_path, kafka_config, sources, partitions=5)
    ctx = make_context(config)
    for source in config.tenants[0].sources:
        assert isinstance(source, Pop3Source)
        pop3_pass(source, "acme", MailboxState("acme", source.id), ctx)
    ctx.publisher.close()

    def read() -> list[Any]:
        consumer = _raw_consumer(kafka_config)
        found = list(consumer)
        consumer.close()
        return found

    # a record may pack several mails of one partition: each mail's own shard counts
    placed = {
        (shard_of_record(mail, None), rec.partition) for rec in read() for mail in RAW_PACK.unpack(rec.value)
    }
    assert len(placed) == 12
    assert all(key.startswith(b"acme/<") for key, _ in placed)  # every sample has a Message-ID
    plain = new_producer(kafka_config, list(kafka_config.bootstrap_servers))  # Kafka's own choice
    for key, _ in placed:
        plain.send(full_name(kafka_config, RAW), key=key, value=b"marker")
    plain.close()
    expected = {(rec.key, rec.partition) for rec in read() if rec.value == b"marker"}
    assert placed == expected
    assert len({p for _, p in placed}) > 1  # the messages really are spread


def test_a_busy_pass_packs_mails_per_partition_and_a_lone_mail_goes_plain(
    dovecot: DovecotServer, kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    """Under load one raw record carries several mails of one partition (fewer records and
    requests per mail); an idle mailbox's single new mail still goes as a plain record."""
    from mailferry.packing import RAW_PACK
    from mailferry.schemas import RAW_MESSAGE, codec

    dovecot.add_user("p-pack", "pw")
    dovecot.seed("p-pack", [sample(n) for n in range(30)])
    dovecot.add_user("p-lone", "pw")
    dovecot.seed("p-lone", [sample(99)])
    sources = _source(dovecot, "p-pack", tls="none", extra="allow_plaintext_login = true\n")
    sources += _source(dovecot, "p-lone", tls="none", extra="allow_plaintext_login = true\n")
    config = make_config(tmp_path, kafka_config, sources, partitions=2)
    ctx = make_context(config)
    packed, lone = config.tenants[0].sources
    assert isinstance(packed, Pop3Source) and isinstance(lone, Pop3Source)
    pop3_pass(packed, "acme", MailboxState("acme", packed.id), ctx)
    consumer = _raw_consumer(kafka_config)
    records = list(consumer)
    mails = [mail for rec in records for mail in RAW_PACK.unpack(rec.value)]
    assert sorted(m["source_uid"] for m in mails) == sorted({m["source_uid"] for m in mails})
    assert len(mails) == 30 and len(records) <= 4  # 30 mails, 2 partitions
    pop3_pass(lone, "acme", MailboxState("acme", lone.id), ctx)
    (single,) = list(consumer)
    consumer.close()
    ctx.publisher.close()
    assert codec(RAW_MESSAGE).decode(single.value)["mailbox_id"] == "p-lone"


def _raw_consumer(kafka_config: KafkaConfig) -> Any:
    """The raw topic from its start; iterating stops after 2 s without a record."""
    from mailferry.kafka.topics import full_name

    return new_consumer(
        kafka_config,
        list(kafka_config.bootstrap_servers),
        topics=[full_name(kafka_config, RAW)],
        auto_offset_reset="earliest",
        consumer_timeout_ms=2000,
    )


def test_audit_packs_close_at_their_size_limit(
    dovecot: DovecotServer, kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    messages = [sample(i) for i in range(6)]
    source, ctx, state = _setup(
        dovecot, kafka_config, tmp_path, "p-audit-packs", messages, extra="leave_on_server = true\n"
    )
    ctx.publisher.audit_pack_bytes = 450  # two events per record (~180 bytes each)

    assert pop3_pass(source, "acme", state, ctx).fetched == 6

    records = read_records(kafka_config, AUDIT)
    assert 2 < len(records) < 6
    assert all(len(r.value) <= 450 for r in records)
    fetched = [e for e in read_topic(kafka_config, AUDIT) if e["event"] == "fetched"]
    assert sorted(e["message_id"] for e in fetched) == sorted(f"<m{i}@fetch.test>" for i in range(6))
    ctx.publisher.close()
