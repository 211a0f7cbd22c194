"""The dedup agent with Faust's ``test_context()``: the table decides, channels collect the output."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mailferry.blobs import LocalBlobStore
from mailferry.errors import TransientError
from mailferry.packing import pack_value
from mailferry.rawrecord import RawSource, build_raw_record
from mailferry.schemas.codec import AUDIT_EVENT, DEAD_LETTER, DELIVERY, RAW_MESSAGE, Record, codec
from mailferry.streams.app import StreamApp
from tests.stream.factories import DOMAIN, config, decoded, message

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
STORE = "rocksdb://"
DAY_MS = 24 * 3600 * 1000


class Clock:
    def __init__(self) -> None:
        self.ms = int(NOW.timestamp() * 1000)

    def __call__(self) -> int:
        return self.ms


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def stream(tmp_path: Path, clock: Clock) -> Iterator[StreamApp]:
    cfg = config(str(tmp_path), dedup_window="30d", data_dir=str(tmp_path / "stream"))
    app = StreamApp(cfg, ["127.0.0.1:1"], clock_ms=clock, store=STORE)
    app.deliver_topic = app.app.channel()  # type: ignore[assignment]
    app.audit_topic = app.app.channel()  # type: ignore[assignment]
    app.dlt_topic = app.app.channel()  # type: ignore[assignment]
    app.app.finalize()
    # a channel hands events to its subscribers (iterators) only
    app.delivered = app.deliver_topic.__aiter__()  # type: ignore[attr-defined]
    app.audited = app.audit_topic.__aiter__()  # type: ignore[attr-defined]
    app.dead = app.dlt_topic.__aiter__()  # type: ignore[attr-defined]
    yield app


def raw_value(stream: StreamApp, data: bytes, mailbox: str = "catchall", **extra: object) -> bytes:
    blobs = LocalBlobStore(stream.config.blob_dir)
    _key, raw = build_raw_record(
        RawSource("acme", mailbox, "pop3"), data, blobs=blobs, inline_threshold=1 << 20
    )
    raw.update(extra)
    return codec(RAW_MESSAGE).encode(raw)


async def drain(channel: Any, name: str) -> list[Record]:
    found = []
    while not channel.empty():
        event = await channel.get()
        found += decoded(name, event.value)
    return found


async def route(stream: StreamApp, *values: bytes | tuple[int, bytes]) -> None:
    """Each value through the one agent, as raw records of partition 0 at offsets 0, 1, …,
    or at the partition a (partition, value) pair names."""
    agent = stream.app.agents["route"]
    async with agent.test_context() as ctx:
        for value in values:
            partition, data = value if isinstance(value, tuple) else (0, value)
            await ctx.put(data, key=b"acme/shard", partition=partition)


def origin(stream: StreamApp, partition: int, offset: int) -> str:
    return f"{stream.raw_topic.get_topic_name()}/{partition}/{offset}"


MEETING = message(("Delivered-To", f"bob@{DOMAIN}"), ("Message-ID", "<meet@x.example>"))


async def test_second_copy_is_dropped_with_first_sighting(stream: StreamApp) -> None:
    await route(stream, raw_value(stream, MEETING), raw_value(stream, MEETING))
    delivered = await drain(stream.delivered, DELIVERY)  # type: ignore[attr-defined]
    assert [d["raw_origin"] for d in delivered] == [origin(stream, 0, 0)]
    events = await drain(stream.audited, AUDIT_EVENT)  # type: ignore[attr-defined]
    assert [e["event"] for e in events if e["event"] != "resolved"] == ["routed", "duplicate"]
    duplicate = events[-1]
    assert duplicate["details"]["first_origin"] == origin(stream, 0, 0)
    assert duplicate["details"]["origin"] == origin(stream, 0, 1)
    assert duplicate["details"]["first_seen_at"] == NOW.isoformat()
    assert duplicate["dedup_key"] == f"acme/bob@{DOMAIN}/<meet@x.example>"


async def test_window_is_measured_from_the_first_sighting(stream: StreamApp, clock: Clock) -> None:
    window = 30 * DAY_MS
    start = clock.ms
    # one millisecond inside the window: still a duplicate; a full window later: delivered
    # again and remembered anew
    steps = [start, start + window - 1, start + window, start + window + DAY_MS]
    # one test context: entering another one clears the channels' queues
    async with stream.app.agents["route"].test_context() as ctx:
        for at in steps:
            clock.ms = at
            await ctx.put(raw_value(stream, MEETING), key=b"acme/shard")
    delivered = await drain(stream.delivered, DELIVERY)  # type: ignore[attr-defined]
    assert [d["raw_origin"] for d in delivered] == [origin(stream, 0, 0), origin(stream, 0, 2)]
    events = await drain(stream.audited, AUDIT_EVENT)  # type: ignore[attr-defined]
    decided = [e for e in events if e["event"] != "resolved"]
    assert [e["event"] for e in decided] == ["routed", "duplicate", "routed", "duplicate"]
    assert decided[3]["details"]["first_origin"] == origin(stream, 0, 2)


async def test_reprocessing_the_same_raw_record_is_not_a_duplicate(stream: StreamApp) -> None:
    value = raw_value(stream, MEETING)
    async with stream.app.agents["route"].test_context() as ctx:
        await ctx.put(value, key=b"acme/shard")
        ctx.sent_offset = 0  # the same record again, as after a restart before the commit
        await ctx.put(value, key=b"acme/shard")
    delivered = await drain(stream.delivered, DELIVERY)  # type: ignore[attr-defined]
    assert len(delivered) == 2 and delivered[0]["delivery_id"] == delivered[1]["delivery_id"]
    events = await drain(stream.audited, AUDIT_EVENT)  # type: ignore[attr-defined]
    assert [e["details"]["dedup"] for e in events if e["event"] == "routed"] == ["first", "reprocessed"]


async def test_same_message_id_to_two_recipients_reaches_both(stream: StreamApp) -> None:
    to_bob = message(("Delivered-To", f"bob@{DOMAIN}"), ("Message-ID", "<meet@x.example>"))
    to_carol = message(("Delivered-To", f"carol@{DOMAIN}"), ("Message-ID", "<meet@x.example>"))
    await route(stream, raw_value(stream, to_bob), raw_value(stream, to_carol))
    delivered = await drain(stream.delivered, DELIVERY)  # type: ignore[attr-defined]
    assert [d["recipient"] for d in delivered] == [f"bob@{DOMAIN}", f"carol@{DOMAIN}"]


async def test_catch_all_and_personal_copy_reach_the_recipient_once(stream: StreamApp) -> None:
    data = message(("Delivered-To", f"alice@{DOMAIN}"), ("Message-ID", "<both@x.example>"))
    await route(stream, raw_value(stream, data), raw_value(stream, data, mailbox="alice-private"))
    delivered = await drain(stream.delivered, DELIVERY)  # type: ignore[attr-defined]
    assert [(d["recipient"], d["mailbox_id"]) for d in delivered] == [(f"alice@{DOMAIN}", "catchall")]
    events = await drain(stream.audited, AUDIT_EVENT)  # type: ignore[attr-defined]
    (duplicate,) = [e for e in events if e["event"] == "duplicate"]
    assert duplicate["mailbox_id"] == "alice-private"
    assert duplicate["details"]["first_mailbox_id"] == "catchall"


async def test_the_table_is_kept_per_raw_partition(stream: StreamApp) -> None:
    """Co-partitioned with raw: a sighting is stored (and written to the changelog) in the
    partition of the raw record that caused it, which the worker owning it recovers."""
    await route(stream, (1, raw_value(stream, MEETING)))
    key = f"acme/bob@{DOMAIN}/<meet@x.example>".encode()
    store: Any = stream.table.data
    assert store._db_for_partition(1).get(key) is not None
    assert store._db_for_partition(0).get(key) is None


async def test_a_packed_record_is_routed_mail_by_mail_addressed_by_offset_and_index(
    stream: StreamApp,
) -> None:
    to_carol = message(("Delivered-To", f"carol@{DOMAIN}"), ("Message-ID", "<c@x.example>"))
    singles = [raw_value(stream, MEETING), raw_value(stream, to_carol), raw_value(stream, MEETING)]
    await route(stream, raw_value(stream, MEETING), pack_value(singles))
    delivered = await drain(stream.delivered, DELIVERY)  # type: ignore[attr-defined]
    # the record at offset 0 is plain; the pack at offset 1 holds three mails
    assert [(d["recipient"], d["raw_origin"]) for d in delivered] == [
        (f"bob@{DOMAIN}", origin(stream, 0, 0)),
        (f"carol@{DOMAIN}", origin(stream, 0, 1) + "/1"),
    ]
    events = await drain(stream.audited, AUDIT_EVENT)  # type: ignore[attr-defined]
    duplicates = [e["details"]["origin"] for e in events if e["event"] == "duplicate"]
    assert duplicates == [origin(stream, 0, 1) + "/0", origin(stream, 0, 1) + "/2"]
    assert len({d["delivery_id"] for d in delivered}) == 2


async def test_a_bad_mail_in_a_pack_is_dead_lettered_alone(stream: StreamApp) -> None:
    good = message(("Delivered-To", f"bob@{DOMAIN}"))
    await route(stream, pack_value([raw_value(stream, b"\r\nno headers"), raw_value(stream, good)]))
    dead = await drain(stream.dead, DEAD_LETTER)  # type: ignore[attr-defined]
    assert [(d["reason_code"], d["raw"] is not None) for d in dead] == [("no-headers", True)]
    delivered = await drain(stream.delivered, DELIVERY)  # type: ignore[attr-defined]
    assert [d["raw_origin"] for d in delivered] == [origin(stream, 0, 0) + "/1"]


async def test_replays_bypass_the_table(stream: StreamApp) -> None:
    two = message(("Envelope-To", f"bob@{DOMAIN}, carol@{DOMAIN}"), ("Message-ID", "<r@x.example>"))
    replayed = raw_value(stream, two, bypass_dedup=True, replay_of="raw/0/1")
    await route(stream, raw_value(stream, two), replayed, replayed)
    delivered = await drain(stream.delivered, DELIVERY)  # type: ignore[attr-defined]
    assert [d["recipient"] for d in delivered] == [f"bob@{DOMAIN}", f"carol@{DOMAIN}"] * 3
    events = await drain(stream.audited, AUDIT_EVENT)  # type: ignore[attr-defined]
    assert [e["details"]["dedup"] for e in events if e["event"] == "routed"] == ["first"] * 2 + [
        "bypassed"
    ] * 4


async def test_route_dead_letters_bad_records_and_keeps_going(stream: StreamApp) -> None:
    good = message(("Delivered-To", f"bob@{DOMAIN}"))
    await route(stream, b"garbage", raw_value(stream, b"\r\nno headers"), raw_value(stream, good))
    dead = await drain(stream.dead, DEAD_LETTER)  # type: ignore[attr-defined]
    assert [(d["reason_code"], d["stage"], d["raw"] is None) for d in dead] == [
        ("unknown-schema", "stream", True),
        ("no-headers", "stream", False),
    ]
    delivered = await drain(stream.delivered, DELIVERY)  # type: ignore[attr-defined]
    assert [d["recipient"] for d in delivered] == [f"bob@{DOMAIN}"]


class FlakyDirectory:
    """Answers from a mapping, after failing its first look-up as a busy server would."""

    def __init__(self) -> None:
        self.calls = 0

    def lookup(self, address: str) -> str | None:
        self.calls += 1
        if self.calls == 1:
            raise TransientError("server busy", retry_after=0)
        return {f"sales@{DOMAIN}": f"Bob.Primary@{DOMAIN}"}.get(address)


async def test_route_uses_the_directory_in_a_thread_and_waits_out_an_outage(tmp_path: Path) -> None:
    directory = FlakyDirectory()
    cfg = config(str(tmp_path), data_dir=str(tmp_path / "stream"))
    app = StreamApp(cfg, ["127.0.0.1:1"], store="memory://", directory_for=lambda tenant: directory)
    app.deliver_topic = app.app.channel()  # type: ignore[assignment]
    app.audit_topic = app.app.channel()  # type: ignore[assignment]
    app.app.finalize()
    delivered = app.deliver_topic.__aiter__()
    data = message(("Delivered-To", f"sales@{DOMAIN}, ghost@{DOMAIN}"), ("Message-ID", "<d@x.example>"))
    await route(app, raw_value(app, data))
    (event,) = [await delivered.get()]
    delivery = codec(DELIVERY).decode(event.value)
    assert delivery["recipient"] == f"bob.primary@{DOMAIN}"
    assert delivery["reasons"][-1] == {
        "kind": "directory",
        "detail": f"sales@{DOMAIN} -> bob.primary@{DOMAIN}",
    }
    assert app.counters.transient_retries == 1 and delivered.empty()


async def test_purge_forgets_only_sightings_past_the_window(tmp_path: Path, clock: Clock) -> None:
    cfg = config(str(tmp_path), dedup_window="30d", data_dir=str(tmp_path / "stream"))
    app = StreamApp(cfg, ["127.0.0.1:1"], clock_ms=clock, store="memory://")
    app.deliver_topic = app.app.channel()  # type: ignore[assignment]
    app.audit_topic = app.app.channel()  # type: ignore[assignment]
    app.app.finalize()
    delivered = app.deliver_topic.__aiter__()
    old = message(("Delivered-To", f"bob@{DOMAIN}"), ("Message-ID", "<old@x.example>"))
    new = message(("Delivered-To", f"bob@{DOMAIN}"), ("Message-ID", "<new@x.example>"))
    start = clock.ms
    async with app.app.agents["route"].test_context() as ctx:
        for at, data in ((start, old), (start + 20 * DAY_MS, new)):
            clock.ms = at
            await ctx.put(raw_value(app, data), key=b"acme/shard")
        clock.ms = start + 30 * DAY_MS + 1
        assert await app.purge_expired() == 1
        assert list(app.table.data.keys()) == [f"acme/bob@{DOMAIN}/<new@x.example>".encode()]
        for data in (old, new):
            await ctx.put(raw_value(app, data), key=b"acme/shard")
    origins = [codec(DELIVERY).decode((await delivered.get()).value)["raw_origin"] for _ in range(3)]
    # the old one again, the new one still a duplicate
    assert origins == [origin(app, 0, 0), origin(app, 0, 1), origin(app, 0, 2)]
    assert delivered.empty() and app.counters.purged == 1
