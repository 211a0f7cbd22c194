"""The dedup agent with Faust's ``test_context()``: the table decides, channels collect the output."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.types.tuples import TP, Message

from mailferry.blobs import LocalBlobStore
from mailferry.errors import TransientError
from mailferry.packing import RAW_PACK
from mailferry.rawrecord import RawSource, build_raw_record
from mailferry.schemas.codec import AUDIT_EVENT, DEAD_LETTER, DELIVERY, RAW_MESSAGE, Record, codec
from mailferry.shard import partition_for
from mailferry.streams.app import StreamApp
from mailferry.streams.dedup_table import PACK_PREFIX
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


def channels_app(tmp_path: Path, clock: Clock, **options: Any) -> StreamApp:
    cfg = config(str(tmp_path), dedup_window="30d", data_dir=str(tmp_path / "stream"))
    app = StreamApp(cfg, ["127.0.0.1:1"], clock_ms=clock, store=STORE, **options)
    app.deliver_topic = app.app.channel()  # type: ignore[assignment]
    app.audit_topic = app.app.channel()  # type: ignore[assignment]
    app.dlt_topic = app.app.channel()  # type: ignore[assignment]
    app.app.finalize()
    # a channel hands events to its subscribers (iterators) only
    app.delivered = app.deliver_topic.__aiter__()  # type: ignore[attr-defined]
    app.audited = app.audit_topic.__aiter__()  # type: ignore[attr-defined]
    app.dead = app.dlt_topic.__aiter__()  # type: ignore[attr-defined]
    return app


@pytest.fixture
def stream(tmp_path: Path, clock: Clock) -> StreamApp:
    return channels_app(tmp_path, clock)


DELIVER_PARTITIONS = 4


@pytest.fixture
def packed(tmp_path: Path, clock: Clock) -> StreamApp:
    return channels_app(tmp_path / "packed", clock, pack_outputs=True, deliver_partitions=DELIVER_PARTITIONS)


def raw_value(stream: StreamApp, data: bytes, mailbox: str = "catchall", **extra: object) -> bytes:
    blobs = LocalBlobStore(stream.config.blob_dir)
    _key, raw = build_raw_record(
        RawSource("acme", mailbox, "pop3"), data, blobs=blobs, inline_threshold=1 << 20
    )
    raw.update(extra)
    return codec(RAW_MESSAGE).encode(raw)


async def drain(channel: Any, name: str) -> list[Record]:
    """The items sent on a channel, packs unpacked."""
    return [item for _event, items in await drain_records(channel, name) for item in items]


async def drain_records(channel: Any, name: str) -> list[tuple[Any, list[Record]]]:
    """Each record sent on a channel with its items."""
    found = []
    while not channel.empty():
        event = await channel.get()
        found.append((event, decoded(name, event.value)))
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
    await route(stream, raw_value(stream, MEETING), RAW_PACK.pack(singles))
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
    await route(stream, RAW_PACK.pack([raw_value(stream, b"\r\nno headers"), raw_value(stream, good)]))
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


RECIPIENTS = [f"user{i}@{DOMAIN}" for i in range(8)]


def fan_pack(stream: StreamApp) -> bytes:
    """One raw pack: a mail to each of ``RECIPIENTS``, the first one twice (a duplicate)."""
    mails = [message(("Delivered-To", r), ("Message-ID", f"<{r}@x.example>")) for r in RECIPIENTS]
    return RAW_PACK.pack([raw_value(stream, m) for m in [*mails, mails[0]]])


def comparable(delivery: Record) -> tuple[object, ...]:
    return (delivery["recipient"], delivery["raw_origin"], delivery["dedup_key"], delivery["sha256"])


async def test_a_raw_pack_leaves_as_one_delivery_record_per_partition_and_one_audit_record(
    tmp_path: Path, clock: Clock, packed: StreamApp
) -> None:
    stream = channels_app(tmp_path / "unpacked", clock, pack_outputs=False)
    await route(stream, fan_pack(stream))
    await route(packed, fan_pack(packed))
    singles = await drain_records(stream.delivered, DELIVERY)  # type: ignore[attr-defined]
    records = await drain_records(packed.delivered, DELIVERY)  # type: ignore[attr-defined]

    partitions = {partition_for(f"acme/{r}".encode(), DELIVER_PARTITIONS) for r in RECIPIENTS}
    assert len(partitions) > 1, "the recipients must spread over several deliver partitions"
    assert sorted(event.message.partition for event, _items in records) == sorted(partitions)
    for event, items in records:
        for item in items:  # each delivery where Kafka's partitioner puts its key
            key = f"{item['tenant']}/{item['recipient']}".encode()
            assert partition_for(key, DELIVER_PARTITIONS) == event.message.partition
        assert partition_for(event.key, DELIVER_PARTITIONS) == event.message.partition
    unpacked = [comparable(item) for _event, items in records for item in items]
    before = [comparable(items[0]) for _event, items in singles]
    assert len(singles) == len(RECIPIENTS) and sorted(unpacked) == sorted(before)

    audit = await drain_records(packed.audited, AUDIT_EVENT)  # type: ignore[attr-defined]
    one_by_one = await drain(stream.audited, AUDIT_EVENT)  # type: ignore[attr-defined]
    assert len(audit) == 1
    events = audit[0][1]
    assert [(e["event"], e["recipient"]) for e in events] == [
        (e["event"], e["recipient"]) for e in one_by_one
    ]
    assert [e["event"] for e in events].count("duplicate") == 1


async def test_packs_stay_under_the_record_limit(tmp_path: Path, clock: Clock) -> None:
    app = channels_app(tmp_path, clock, pack_outputs=True, deliver_partitions=1)
    app.collector._deliveries.limit = app.collector._audit.limit = 3000
    await route(app, fan_pack(app))
    records = await drain_records(app.delivered, DELIVERY)  # type: ignore[attr-defined]
    audit = await drain_records(app.audited, AUDIT_EVENT)  # type: ignore[attr-defined]
    assert len(records) > 1 and len(audit) > 1
    assert all(len(event.value) <= 3000 or len(items) == 1 for event, items in records + audit)
    assert [item["recipient"] for _event, items in records for item in items] == RECIPIENTS


async def test_the_sightings_of_a_record_reach_the_changelog_as_one_record(
    packed: StreamApp, tmp_path: Path, clock: Clock
) -> None:
    sent: list[tuple[int | None, bytes, Any]] = []
    real = packed.table.send_changelog

    def watch(partition: int | None, key: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append((partition, key, value))
        return real(partition, key, value, *args, **kwargs)

    packed.table.send_changelog = watch  # type: ignore[method-assign]
    await route(packed, (1, fan_pack(packed)))
    assert [(p, k) for p, k, _v in sent] == [(1, PACK_PREFIX + origin(packed, 1, 0).encode())]
    sightings = dict(sent[0][2]["sightings"])
    assert sorted(sightings) == sorted(f"acme/{r}/<{r}@x.example>" for r in RECIPIENTS)

    # what the changelog holds rebuilds the table (recovery after a lost data folder or a
    # rebalance), here into an app of its own with the memory store
    fresh = StreamApp(
        config(str(tmp_path / "fresh"), dedup_window="30d"),
        ["127.0.0.1:1"],
        clock_ms=clock,
        store="memory://",
    )
    changelog = fresh.table.changelog_topic.get_topic_name()
    records = [changelog_event(fresh, changelog, 1, offset, k, v) for offset, (_p, k, v) in enumerate(sent)]
    fresh.table.apply_changelog_batch(records)
    assert sorted(fresh.table.data.keys()) == sorted(k.encode() for k in sightings)
    assert all(fresh.table.data[k.encode()] == v for k, v in sightings.items())


def changelog_event(app: StreamApp, topic: str, partition: int, offset: int, key: bytes, value: Any) -> Any:
    """A changelog record as Faust's recovery hands it to the table (key raw, value JSON)."""
    message = Message(topic, partition, offset, 0.0, 0, None, key, json.dumps(value).encode(), None)
    message.tp = TP(topic, partition)
    return faust.Event(app.app, key, value, None, message)
