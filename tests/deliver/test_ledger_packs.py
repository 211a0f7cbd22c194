"""Ledger entries written together travel as one pack record; every reader sees each entry."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from mailferry.config import MailferryConfig
from mailferry.config.kafka import KafkaConfig
from mailferry.consumers.ledger import PACK_HEADER, Entry, Ledger
from mailferry.consumers.ledger_state import (
    DELIVERED,
    Verdict,
    attempt_state,
    decode,
    decode_pack,
    encode,
    encode_pack,
    verdict,
)
from mailferry.kafka.topics import DELIVERY_LEDGER

from .conftest import (
    RunningWorker,
    audit_events,
    delivery_record,
    maildir_config,
    maildir_files,
    maildir_target,
    make_config,
    publish,
    read_topic,
    sample_message,
)


def test_a_pack_reads_back_as_each_entrys_state() -> None:
    keys = [f"acme/m/u{i}@acme.example/k{i}".encode() for i in range(5)]
    attempts = encode_pack("attempt", [(k, i, f"d{i}") for i, k in enumerate(keys)], "now")
    assert decode_pack(attempts) == [(k, attempt_state(i)) for i, k in enumerate(keys)]
    delivered = encode_pack("delivered", [(k, 0, "d") for k in keys], "now")
    assert decode_pack(delivered) == [(k, DELIVERED) for k in keys]


def test_an_unreadable_pack_names_no_key_and_a_forgotten_entry_clears_one() -> None:
    assert decode_pack(b"\xff not json") == []
    assert decode_pack(b'{"state": "delivered"}') == []
    assert decode(encode("forgotten", 0, "", "now")) is None
    assert verdict(decode(encode("forgotten", 0, "", "now")), 0) is Verdict.WRITE


@pytest.mark.integration
def test_entries_of_one_partition_share_a_record_and_a_new_reader_sees_each(
    tmp_path: Path, kafka_config: KafkaConfig, open_ledger: Callable[[MailferryConfig], Ledger]
) -> None:
    config = make_config(tmp_path, kafka_config, maildir_target(tmp_path, name="m"))
    writer = open_ledger(config)
    run = uuid.uuid4().hex
    entries = [Entry(f"acme/m/u@acme.example/{run}-{i}".encode(), f"d{i}", i % 2) for i in range(10)]
    sent = [f.get(timeout=30) for f in writer.record_many(entries)]
    assert len({(s.partition, s.offset) for s in sent}) == 2  # one record per partition
    assert all(s.partition == e.partition for s, e in zip(sent, entries, strict=True))
    attempted = Entry(f"acme/m/u@acme.example/{run}-attempt".encode(), "dx", 0, 3)
    retried = Entry(f"acme/m/u@acme.example/{run}-forgotten".encode(), "dy", 0, 1)
    for future in writer.begin_many([attempted, retried]):
        future.get(timeout=30)
    writer.forget(retried.key, 0).get(timeout=30)

    reader = open_ledger(config)
    assert all(reader.contains(e.key) for e in entries)
    assert reader.state(attempted.key) == attempt_state(3)
    assert reader.state(retried.key) is None  # forgotten after the pack that held it
    records = read_topic(config, DELIVERY_LEDGER)
    forgotten = [r for r in records if r.key == retried.key]
    assert [decode(r.value) for r in forgotten] == [None]
    assert forgotten[0].value is not None, "a tombstone: compaction would drop it before the pack"
    assert sum(1 for r in records if PACK_HEADER in dict(r.headers or [])) == 3


@pytest.mark.integration
def test_a_fresh_worker_skips_what_packed_entries_record(
    tmp_path: Path, kafka_config: KafkaConfig, start_worker: Callable[..., RunningWorker]
) -> None:
    """60 deliveries in few ledger records; the same records published again after a restart
    are skipped by the ledger (read back from the topic), not written or checked again."""
    root, config = maildir_config(tmp_path, kafka_config)
    recipients = ["ann@acme.example", "bob@acme.example"]
    records = [delivery_record(recipients[i % 2], sample_message(i, recipients[i % 2])) for i in range(60)]
    publish(config, records)
    first = start_worker(config)
    first.wait_for(lambda: sum(1 for e in audit_events(config) if e["event"] == "delivered") >= 60)
    first.shutdown()
    ledger_records = read_topic(config, DELIVERY_LEDGER)
    assert len(ledger_records) <= 20, f"{len(ledger_records)} ledger records for 60 deliveries"

    publish(config, records)
    second = start_worker(config)
    second.wait_for(lambda: sum(1 for e in audit_events(config) if e["event"] == "skipped") >= 60)
    second.shutdown()
    events = audit_events(config)
    assert sum(1 for e in events if e["event"] == "delivered") == 60
    reasons = {e["details"]["reason"] for e in events if e["event"] == "skipped"}
    assert reasons == {"already in the ledger"}
    assert sum(len(maildir_files(root, r)) for r in recipients) == 60
