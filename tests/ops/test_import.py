"""``mailferry import`` publishes to the real broker and resumes where it stopped."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailferry.audit import read_events
from mailferry.cli.main import app
from mailferry.config.kafka import KafkaConfig
from mailferry.kafka.topics import AUDIT, RAW
from mailferry.packing import RAW_PACK

from ..topics import create_topics, read_records, read_values
from .conftest import history_config

pytestmark = pytest.mark.integration


def _mbox(count: int, start: int = 0) -> bytes:
    return b"".join(
        b"From sender@example.org Mon Nov  2 10:00:00 2026\n"
        + f"Message-ID: <{i}@import.test>\nSubject: message {i}\n\nbody {i}\n\n".encode()
        for i in range(start, start + count)
    )


def _raw_records(kafka: KafkaConfig) -> list[dict[str, object]]:
    records = [mail for value in read_values(kafka, RAW, 3000) for mail in RAW_PACK.unpack(value)]
    # raw is partitioned by dedup shard, so Kafka keeps no order across the mbox: its own
    # position (the byte offset in the file) gives it back
    return sorted(records, key=lambda r: int(str(r["source_uid"]).rpartition("@")[2]))


def test_import_mbox_then_resume_only_the_new_part(tmp_path: Path, kafka_config: KafkaConfig) -> None:
    create_topics(kafka_config, 4)
    config = history_config(tmp_path, kafka_config, inline_threshold="1KiB")
    archive = tmp_path / "archive.mbox"
    big_body = b"x" * 4000
    archive.write_bytes(
        _mbox(3) + b"From s@example.org Mon Nov  2 10:00:00 2026\nSubject: big\n\n" + big_body + b"\n"
    )
    runner = CliRunner()
    args = ["-c", str(config), "import", "mbox", str(archive), "--tenant", "acme", "--mailbox", "history"]

    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "imported 4 messages" in first.output
    records = _raw_records(kafka_config)
    assert len(records) == 4
    assert all(r["tenant"] == "acme" and r["source_kind"] == "import" for r in records)
    assert records[0]["inline"] is not None and b"Message-ID: <0@import.test>\r\n" in records[0]["inline"]
    assert records[3]["inline"] is None and str(records[3]["blob_ref"]).startswith("sha256:")

    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "imported 0 messages" in again.output
    assert len(_raw_records(kafka_config)) == 4

    with archive.open("ab") as handle:
        handle.write(b"\n" + _mbox(2, start=10))
    grown = runner.invoke(app, args)
    assert "imported 2 messages" in grown.output, grown.output
    subjects = [bytes(r["inline"] or b"") for r in _raw_records(kafka_config)][4:]
    assert [s.split(b"\r\n")[1] for s in subjects] == [b"Subject: message 10", b"Subject: message 11"]


def test_import_refuses_unknown_tenant_and_mailbox(tmp_path: Path, kafka_config: KafkaConfig) -> None:
    config = history_config(tmp_path, kafka_config, inline_threshold="1KiB")
    archive = tmp_path / "a.mbox"
    archive.write_bytes(_mbox(1))
    runner = CliRunner()
    unknown = runner.invoke(app, ["-c", str(config), "import", "mbox", str(archive), "-t", "nope", "-m", "x"])
    assert unknown.exit_code == 2 and "tenant 'nope' is not in the configuration" in unknown.output
    nobox = runner.invoke(app, ["-c", str(config), "import", "mbox", str(archive), "-t", "acme", "-m", "x"])
    assert nobox.exit_code == 2 and "mailbox 'x' is not a source of tenant 'acme'" in nobox.output


def test_import_packs_small_mails_into_fewer_records_the_stream_reads_all_of(
    tmp_path: Path, kafka_config: KafkaConfig
) -> None:
    create_topics(kafka_config, 4)
    config = history_config(tmp_path, kafka_config, inline_threshold="1KiB")
    archive = tmp_path / "archive.mbox"
    archive.write_bytes(_mbox(120))
    args = ["-c", str(config), "import", "mbox", str(archive), "--tenant", "acme", "--mailbox", "history"]

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    values = read_values(kafka_config, RAW, 3000)
    assert f"imported 120 messages, 0.0 MB, in {len(values)} raw records" in result.output
    assert len(values) <= 6  # one pack per raw partition (6 by default): the batch is one checkpoint
    mails = _raw_records(kafka_config)  # read as the stream reads raw: ``RAW_PACK.unpack``
    assert len(mails) == 120
    inlines = [m["inline"] for m in mails]
    assert all(
        isinstance(body, bytes) and f"<{i}@import.test>".encode() in body for i, body in enumerate(inlines)
    )
    # one ``imported`` event per mail, packed: the batch is one checkpoint, so one audit record
    audit = read_records(kafka_config, AUDIT, 3000)
    events = [event for record in audit for event in read_events(record)]
    assert len(audit) == 1
    assert sorted(int(e["details"]["position"].rpartition("@")[2]) for e in events) == sorted(
        int(str(m["source_uid"]).rpartition("@")[2]) for m in mails
    )
    assert {e["event"] for e in events} == {"imported"}
