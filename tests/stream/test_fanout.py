"""Fan-out on the real broker: deliver-topic bytes do not grow with recipients times size,
and recipients past the tenant's cap get their copy through the default mailbox, audited."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailferry.config import load_config
from mailferry.config.kafka import KafkaConfig
from mailferry.kafka.admin import ensure_topics
from mailferry.kafka.clients import new_admin, new_consumer
from mailferry.kafka.topics import AUDIT, DELIVER, full_name, topic_specs
from mailferry.schemas.codec import AUDIT_EVENT, DELIVERY, Record, codec
from tests.stream.factories import decoded
from tests.stream.test_commit_guard import read_blob
from tests.stream.test_stream_app import POSTMASTER, Publisher, StreamRole, Topics, _write_config

pytestmark = pytest.mark.integration

CAP = 100
RECIPIENTS = 150
BODY = 200_000  # inline: below the test config's 256 KiB threshold


def mail(tag: str, recipients: list[str]) -> bytes:
    head = f"To: {', '.join(recipients[:3])}\r\nMessage-ID: <{tag}@x.example>\r\nSubject: {tag}\r\n\r\n"
    return head.encode() + tag.encode() * (BODY // len(tag))


@pytest.fixture
def config_path(tmp_path: Path, kafka_config: KafkaConfig) -> Iterator[Path]:
    path = _write_config(tmp_path, kafka_config)
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text.replace(
            'default_target = "box"\n', f'default_target = "box"\nmax_recipients_per_message = {CAP}\n'
        ),
        encoding="utf-8",
    )
    admin = new_admin(kafka_config, list(kafka_config.bootstrap_servers))
    ensure_topics(admin, topic_specs(load_config(path).kafka, 4))
    admin.close()
    yield path


def deliver_records(kafka: KafkaConfig, wanted: int, role: StreamRole) -> list[tuple[int, Record]]:
    """(encoded size, delivery) of every delivery, once ``wanted`` have arrived; a pack's
    deliveries each counted at the size of their own record (a pack is a little smaller)."""
    consumer = new_consumer(
        kafka,
        list(kafka.bootstrap_servers),
        topics=[full_name(kafka, DELIVER)],
        fetch_max_bytes=64 << 20,
        max_partition_fetch_bytes=64 << 20,
    )
    found: list[tuple[int, Record]] = []
    deadline = time.monotonic() + 120
    try:
        while len(found) < wanted and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                items = [item for m in batch for item in decoded(DELIVERY, m.value)]
                found += [(len(codec(DELIVERY).encode(item)), item) for item in items]
            assert role.alive(), role.log.read_text()[-3000:]
    finally:
        consumer.close()
    assert len(found) == wanted, f"{len(found)} of {wanted}:\n{role.log.read_text()[-3000:]}"
    return found


def test_deliver_bytes_grow_with_recipients_not_with_size_and_the_cap_holds(
    config_path: Path, kafka_config: KafkaConfig
) -> None:
    many = [f"user{i:03d}@acme.example" for i in range(RECIPIENTS)]
    publisher = Publisher(config_path)
    wide = mail("wide", many)
    wide_sha = publisher.raw("catchall", wide, envelope_recipients=many)
    one_sha = publisher.raw("catchall", mail("single", many[:1]), envelope_recipients=many[:1])
    audit = Topics(kafka_config, AUDIT, AUDIT_EVENT)
    role = StreamRole(config_path, config_path.parent / "stream.log")
    role.start()
    try:
        records = deliver_records(kafka_config, CAP + 1 + 1, role)
        events = audit.wait(lambda es: sum(e["event"] == "skipped" for e in es) >= RECIPIENTS - CAP, role)
    finally:
        assert role.stop() == 0

    wide_records = [(size, r) for size, r in records if r["sha256"] == wide_sha]
    ((single_bytes, single),) = [(size, r) for size, r in records if r["sha256"] == one_sha]
    wide_bytes = sum(size for size, _r in wide_records)
    print(f"deliver bytes: 1 recipient {single_bytes}, {len(wide_records)} recipients {wide_bytes}")
    assert single["inline"] is not None and single_bytes > BODY  # one copy: stays inline
    # 101 deliveries of a 200 KB message cost less than one inline copy more
    assert wide_bytes < single_bytes + len(wide_records) * 2048
    assert {r["blob_ref"] for _s, r in wide_records} == {f"sha256:{wide_sha}"}
    assert all(r["inline"] is None for _s, r in wide_records)
    assert read_blob(config_path, f"sha256:{wide_sha}") == wide

    # the first CAP recipients get their own copy, the default mailbox one for the rest
    assert sorted(r["recipient"] for _s, r in wide_records) == sorted([*many[:CAP], POSTMASTER])
    fallback = next(r for _s, r in wide_records if r["recipient"] == POSTMASTER)
    assert [(x["kind"], x["detail"]) for x in fallback["reasons"]] == [
        ("fan-out-cap", f"{RECIPIENTS - CAP} recipients over the tenant's cap of {CAP}")
    ]
    skipped = [e for e in events if e["event"] == "skipped"]
    assert sorted(e["recipient"] for e in skipped) == many[CAP:]
    assert all(e["details"]["reason"] == "fan-out-cap" for e in skipped)
    assert all(e["details"]["delivered_to"] == POSTMASTER for e in skipped)
