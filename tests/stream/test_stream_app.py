"""The ``mailferry stream`` role on the real embedded broker: raw in, deliveries out.

The worker runs as the real child process (``python -m mailferry stream``), is stopped with
SIGTERM like ``mailferry run`` does, and restarted: once with its RocksDB folder, once
without it, so the dedup table must come back from its changelog topic.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mailferry.blobs import open_blob_store
from mailferry.config import load_config
from mailferry.config.kafka import KafkaConfig
from mailferry.config.models import MailferryConfig
from mailferry.kafka.admin import ensure_topics
from mailferry.kafka.clients import new_admin, new_consumer, new_producer
from mailferry.kafka.topics import AUDIT, DELIVER, DLT, RAW, full_name, topic_specs
from mailferry.packing import RAW_PACK
from mailferry.rawrecord import RawSource, build_raw_record, encode_raw
from mailferry.schemas.codec import AUDIT_EVENT, DEAD_LETTER, DELIVERY, Record
from mailferry.shard import partition_for
from mailferry.status import read_snapshots
from mailferry.streams.faust_settings import app_id
from mailferry.streams.loopguard import trace_value
from mailferry.streams.trace_key import load_trace_key
from mailferry_testkit.sample_mail import catchall_mailbox, personal_mailbox
from tests.stream.factories import decoded

pytestmark = pytest.mark.integration

DOMAIN = "acme.example"
ALICE = f"alice@{DOMAIN}"
POSTMASTER = f"postmaster@{DOMAIN}"


def _write_config(tmp_path: Path, kafka: KafkaConfig) -> Path:
    path = tmp_path / "mailferry.toml"
    source = (
        'kind = "pop3"\nhost = "127.0.0.1"\nusername = "u"\ntls = "none"\nallow_plaintext_login = true\n'
        'auth = { kind = "password", password = "x" }\n'
    )
    path.write_text(
        f'state_dir = "{tmp_path / "state"}"\nallow_plaintext_secrets = true\n'
        + kafka.connection_toml()
        + "[kafka.topics.defaults]\npartitions = 2\n"
        '[blob_store]\ninline_threshold = "256KiB"\n'
        '[stream]\nweb_port = 0\ndedup_window = "30d"\nmax_received_hops = 20\n'
        f'[[tenants]]\nid = "acme"\naccepted_domains = ["{DOMAIN}"]\n'
        f'default_mailbox = "{POSTMASTER}"\ndefault_target = "box"\n'
        '[[tenants.targets]]\nname = "box"\nkind = "maildir"\npath = "/tmp/unused"\n'
        f'[[tenants.sources]]\nid = "catchall"\nmode = "global"\n{source}'
        f'[[tenants.sources]]\nid = "alice-private"\nmode = "personal"\ndeliver_to = "{ALICE}"\n{source}',
        encoding="utf-8",
    )
    return path


SKIP_STOP = "without the records between"


class StreamRole:
    """The stream role as a child process, the way ``mailferry run`` starts it."""

    def __init__(self, config_path: Path, log: Path) -> None:
        self.config_path = config_path
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def start(self) -> None:
        # info: when a wait times out, the log shows where the worker was (group, recovery)
        argv = [sys.executable, "-m", "mailferry", "-c", str(self.config_path), "--log-level", "info"]
        argv += ["stream"]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)

    def stop(self, timeout: float = 60) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"stream role ignored SIGTERM:\n{self.log.read_text()[-3000:]}") from None

    def alive(self) -> bool:
        """Running; a worker that stopped itself to read a skipped record again
        (``mailferry.streams.skips``) is started again, as ``mailferry run`` does."""
        if self.process is None:
            return False
        if self.process.poll() is None:
            return True
        if self.log.read_text(errors="replace").count(SKIP_STOP) > self.restarts:
            self.restarts += 1
            self.start()
            return True
        return False


class Topics:
    """Reads a topic from the start, keeping what it has seen, until a condition holds."""

    def __init__(self, kafka: KafkaConfig, logical: str, schema: str) -> None:
        self.schema = schema
        self.consumer = new_consumer(
            kafka,
            list(kafka.bootstrap_servers),
            topics=[full_name(kafka, logical)],
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        self.records: list[tuple[bytes, Record]] = []

    def wait(
        self, until: Callable[[list[Record]], bool], role: StreamRole, timeout: float = 120
    ) -> list[Record]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for batch in self.consumer.poll(timeout_ms=500).values():
                self.records += [(m.key, item) for m in batch for item in decoded(self.schema, m.value)]
            values = [r for _k, r in self.records]
            if until(values):
                return values
            assert role.alive(), f"stream role died:\n{role.log.read_text()[-3000:]}"
        seen = [(r.get("event"), r.get("recipient")) for _k, r in self.records][-40:]
        raise AssertionError(
            f"timed out with {len(self.records)} records, last {seen}:\n{role.log.read_text()[-3000:]}"
        )

    def settle(self, seconds: float = 3.0) -> list[Record]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for batch in self.consumer.poll(timeout_ms=300).values():
                self.records += [(m.key, item) for m in batch for item in decoded(self.schema, m.value)]
        return [r for _k, r in self.records]


@pytest.fixture
def setup(tmp_path: Path, kafka_config: KafkaConfig) -> Iterator[tuple[Path, StreamRole]]:
    admin = new_admin(kafka_config, list(kafka_config.bootstrap_servers))
    ensure_topics(admin, topic_specs(kafka_config.model_copy(update={}), 4))
    admin.close()
    config_path = _write_config(tmp_path, kafka_config)
    role = StreamRole(config_path, tmp_path / "stream.log")
    yield config_path, role
    if role.alive():
        role.stop()


class Publisher:
    def __init__(self, config_path: Path) -> None:
        self.config = load_config(config_path)
        self.blobs = open_blob_store(self.config)  # kind kafka: the role finds them in the topic
        self.producer = new_producer(
            self.config.kafka, list(self.config.kafka.bootstrap_servers), acks="all", max_request_size=4 << 20
        )
        self.topic = full_name(self.config.kafka, RAW)

    def raw(self, mailbox: str, data: bytes, **extra: object) -> str:
        key, value, sha256 = self.encoded(mailbox, data, **extra)
        self.producer.send(self.topic, key=key, value=value).get(30)
        return sha256

    def encoded(self, mailbox: str, data: bytes, **extra: object) -> tuple[bytes, bytes, str]:
        key, record = build_raw_record(
            RawSource("acme", mailbox, "pop3"),
            data,
            blobs=self.blobs,
            inline_threshold=self.config.blob_store.inline_threshold,
        )
        record.update(extra)
        return key, encode_raw(record), str(record["sha256"])

    def pack(self, mailbox: str, mails: list[bytes]) -> None:
        """The mails as one packed raw record, as the fetcher packs them for one partition."""
        encoded = [self.encoded(mailbox, data) for data in mails]
        partitions = len(self.producer.partitions_for(self.topic))
        (partition,) = {partition_for(key, partitions) for key, _value, _sha in encoded}
        value = RAW_PACK.pack([value for _key, value, _sha in encoded])
        self.producer.send(self.topic, key=encoded[0][0], value=value, partition=partition).get(30)

    def bytes_(self, key: bytes, value: bytes) -> None:
        self.producer.send(self.topic, key=key, value=value).get(30)


FORGED = (
    b"X-Mailferry-Trace: tenant=acme; mailbox=catchall; key=k\r\nDelivered-To: bob@acme.example\r\n"
    b"Message-ID: <forged@x.example>\r\n\r\nan unsigned trace is not obeyed\r\n"
)


def looped(config: MailferryConfig) -> bytes:
    """A message carrying the trace a delivery of this deployment signed (its key in the state folder)."""
    mid = "<loop@x.example>"
    trace = trace_value(
        tenant="acme",
        mailbox_id="catchall",
        dedup_key=f"acme/bob@acme.example/{mid}",
        routed_at=datetime.now(UTC),
        message_id=mid,
        key=load_trace_key(config),
    )
    return (
        f"X-Mailferry-Trace: {trace}\r\nDelivered-To: bob@acme.example\r\nMessage-ID: {mid}\r\n\r\nbody\r\n"
    ).encode()


HOPS = b"".join(b"Received: from a by b; Mon, 2 Nov 2026 10:00:00 +0000\r\n" for _ in range(25)) + b"\r\nx"
SHARED = (
    b"Delivered-To: alice@acme.example\r\nMessage-ID: <both-ways@partner.example>\r\n"
    b"Subject: fetched twice\r\n\r\nsame message from the catch-all and from Alice's own mailbox\r\n"
)


def test_stream_role_end_to_end_with_restarts(
    setup: tuple[Path, StreamRole], kafka_config: KafkaConfig
) -> None:
    config_path, role = setup
    publisher = Publisher(config_path)
    deliveries = Topics(kafka_config, DELIVER, DELIVERY)
    audit = Topics(kafka_config, AUDIT, AUDIT_EVENT)
    dead = Topics(kafka_config, DLT, DEAD_LETTER)
    role.start()

    expected: Counter[tuple[str, str]] = Counter()
    names: dict[str, str] = {}
    for sample in catchall_mailbox(DOMAIN, POSTMASTER, large_attachment_bytes=600_000):
        sha = publisher.raw("catchall", sample.data)
        names.setdefault(sha, sample.name)
        expected.update((sample.name, r) for r in sample.expected)
    for sample in personal_mailbox(ALICE):
        sha = publisher.raw("alice-private", sample.data)
        names.setdefault(sha, sample.name)
        expected.update((sample.name, r) for r in sample.expected)
    names[publisher.raw("catchall", SHARED)] = "shared"
    names[publisher.raw("alice-private", SHARED)] = "shared"
    expected[("shared", ALICE)] += 1
    publisher.raw("catchall", b"\r\nno headers at all")
    publisher.raw("catchall", looped(publisher.config))
    names[publisher.raw("catchall", FORGED)] = "forged"
    expected[("forged", f"bob@{DOMAIN}")] += 1
    publisher.raw("catchall", HOPS)
    publisher.bytes_(b"acme/catchall", b"not an avro record")

    total = sum(expected.values())
    delivered = deliveries.wait(lambda rs: len(rs) >= total, role)
    dead_letters = dead.wait(lambda rs: len(rs) >= 4, role)
    delivered = deliveries.settle()
    got = Counter((names[d["sha256"]], d["recipient"]) for d in delivered)
    assert got == expected  # every sample where it belongs, once; duplicates dropped
    meeting = {d["recipient"] for d in delivered if d["message_id"] and "meeting-2026" in d["message_id"]}
    assert len(meeting) == 2, "one Message-ID for two recipients reaches both"
    large = next(d for d in delivered if names[d["sha256"]] == "catchall-large")
    assert large["inline"] is None and large["blob_ref"]
    bcc = next(d for d in delivered if names[d["sha256"]] == "catchall-bcc-only")
    assert bcc["flags"] == ["possible-lost-bcc"] and bcc["reasons"][0]["kind"] == "fallback"
    assert {k.decode() for k, _ in deliveries.records} >= {f"acme/{ALICE}", f"acme/{POSTMASTER}"}
    assert sorted(d["reason_code"] for d in dead_letters) == [
        "loop-trace",
        "no-headers",
        "too-many-hops",
        "unknown-schema",
    ]
    assert all(d["stage"] == "stream" for d in dead_letters)
    assert all(d["raw"] is not None for d in dead_letters if d["reason_code"] != "unknown-schema")

    events = audit.wait(lambda rs: sum(e["event"] == "duplicate" for e in rs) >= 2, role)
    duplicates = [e for e in events if e["event"] == "duplicate"]
    assert {e["recipient"] for e in duplicates} == {f"carol@{DOMAIN}", ALICE}
    assert all(e["details"]["first_origin"].startswith(full_name(kafka_config, RAW)) for e in duplicates)
    routed = [e for e in events if e["event"] == "routed"]
    assert len(routed) == total and all(e["details"]["reasons"] for e in routed)

    assert role.stop() == 0
    snapshots = [s for s in read_snapshots(load_config(config_path).state_dir) if s["role"] == "stream"]
    assert snapshots and snapshots[-1]["state"] == "stopped"
    assert snapshots[-1]["store"] == "rocksdb"
    assert snapshots[-1]["counters"]["duplicates"] == 2

    # restart with the local RocksDB folder, then without it (table rebuilt from the changelog)
    data_dir = load_config(config_path).stream_data_dir / app_id(load_config(config_path))
    duplicate = next(s for s in catchall_mailbox(DOMAIN, POSTMASTER) if s.name == "catchall-duplicate-1")
    for round_, wipe in enumerate((False, True), start=1):
        if wipe:
            shutil.rmtree(data_dir)
        role.start()
        publisher.raw("catchall", duplicate.data)

        # a restarted worker first rejoins the group and restores its table; on a loaded
        # machine a late LeaveGroup of the stopped one can add a session timeout (60 s) to that
        def seen_again(events: list[Record], n: int = round_) -> bool:
            return sum(e["event"] == "duplicate" for e in events) >= 2 + n

        audit.wait(seen_again, role, timeout=240)
        assert len(deliveries.settle(2.0)) == total, f"restart {round_}: the duplicate was delivered"
        assert role.stop() == 0
    assert json.dumps(snapshots[-1])  # the snapshot is plain JSON


@pytest.mark.xfail(
    strict=False,
    reason="faust-streaming 0.15.3 can hand the agent a raw record twice and never its "
    "predecessor, with no gap in what its consumer read (seen once under load: offsets 1,2,3,5,5; "
    "4 never routed, never acked). Faust's own commit would go past it; mailferry.streams."
    "offset_gaps holds the commit before it and the worker stops itself at the jump "
    "(mailferry.streams.skips); this test starts it again as `mailferry run` does. Kept "
    "non-strict until a loaded run shows the recovery. The table recovery itself is checked "
    "by test_dedup_agent.",
)
def test_a_table_rebuilt_from_its_changelog_knows_every_sighting_of_a_packed_record(
    setup: tuple[Path, StreamRole], kafka_config: KafkaConfig
) -> None:
    config_path, role = setup
    config = load_config(config_path)
    publisher = Publisher(config_path)
    deliveries = Topics(kafka_config, DELIVER, DELIVERY)
    audit = Topics(kafka_config, AUDIT, AUDIT_EVENT)
    partitions = len(publisher.producer.partitions_for(publisher.topic))
    # mails of one raw partition, as the fetcher packs them
    candidates = [
        f"Delivered-To: user{i}@{DOMAIN}\r\nMessage-ID: <pack{i}@x.example>\r\n\r\nbody {i}\r\n".encode()
        for i in range(100)
    ]
    mails = [m for m in candidates if partition_for(publisher.encoded("catchall", m)[0], partitions) == 0][:5]
    recipients = sorted(m.split(b"\r\n")[0].split(b" ")[1].decode() for m in mails)
    role.start()
    publisher.pack("catchall", mails)
    deliveries.wait(lambda rs: len(rs) >= len(mails), role)
    assert role.stop() == 0
    changelog = f"{app_id(config)}-dedup-changelog"
    assert len(read_all(kafka_config, changelog)) == 1, "one changelog record for the record's 5 sightings"

    shutil.rmtree(config.stream_data_dir / app_id(config))
    role.start()
    for data in mails:  # each copy again, one per record, at new offsets
        publisher.raw("catchall", data)

    # a copy read again after a rebalance says "duplicate" again (at-least-once): wait for
    # every recipient's verdict rather than for a count
    def duplicate_recipients(events: list[Record]) -> set[str]:
        return {e["recipient"] for e in events if e["event"] == "duplicate"}

    events = audit.wait(lambda rs: duplicate_recipients(rs) >= set(recipients), role, timeout=90)
    assert duplicate_recipients(events) == set(recipients)
    delivered = deliveries.settle(2.0)
    assert {d["recipient"] for d in delivered} == set(recipients)
    assert len({d["raw_origin"] for d in delivered}) == len(mails), "only the pack's mails were delivered"
    assert role.stop() == 0


def read_all(kafka: KafkaConfig, topic: str) -> list[Any]:
    consumer = new_consumer(
        kafka,
        list(kafka.bootstrap_servers),
        topics=[topic],
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
    )
    try:
        return list(consumer)
    finally:
        consumer.close()
