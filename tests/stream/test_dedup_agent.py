"""The dedup agent with Faust's ``test_context()``: the table decides, channels collect the output."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from mailferry.schemas.codec import AUDIT_EVENT, DELIVERY, Record, codec
from mailferry.streams.app import StreamApp
from mailferry.streams.router import Routed, route_raw

from mailferry.blobstore import LocalBlobStore
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
    app.app.finalize()
    # a channel hands events to its subscribers (iterators) only
    app.delivered = app.deliver_topic.__aiter__()  # type: ignore[attr-defined]
    app.audited = app.audit_topic.__aiter__()  # type: ignore[attr-defined]
    yield app


def candidates(stream: StreamApp, data: bytes, origin: str, mailbox: str = "catchall") -> list[Record]:
    blobs = LocalBlobStore(stream.config.blob_dir)
    _key, raw = build_raw_record(
        RawSource("acme", mailbox, "pop3"), data, blobs=blobs, inline_threshold=1 << 20
    )
    routed = route_raw(raw, config=stream.config, blobs=blobs, origin=origin, now=NOW)
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
    delivered = await drain(stream.delivered, DELIVERY)
    assert [d["raw_origin"] for d in delivered] == ["raw/0/1"]
    events = await drain(stream.audited, AUDIT_EVENT)
    assert [e["event"] for e in events] == ["routed", "duplicate"]
    assert events[1]["details"]["first_origin"] == "raw/0/1"
    assert events[1]["details"]["first_seen_at"] == NOW.isoformat()
    assert events[1]["dedup_key"] == f"acme/bob@{DOMAIN}/<meet@x.example>"
