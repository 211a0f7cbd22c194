"""The audit index against the real broker: traces through it, rebuilds, retention,
replicas over HTTP, the scan fallback, and the export."""

from __future__ import annotations

import csv
import io
import json
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka import TopicPartition
from typer.testing import CliRunner

from mailferry.audit import audit_event
from mailferry.audit_export import COLUMNS, export_events
from mailferry.audit_index.access import LocalIndex, RemoteIndex
from mailferry.audit_index.indexer import Indexer
from mailferry.audit_index.server import serve
from mailferry.audit_index.store import IndexStore
from mailferry.audit_trace import trace_message
from mailferry.cli.main import app
from mailferry.config.kafka import KafkaConfig
from mailferry.kafka.clients import new_admin, new_consumer, new_producer
from mailferry.kafka.topics import AUDIT, full_name
from mailferry.packing import AUDIT_PACK

from ..topics import create_topics

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def story(n: int, at: datetime = T0) -> list[tuple[bytes, bytes]]:
    """The events one catch-all message leaves: fetched (hash only), routed and delivered to
    two recipients (Message-ID, dedup key, delivery id)."""
    sha, mid = f"{n:064x}", f"<Msg-{n}@Example.org>"
    events = [audit_event("fetched", stage="fetch", tenant="acme", mailbox_id="c", sha256=sha, at=at)]
    for who in ("bob", "eve"):
        dk = f"acme|{who}@acme.example|msg-{n}@example.org"
        events += [
            audit_event(
                "routed",
                stage="stream",
                tenant="acme",
                message_id=mid,
                sha256=sha,
                dedup_key=dk,
                recipient=f"{who}@acme.example",
                at=at + timedelta(seconds=1),
            ),
            audit_event(
                "delivered",
                stage="deliver",
                tenant="acme",
                message_id=mid,
                sha256=sha,
                dedup_key=dk,
                recipient=f"{who}@acme.example",
                details={"delivery_id": f"d-{n}-{who}"},
                at=at + timedelta(seconds=2),
            ),
        ]
    return events


def packed_stories(ns: range) -> list[tuple[bytes, bytes]]:
    """The stories of ``ns`` as a packing pipeline writes them: per stage one record holding
    every message's events, recipients interleaved, keyed by its first event, so most events
    sit in a record (and a partition) of another message's key."""
    stories = [story(n) for n in ns]
    stages = [[s[0] for s in stories]] + [[s[i + k] for k in (0, 2) for s in stories] for i in (1, 2)]
    return [(events[0][0], AUDIT_PACK.pack([value for _key, value in events])) for events in stages]


def send(kafka: KafkaConfig, events: list[tuple[bytes, bytes]], timestamp: datetime | None = None) -> None:
    producer = new_producer(kafka, list(kafka.bootstrap_servers), acks="all")
    millis = int(timestamp.timestamp() * 1000) if timestamp else None
    for key, value in events:
        producer.send(full_name(kafka, AUDIT), key=key, value=value, timestamp_ms=millis)
    producer.flush()
    producer.close()


@pytest.fixture
def topics(kafka_config: KafkaConfig) -> KafkaConfig:
    create_topics(kafka_config, 1)
    return kafka_config


def build(kafka: KafkaConfig, folder: Path, **options: int) -> IndexStore:
    topic = full_name(kafka, AUDIT)
    store = IndexStore(folder, topic=topic)
    indexer = Indexer(kafka, list(kafka.bootstrap_servers), topic, store, **options)
    try:
        indexer.catch_up()
    finally:
        indexer.close()
    return store


def ids(events: list[dict[str, object]]) -> list[object]:
    return [e["event_id"] for e in events]


def test_a_trace_through_the_index_equals_the_full_scan_and_survives_a_rebuild(
    topics: KafkaConfig, tmp_path: Path
) -> None:
    send(topics, [e for n in range(1, 6) for e in story(n)])
    servers = list(topics.bootstrap_servers)
    store = build(topics, tmp_path / "index")
    rows = store.row_count()
    for wanted in ("<msg-3@example.org>", f"{3:064x}", "d-3-eve", "acme|bob@acme.example|msg-3@example.org"):
        by_index = trace_message(topics, servers, wanted, index=LocalIndex(store))
        by_scan = trace_message(topics, servers, wanted)
        assert by_index.via == "index" and by_scan.via == "scan"
        assert ids(by_index.events) == ids(by_scan.events), wanted
        assert [e["event"] for e in by_index.events] == [
            "fetched",
            "routed",
            "routed",
            "delivered",
            "delivered",
        ]
    store.close()

    shutil.rmtree(tmp_path / "index")
    rebuilt = build(topics, tmp_path / "index")
    assert rebuilt.row_count() == rows
    assert len(trace_message(topics, servers, "<msg-5@example.org>", index=LocalIndex(rebuilt)).events) == 5


def test_a_trace_finds_every_event_of_a_message_packed_with_other_messages_events(
    topics: KafkaConfig, tmp_path: Path
) -> None:
    send(topics, story(1) + packed_stories(range(2, 6)))
    servers = list(topics.bootstrap_servers)
    store = build(topics, tmp_path / "index")
    # d-4-eve finds one event of a pack; the Message-ID it carries leads back to that same
    # pack, which the position reader does not return twice
    for wanted in ("d-4-eve", "<msg-4@example.org>", f"{4:064x}", "acme|bob@acme.example|msg-4@example.org"):
        by_index = trace_message(topics, servers, wanted, index=LocalIndex(store))
        by_scan = trace_message(topics, servers, wanted)
        assert ids(by_index.events) == ids(by_scan.events), wanted
        assert [(e["event"], e["sha256"]) for e in by_index.events] == [
            (name, f"{4:064x}") for name in ("fetched", "routed", "routed", "delivered", "delivered")
        ], wanted
    addresses = [e["_offset"].split("/") for e in by_index.events]
    assert all(len(parts) == 3 for parts in addresses)  # partition/offset/index inside a pack
    assert len({tuple(parts[:2]) for parts in addresses}) == 3  # one record per stage
    plain = trace_message(topics, servers, "<msg-1@example.org>", index=LocalIndex(store))
    assert len(plain.events) == 5 and all(e["_offset"].count("/") == 1 for e in plain.events)
    store.close()


def test_an_interrupted_build_resumes_without_gaps_or_doubles(topics: KafkaConfig, tmp_path: Path) -> None:
    send(topics, [e for n in range(1, 9) for e in story(n)])
    whole = build(topics, tmp_path / "whole").row_count()
    topic = full_name(topics, AUDIT)
    store = IndexStore(tmp_path / "parts", topic=topic)
    first = Indexer(topics, list(topics.bootstrap_servers), topic, store, max_records=3)
    deadline = time.monotonic() + 30
    while store.row_count() == 0 and time.monotonic() < deadline:
        first.step()
    first.close()
    partial = store.row_count()
    store.close()
    resumed = build(topics, tmp_path / "parts")
    assert 0 < partial < whole == resumed.row_count()


def test_events_beyond_retention_drop_out_and_the_trace_says_where_history_ends(
    topics: KafkaConfig, tmp_path: Path
) -> None:
    send(topics, story(1))
    topic = full_name(topics, AUDIT)
    servers = list(topics.bootstrap_servers)
    store = build(topics, tmp_path / "index")
    assert len(trace_message(topics, servers, "<msg-1@example.org>", index=LocalIndex(store)).events) == 5

    consumer = new_consumer(topics, servers)
    tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    ends = consumer.end_offsets(tps)
    consumer.close()
    admin = new_admin(topics, servers)
    admin.delete_records({tp: offset for tp, offset in ends.items() if offset})
    admin.close()
    send(topics, story(2))
    indexer = Indexer(topics, servers, topic, store)
    indexer.catch_up()
    assert indexer.purge() > 0
    indexer.close()

    gone = trace_message(topics, servers, "<msg-1@example.org>", index=LocalIndex(store))
    assert gone.events == []
    assert "first seen 2026-11-01 12:00:01 UTC; all its events are beyond" in gone.notes[-1]
    kept = trace_message(topics, servers, "<msg-2@example.org>", index=LocalIndex(store))
    assert len(kept.events) == 5 and kept.notes[1:] == []


@pytest.fixture
def config_file(tmp_path: Path, topics: KafkaConfig) -> Iterator[Path]:
    path = tmp_path / "c.toml"
    path.write_text(
        f'state_dir = "{tmp_path / "state"}"\n' + topics.connection_toml(),
        encoding="utf-8",
    )
    yield path


def test_without_an_index_the_trace_scans_a_bounded_window_and_says_so(
    topics: KafkaConfig, config_file: Path
) -> None:
    send(topics, story(1), timestamp=datetime.now(UTC) - timedelta(days=3))
    runner = CliRunner()
    recent = runner.invoke(app, ["-c", str(config_file), "audit", "trace", "--json", "<msg-1@example.org>"])
    assert recent.exit_code == 0, recent.output
    answer = json.loads(recent.output)
    assert answer["via"] == "scan" and answer["events"] == []
    assert "no audit index reachable" in answer["notes"][0]
    since = (datetime.now(UTC) - timedelta(days=4)).strftime("%Y-%m-%dT%H:%M:%S")
    wider = runner.invoke(
        app, ["-c", str(config_file), "audit", "trace", "--json", "--since", since, "msg-1@example.org"]
    )
    assert len(json.loads(wider.output)["events"]) == 5


def test_a_replica_answers_over_http_and_the_cli_uses_it(
    topics: KafkaConfig, config_file: Path, tmp_path: Path
) -> None:
    send(topics, story(7))
    build(topics, tmp_path / "replica").close()
    server = serve(tmp_path / "replica", full_name(topics, AUDIT), "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        assert RemoteIndex(url).healthy()
        config_file.write_text(
            config_file.read_text() + f'[audit_index]\nurls = ["http://127.0.0.1:1", "{url}"]\n'
        )
        result = CliRunner().invoke(app, ["-c", str(config_file), "audit", "trace", "--json", "d-7-bob"])
        assert result.exit_code == 0, result.output
        answer = json.loads(result.output)
        assert answer["via"] == "index" and url in answer["notes"][0]
        assert len(answer["events"]) == 5
    finally:
        server.shutdown()


def test_export_writes_the_range_in_the_documented_columns(topics: KafkaConfig, tmp_path: Path) -> None:
    inside, outside = T0, T0 + timedelta(hours=2)
    send(topics, story(1) + story(2), timestamp=inside)
    send(topics, story(3), timestamp=outside)
    send(topics, [audit_event("fetched", stage="fetch", tenant="globex", sha256="ff")], timestamp=inside)
    servers = list(topics.bootstrap_servers)
    window = {"since": T0 - timedelta(minutes=1), "until": T0 + timedelta(hours=1)}

    lines = io.StringIO()
    assert export_events(topics, servers, lines, tenant="acme", **window) == 10
    rows = [json.loads(line) for line in lines.getvalue().splitlines()]
    assert all(list(row) == list(COLUMNS) and row["tenant"] == "acme" for row in rows)
    assert {row["message_id"] for row in rows} == {None, "<Msg-1@Example.org>", "<Msg-2@Example.org>"}
    assert rows[0]["at"].endswith("Z") and isinstance(rows[0]["details"], dict)

    table = io.StringIO()
    assert export_events(topics, servers, table, fmt="csv", **window) == 11
    parsed = list(csv.reader(io.StringIO(table.getvalue())))
    assert tuple(parsed[0]) == COLUMNS and len(parsed) == 12
    assert all(isinstance(json.loads(row[COLUMNS.index("details")]), dict) for row in parsed[1:])
    assert {row[-1] for row in parsed[1:]} == {""}  # no index: plain records


def test_export_writes_every_event_of_a_pack_with_its_index(topics: KafkaConfig) -> None:
    send(topics, packed_stories(range(1, 3)), timestamp=T0)
    lines = io.StringIO()
    window = {"since": T0 - timedelta(minutes=1), "until": T0 + timedelta(hours=1)}
    assert export_events(topics, list(topics.bootstrap_servers), lines, **window) == 10
    rows = [json.loads(line) for line in lines.getvalue().splitlines()]
    records = {(row["partition"], row["offset"]): [] for row in rows}
    for row in rows:
        records[row["partition"], row["offset"]].append(row["index"])
    assert sorted(map(len, records.values())) == [2, 4, 4]
    assert all(indexes == list(range(len(indexes))) for indexes in records.values())
    assert [row["message_id"] for row in rows if row["event"] == "delivered"] == [
        "<Msg-1@Example.org>",
        "<Msg-2@Example.org>",
    ] * 2
