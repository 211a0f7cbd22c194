"""The dedup agent with Faust's ``test_context()``: the table decides, channels collect the output."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from mailferry.schemas.codec import AUDIT_EVENT, DEAD_LETTER, DELIVERY, RAW_MESSAGE, Record, codec
from mailferry.streams.app import StreamApp
from mailferry.streams.router import Routed, route_raw

from mailferry.blobs import LocalBlobStore
from mailferry.errors import TransientError
from mailferry.rawrecord import RawSource, build_raw_record
from tests.stream.factories import DOMAIN, config, message

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
    app.dedup_topic = app.app.channel()  # type: ignore[assignment]
    app.dlt_topic = app.app.channel()  # type: ignore[assignment]
    app.app.finalize()
    # a channel hands events to its subscribers (iterators) only
    app.delivered = app.deliver_topic.__aiter__()  # type: ignore[attr-defined]
    app.audited = app.audit_topic.__aiter__()  # type: ignore[attr-defined]
    app.rekeyed = app.dedup_topic.__aiter__()  # type: ignore[attr-defined]
    app.dead = app.dlt_topic.__aiter__()  # type: ignore[attr-defined]
    yield app


def candidates(stream: StreamApp, data: bytes, origin: str, mailbox: str = "catchall") -> list[Record]:
    blobs = LocalBlobStore(stream.config.blob_dir)
    _key, raw = build_raw_record(
        RawSource("acme", mailbox, "pop3"), data, blobs=blobs, inline_threshold=1 << 20
    )
    routed = route_raw(
        raw, config=stream.config, blobs=blobs, origin=origin, now=NOW, trace_key=stream.trace_key
    )
    assert isinstance(routed, Routed)
    return [c.delivery for c in routed.candidates]


async def drain(channel: Any, name: str) -> list[Record]:
    found = []
    while not channel.empty():
        event = await channel.get()
        found.append(codec(name).decode(event.value))
    return found


async def put_all(stream: StreamApp, deliveries: list[Record]) -> None:
    agent = stream.app.agents["dedup"]
    async with agent.test_context() as ctx:
        for delivery in deliveries:
            await ctx.put(codec(DELIVERY).encode(delivery), key=delivery["dedup_key"].encode())


MEETING = message(("Delivered-To", f"bob@{DOMAIN}"), ("Message-ID", "<meet@x.example>"))


async def test_second_copy_is_dropped_with_first_sighting(stream: StreamApp) -> None:
    first = candidates(stream, MEETING, "raw/0/1")
    second = candidates(stream, MEETING, "raw/3/7")
    await put_all(stream, first + second)
    delivered = await drain(stream.delivered, DELIVERY)  # type: ignore[attr-defined]
    assert [d["raw_origin"] for d in delivered] == ["raw/0/1"]
    events = await drain(stream.audited, AUDIT_EVENT)  # type: ignore[attr-defined]
    assert [e["event"] for e in events] == ["routed", "duplicate"]
    assert events[1]["details"]["first_origin"] == "raw/0/1"
    assert events[1]["details"]["first_seen_at"] == NOW.isoformat()
    assert events[1]["dedup_key"] == f"acme/bob@{DOMAIN}/<meet@x.example>"


async def test_window_is_measured_from_the_first_sighting(stream: StreamApp, clock: Clock) -> None:
    window = 30 * DAY_MS
    start = clock.ms
    steps = [
        (start, "raw/0/1"),
        (start + window - 1, "raw/0/2"),  # one millisecond inside the window: still a duplicate
        (start + window, "raw/0/3"),  # a full window later: delivered again, remembered anew
        (start + window + DAY_MS, "raw/0/4"),
    ]
    # one test context: entering another one clears the channels' queues
    async with stream.app.agents["dedup"].test_context() as ctx:
        for at, origin in steps:
            clock.ms = at
            (delivery,) = candidates(stream, MEETING, origin)
            await ctx.put(codec(DELIVERY).encode(delivery), key=delivery["dedup_key"].encode())
    delivered = await drain(stream.delivered, DELIVERY)  # type: ignore[attr-defined]
    assert [d["raw_origin"] for d in delivered] == ["raw/0/1", "raw/0/3"]
    events = await drain(stream.audited, AUDIT_EVENT)  # type: ignore[attr-defined]
    assert [e["event"] for e in events] == ["routed", "duplicate", "routed", "duplicate"]
    assert events[3]["details"]["first_origin"] == "raw/0/3"


async def test_reprocessing_the_same_raw_record_is_not_a_duplicate(stream: StreamApp) -> None:
    copy = candidates(stream, MEETING, "raw/0/1")
    await put_all(stream, copy + copy)
    delivered = await drain(stream.delivered, DELIVERY)  # type: ignore[attr-defined]
    assert [d["delivery_id"] for d in delivered] == [copy[0]["delivery_id"]] * 2
    events = await drain(stream.audited, AUDIT_EVENT)  # type: ignore[attr-defined]
    assert [e["details"]["dedup"] for e in events] == ["first", "reprocessed"]


async def test_same_message_id_to_two_recipients_reaches_both(stream: StreamApp) -> None:
    to_bob = message(("Delivered-To", f"bob@{DOMAIN}"), ("Message-ID", "<meet@x.example>"))
    to_carol = message(("Delivered-To", f"carol@{DOMAIN}"), ("Message-ID", "<meet@x.example>"))
    await put_all(stream, candidates(stream, to_bob, "raw/0/1") + candidates(stream, to_carol, "raw/0/2"))
    delivered = await drain(stream.delivered, DELIVERY)  # type: ignore[attr-defined]
    assert [d["recipient"] for d in delivered] == [f"bob@{DOMAIN}", f"carol@{DOMAIN}"]


async def test_catch_all_and_personal_copy_reach_the_recipient_once(stream: StreamApp) -> None:
    data = message(("Delivered-To", f"alice@{DOMAIN}"), ("Message-ID", "<both@x.example>"))
    from_catchall = candidates(stream, data, "raw/0/1", mailbox="catchall")
    from_personal = candidates(stream, data, "raw/1/1", mailbox="alice-private")
    await put_all(stream, from_catchall + from_personal)
    delivered = await drain(stream.delivered, DELIVERY)  # type: ignore[attr-defined]
    assert [(d["recipient"], d["mailbox_id"]) for d in delivered] == [(f"alice@{DOMAIN}", "catchall")]
    events = await drain(stream.audited, AUDIT_EVENT)  # type: ignore[attr-defined]
    assert events[1]["event"] == "duplicate" and events[1]["mailbox_id"] == "alice-private"
    assert events[1]["details"]["first_mailbox_id"] == "catchall"


async def route(stream: StreamApp, *values: bytes) -> None:
    agent = stream.app.agents["route"]
    async with agent.test_context() as ctx:
        for value in values:
            await ctx.put(value, key=b"acme/catchall")


def raw_value(stream: StreamApp, data: bytes, **extra: object) -> bytes:
    blobs = LocalBlobStore(stream.config.blob_dir)
    _key, raw = build_raw_record(
        RawSource("acme", "catchall", "pop3"), data, blobs=blobs, inline_threshold=1 << 20
    )
    raw.update(extra)
    return codec(RAW_MESSAGE).encode(raw)


async def test_route_rekeys_by_dedup_key_and_replays_bypass_the_table(stream: StreamApp) -> None:
    two = message(("Envelope-To", f"bob@{DOMAIN}, carol@{DOMAIN}"), ("Message-ID", "<r@x.example>"))
    await route(
        stream, raw_value(stream, two), raw_value(stream, two, bypass_dedup=True, replay_of="raw/0/1")
    )
    rekeyed = []
    while not stream.rekeyed.empty():  # type: ignore[attr-defined]
        rekeyed.append((await stream.rekeyed.get()).key)  # type: ignore[attr-defined]
    assert rekeyed == [
        f"acme/bob@{DOMAIN}/<r@x.example>".encode(),
        f"acme/carol@{DOMAIN}/<r@x.example>".encode(),
    ]
    delivered = await drain(stream.delivered, DELIVERY)  # type: ignore[attr-defined]
    assert [d["recipient"] for d in delivered] == [f"bob@{DOMAIN}", f"carol@{DOMAIN}"]
    events = await drain(stream.audited, AUDIT_EVENT)  # type: ignore[attr-defined]
    assert {e["details"]["dedup"] for e in events if e["event"] == "routed"} == {"bypassed"}


async def test_route_dead_letters_bad_records_and_keeps_going(stream: StreamApp) -> None:
    good = message(("Delivered-To", f"bob@{DOMAIN}"))
    await route(stream, b"garbage", raw_value(stream, b"\r\nno headers"), raw_value(stream, good))
    dead = await drain(stream.dead, DEAD_LETTER)  # type: ignore[attr-defined]
    assert [(d["reason_code"], d["stage"], d["raw"] is None) for d in dead] == [
        ("unknown-schema", "stream", True),
        ("no-headers", "stream", False),
    ]
    assert not stream.rekeyed.empty()  # type: ignore[attr-defined]


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
    app.dedup_topic = app.app.channel()  # type: ignore[assignment]
    app.audit_topic = app.app.channel()  # type: ignore[assignment]
    app.app.finalize()
    rekeyed = app.dedup_topic.__aiter__()
    data = message(("Delivered-To", f"sales@{DOMAIN}, ghost@{DOMAIN}"), ("Message-ID", "<d@x.example>"))
    await route(app, raw_value(app, data))
    (event,) = [await rekeyed.get()]
    delivery = codec(DELIVERY).decode(event.value)
    assert delivery["recipient"] == f"bob.primary@{DOMAIN}"
    assert delivery["reasons"][-1] == {
        "kind": "directory",
        "detail": f"sales@{DOMAIN} -> bob.primary@{DOMAIN}",
    }
    assert app.counters.transient_retries == 1 and rekeyed.empty()


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
    async with app.app.agents["dedup"].test_context() as ctx:
        for at, data, origin in ((start, old, "raw/0/1"), (start + 20 * DAY_MS, new, "raw/0/2")):
            clock.ms = at
            (delivery,) = candidates(app, data, origin)
            await ctx.put(codec(DELIVERY).encode(delivery), key=delivery["dedup_key"].encode())
        clock.ms = start + 30 * DAY_MS + 1
        assert await app.purge_expired() == 1
        assert list(app.table.data.keys()) == [f"acme/bob@{DOMAIN}/<new@x.example>".encode()]
        for data, origin in ((old, "raw/0/3"), (new, "raw/0/4")):
            (delivery,) = candidates(app, data, origin)
            await ctx.put(codec(DELIVERY).encode(delivery), key=delivery["dedup_key"].encode())
    origins = [codec(DELIVERY).decode((await delivered.get()).value)["raw_origin"] for _ in range(3)]
    assert origins == ["raw/0/1", "raw/0/2", "raw/0/3"]  # the old one again, the new one still a duplicate
    assert delivered.empty() and app.counters.purged == 1
