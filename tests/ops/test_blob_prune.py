"""``mailferry blobs prune``: the pure selection, the store's mtime refresh, and the real broker."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import TopicPartition
from typer.testing import CliRunner

from mailferry.blob_prune import (
    IN_GRACE,
    ORPHAN,
    REFERENCED,
    BlobFile,
    classify,
    cutoff_for,
    list_blob_files,
    plan_prune,
    recover_aside,
    reference_topics,
    references_of,
    remove_if_stale,
    unread_partitions,
)
from mailferry.blobs import LocalBlobStore
from mailferry.cli.main import app
from mailferry.config.kafka import KafkaConfig
from mailferry.errors import SetupError
from mailferry.kafka.clients import new_producer
from mailferry.kafka.topics import DELIVER, DLT, RAW, full_name, retry_topic
from mailferry.packing import DELIVERY_PACK
from mailferry.rawrecord import RawSource, build_raw_record, encode_raw
from mailferry.schemas import DEAD_LETTER, DELIVERY, RAW_MESSAGE, codec

from ..factories import records
from ..topics import create_topics

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
OLD = (NOW - 3 * DAY).timestamp()
FRESH = (NOW - timedelta(hours=2)).timestamp()


def _blob(name: str, mtime: float, size: int = 10) -> BlobFile:
    return BlobFile(f"sha256:{name}", Path(name), size, mtime)


# --- pure selection ---------------------------------------------------------------------


def test_only_unreferenced_blobs_older_than_the_grace_period_are_deleted() -> None:
    blobs = [_blob("ref-old", OLD), _blob("ref-new", FRESH), _blob("orph-old", OLD), _blob("orph-new", FRESH)]
    referenced = {"sha256:ref-old", "sha256:ref-new"}
    decisions = {d.blob.reference: (d.action, d.reason) for d in plan_prune(blobs, referenced, NOW, DAY)}
    assert decisions == {
        "sha256:ref-old": ("keep", REFERENCED),
        "sha256:ref-new": ("keep", REFERENCED),
        "sha256:orph-old": ("delete", ORPHAN),
        "sha256:orph-new": ("keep", IN_GRACE),
    }


def test_grace_boundary_and_zero_grace() -> None:
    cutoff = cutoff_for(NOW, DAY)
    assert classify(_blob("a", cutoff), set(), cutoff).action == "keep"
    assert classify(_blob("a", cutoff - 0.001), set(), cutoff).action == "delete"
    assert classify(_blob("a", FRESH), set(), cutoff_for(NOW, timedelta(0))).action == "delete"
    with pytest.raises(ValueError):
        cutoff_for(NOW, -DAY)


def _in_blob(blob_ref: str) -> dict[str, Any]:
    return {"inline": None, "blob_ref": blob_ref, "sha256": blob_ref.removeprefix("sha256:")}


def _delivery(blob_ref: str | None) -> dict[str, Any]:
    return dict(records.delivery(**_in_blob(blob_ref)) if blob_ref else records.delivery())


def _raw(blob_ref: str) -> dict[str, Any]:
    return dict(records.raw_message(**_in_blob(blob_ref)))


def _dead_letter(delivery: dict[str, Any] | None, raw: dict[str, Any] | None) -> dict[str, Any]:
    return dict(records.dead_letter(stage="deliver" if delivery else "stream", delivery=delivery, raw=raw))


def test_references_of_each_schema_survive_an_encode_decode_round_trip() -> None:
    def round_trip(schema: str, record: dict[str, Any]) -> dict[str, Any]:
        return codec(schema).decode(codec(schema).encode(record))

    assert references_of(RAW_MESSAGE, round_trip(RAW_MESSAGE, _raw("sha256:aa"))) == ["sha256:aa"]
    assert references_of(DELIVERY, round_trip(DELIVERY, _delivery("sha256:bb"))) == ["sha256:bb"]
    assert references_of(DELIVERY, round_trip(DELIVERY, _delivery(None))) == []
    both = _dead_letter(_delivery("sha256:cc"), _raw("sha256:dd"))
    assert references_of(DEAD_LETTER, round_trip(DEAD_LETTER, both)) == ["sha256:cc", "sha256:dd"]
    assert references_of(DEAD_LETTER, round_trip(DEAD_LETTER, _dead_letter(None, None))) == []


def test_reference_topics_refuse_a_missing_topic_and_include_leftover_retry_tiers() -> None:
    kafka = KafkaConfig(topic_prefix="p")
    base = {"p.raw", "p.deliver", "p.deliver.dlt", "p.deliver.retry.0", "p.audit"}
    assert [t for t, _ in reference_topics(kafka, base | {"p.deliver.retry.7", "q.deliver.retry.1"}, 1)] == [
        "p.raw",
        "p.deliver",
        "p.deliver.dlt",
        "p.deliver.retry.0",
        "p.deliver.retry.7",
    ]
    with pytest.raises(SetupError, match=r"p\.raw"):
        reference_topics(kafka, base - {"p.raw"}, 1)
    with pytest.raises(SetupError, match=r"p\.deliver\.retry\.1"):
        reference_topics(kafka, base, 2)


def test_a_scan_that_stopped_short_of_the_end_offsets_is_reported() -> None:
    raw0, raw1, dlt0 = TopicPartition("p.raw", 0), TopicPartition("p.raw", 1), TopicPartition("p.dlt", 0)
    ends = {raw0: 10, raw1: 3, dlt0: 1}
    assert unread_partitions(ends, {raw0: 9, raw1: 2, dlt0: 0}) == []
    assert unread_partitions(ends, {raw0: 12, raw1: 2, dlt0: 0}) == []  # records added meanwhile
    assert unread_partitions(ends, {raw0: 7, raw1: 2}) == ["p.dlt[0]", "p.raw[0]"]


# --- the store's side: mtime refresh and a careful delete -------------------------------


def test_re_put_refreshes_the_mtime_of_an_existing_blob(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    ref = store.put(b"same content" * 1000)
    [listed] = list(list_blob_files(tmp_path))
    os.utime(listed.path, (OLD, OLD))
    assert store.put(b"same content" * 1000) == ref
    [again] = list(list_blob_files(tmp_path))
    assert again.mtime > time.time() - 60
    assert store.read(ref) == b"same content" * 1000
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".incoming-")]


def test_listing_skips_in_flight_writes_and_foreign_files(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    ref = store.put(b"a blob")
    (tmp_path / ".incoming-xyz").write_bytes(b"half written")
    (tmp_path / "ab" / "cd").mkdir(parents=True)
    (tmp_path / "ab" / "cd" / "notes.txt").write_text("not a blob")
    assert [b.reference for b in list_blob_files(tmp_path)] == [ref]
    assert list(list_blob_files(tmp_path / "missing")) == []


def test_remove_if_stale_keeps_a_blob_re_put_after_it_was_listed(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    ref = store.put(b"content")
    [blob] = list(list_blob_files(tmp_path))
    os.utime(blob.path, (OLD, OLD))
    [listed_old] = list(list_blob_files(tmp_path))
    store.put(b"content")  # a fetcher wrote it again after the listing
    assert remove_if_stale(listed_old, cutoff_for(NOW, DAY)) is False
    assert store.exists(ref)
    os.utime(blob.path, (OLD, OLD))
    assert remove_if_stale(listed_old, cutoff_for(NOW, DAY)) is True
    assert not store.exists(ref)
    assert list(blob.path.parent.iterdir()) == []


def test_a_blob_left_aside_by_a_crashed_prune_is_put_back(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    ref = store.put(b"renamed aside, then the prune died")
    [blob] = list(list_blob_files(tmp_path))
    blob.path.rename(blob.path.with_name(".pruning-" + blob.path.name))
    assert not store.exists(ref)
    assert recover_aside(tmp_path) == 1
    assert store.read(ref) == b"renamed aside, then the prune died"
    assert recover_aside(tmp_path) == 0


# --- the real broker --------------------------------------------------------------------


@pytest.mark.integration
def test_prune_against_the_broker_deletes_only_old_orphans(tmp_path: Path, kafka_config: KafkaConfig) -> None:
    create_topics(kafka_config, 2)
    state = tmp_path / "state"
    config_file = tmp_path / "c.toml"
    config_file.write_text(
        f'state_dir = "{state}"\n' + kafka_config.connection_toml() + '[retry]\ntiers = ["1m", "10m"]\n'
        '[blob_store]\nkind = "local"\n',
        encoding="utf-8",
    )
    store = LocalBlobStore(state / "blobs")
    key, raw_record = build_raw_record(
        RawSource("acme", "catchall", "pop3", source_uid="1"),
        b"Subject: big\r\n\r\n" + b"x" * 4096,
        blobs=store,
        inline_threshold=1024,
    )
    raw_ref = raw_record["blob_ref"]
    dlt_delivery_ref = store.put(b"dead letter delivery")
    dlt_raw_ref = store.put(b"dead letter raw")
    retry_ref = store.put(b"waiting in retry tier 1")
    packed_ref = store.put(b"second delivery of a packed deliver record")
    packed_retry_ref = store.put(b"third delivery of a packed record on retry tier 0")
    old_orphan = store.put(b"expired long ago")
    new_orphan = store.put(b"fetched, record not acknowledged yet")
    for blob in list_blob_files(state / "blobs"):
        if blob.reference != new_orphan:
            os.utime(blob.path, (time.time() - 3 * 86400,) * 2)

    producer = new_producer(kafka_config, list(kafka_config.bootstrap_servers))
    producer.send(full_name(kafka_config, RAW), key=key, value=encode_raw(raw_record))
    producer.send(full_name(kafka_config, RAW), key=b"junk", value=b"not avro at all")
    producer.send(full_name(kafka_config, DELIVER), value=codec(DELIVERY).encode(_delivery(None)))
    producer.send(full_name(kafka_config, retry_topic(1)), value=codec(DELIVERY).encode(_delivery(retry_ref)))
    producer.send(full_name(kafka_config, DELIVER), value=_pack(None, packed_ref))
    producer.send(full_name(kafka_config, retry_topic(0)), value=_pack(None, None, packed_retry_ref))
    dead = _dead_letter(_delivery(dlt_delivery_ref), _raw(dlt_raw_ref))
    producer.send(full_name(kafka_config, DLT), value=codec(DEAD_LETTER).encode(dead))
    producer.flush()
    producer.close()
    kept = {raw_ref, dlt_delivery_ref, dlt_raw_ref, retry_ref, packed_ref, packed_retry_ref, new_orphan}
    runner = CliRunner()

    dry = runner.invoke(app, ["-c", str(config_file), "blobs", "prune", "--dry-run"], terminal_width=200)
    assert dry.exit_code == 0, dry.output
    assert "would delete" in dry.output and old_orphan[:40] in dry.output  # the table folds it
    assert {b.reference for b in list_blob_files(state / "blobs")} == kept | {old_orphan}

    real = runner.invoke(app, ["-c", str(config_file), "blobs", "prune", "--grace", "1d"], terminal_width=200)
    assert real.exit_code == 0, real.output
    assert {b.reference for b in list_blob_files(state / "blobs")} == kept
    assert "7 records read from 5 topics (1 of unknown schema skipped), 6 blobs referenced" in real.output
    assert "deleted: unreferenced and older than the grace period │     1" in real.output
    assert old_orphan[:40] in real.output

    base = ["-c", str(config_file), "blobs", "prune"]
    again = runner.invoke(app, [*base, "--grace", "0s"], terminal_width=200)
    assert again.exit_code == 0, again.output
    assert {b.reference for b in list_blob_files(state / "blobs")} == kept - {new_orphan}


def _pack(*blob_refs: str | None) -> bytes:
    """A packed deliver record (``mailferry.packing``) of one delivery per reference."""
    return DELIVERY_PACK.pack([codec(DELIVERY).encode(_delivery(ref)) for ref in blob_refs])


@pytest.mark.integration
def test_prune_refuses_when_the_topics_are_not_there(tmp_path: Path, kafka_config: KafkaConfig) -> None:
    config_file = tmp_path / "c.toml"
    config_file.write_text(
        f'state_dir = "{tmp_path}"\n' + kafka_config.connection_toml() + '[blob_store]\nkind = "local"\n',
        encoding="utf-8",
    )
    store = LocalBlobStore(tmp_path / "blobs")
    ref = store.put(b"orphan, but the topics are missing")
    [blob] = list(list_blob_files(tmp_path / "blobs"))
    os.utime(blob.path, (OLD, OLD))
    result = CliRunner().invoke(app, ["-c", str(config_file), "blobs", "prune"])
    assert result.exit_code == 1
    assert "Refusing to prune" in result.output
    assert store.exists(ref)
