"""Stream stage throughput and dedup table recovery, on the real embedded broker.

Run: .venv/bin/python benchmarks/stream_throughput.py [--messages 20000] [--size 20480]
     [--recovery-keys 1000000] [--bootstrap HOST:PORT --kafka-home DIR]

Measures, for messages of ``--size`` bytes (20 KB by default):
1. the pure router alone (Avro decode, header parse, resolution, delivery records, Avro
   encode), one core, no Kafka: records/s for a catch-all and a personal mailbox;
2. the ``mailferry stream`` role (one Faust worker process) on the embedded broker: raw
   records are published first, then the worker is started; the rate is taken between its
   first and its last delivery, so start-up is not counted;
3. dedup table recovery: ``--recovery-keys`` sightings written to the table's changelog
   topic, then a worker with an empty data folder is started; the time from start to its
   first delivery, minus the same with an empty changelog, is the recovery time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from kafka import TopicPartition
from kafka.admin import NewTopic
from rich.console import Console
from rich.table import Table
from stream_variant import VARIANTS

from mailferry.blobs import LocalBlobStore
from mailferry.config import load_config
from mailferry.config.kafka import EmbeddedKafka, KafkaConfig
from mailferry.config.models import MailferryConfig
from mailferry.kafka.admin import ensure_topics
from mailferry.kafka.clients import aiokafka_settings, new_admin, new_consumer, new_producer
from mailferry.kafka.credentials import BrokerCredentials
from mailferry.kafka.embedded import EmbeddedBroker
from mailferry.kafka.topics import AUDIT, DELIVER, RAW, full_name, topic_specs
from mailferry.packing import DELIVERY_PACK, RAW_PACK, Packer
from mailferry.producers.publish import pack_limit
from mailferry.rawrecord import RawSource, build_raw_record, encode_raw
from mailferry.schemas.codec import DELIVERY, RAW_MESSAGE, codec
from mailferry.shard import partition_for
from mailferry.streams.faust_settings import app_id
from mailferry.streams.router import Routed, route_raw

DOMAIN = "acme.example"
TRACE_KEY = b"benchmark trace key, 32 characters or more"


def sample(i: int, size: int) -> bytes:
    headers = (
        f"Delivered-To: user{i % 500}@{DOMAIN}\r\n"
        f"Received: from mx.isp.example by pop.isp.example with ESMTPS id {i} for <user{i % 500}@{DOMAIN}>;"
        " Mon, 2 Nov 2026 10:00:00 +0000\r\n"
        "From: =?utf-8?q?J=C3=BCrgen?= <j@sender.example>\r\n"
        f"To: user{i % 500}@{DOMAIN}\r\nSubject: message {i}\r\nMessage-ID: <{i}.bench@sender.example>\r\n"
        "Date: Mon, 2 Nov 2026 10:00:00 +0000\r\n\r\n"
    ).encode()
    return headers + b"x" * max(0, size - len(headers))


def write_config(home: Path, kafka: KafkaConfig, prefix: str, app: str = "mailferry-stream") -> Path:
    source = (
        'kind = "pop3"\nhost = "127.0.0.1"\nusername = "u"\ntls = "none"\nallow_plaintext_login = true\n'
        'auth = { kind = "password", password = "x" }\n'
    )
    path = home / f"mailferry-{prefix}-{app}.toml"
    path.write_text(
        f'state_dir = "{home / "state"}"\nallow_plaintext_secrets = true\n'
        + kafka.model_copy(update={"topic_prefix": prefix}).connection_toml()
        + "[kafka.topics.defaults]\npartitions = 2\n"
        f'[stream]\nweb_port = 0\napp_id = "{app}"\n'
        f'[[tenants]]\nid = "acme"\naccepted_domains = ["{DOMAIN}"]\n'
        f'default_mailbox = "postmaster@{DOMAIN}"\ndefault_target = "box"\n'
        '[[tenants.targets]]\nname = "box"\nkind = "maildir"\npath = "/tmp/unused"\n'
        f'[[tenants.sources]]\nid = "catchall"\nmode = "global"\n{source}'
        f'[[tenants.sources]]\nid = "alice"\nmode = "personal"\ndeliver_to = "alice@{DOMAIN}"\n{source}',
        encoding="utf-8",
    )
    return path


def router_rate(config: MailferryConfig, mailbox: str, count: int, size: int) -> tuple[float, float]:
    """(records per wall second, records per CPU second) of the pure router in this process."""
    blobs = LocalBlobStore(config.blob_dir)
    values = []
    for i in range(count):
        _key, record = build_raw_record(
            RawSource("acme", mailbox, "pop3"), sample(i, size), blobs=blobs, inline_threshold=1 << 20
        )
        values.append(encode_raw(record))
    raw_codec, delivery_codec = codec(RAW_MESSAGE), codec(DELIVERY)
    now = datetime.now(UTC)
    began, began_cpu = time.perf_counter(), time.process_time()
    for i, value in enumerate(values):
        outcome = route_raw(
            raw_codec.decode(value),
            config=config,
            blobs=blobs,
            origin=f"raw/0/{i}",
            now=now,
            trace_key=TRACE_KEY,
        )
        assert isinstance(outcome, Routed)
        for candidate in outcome.candidates:
            delivery_codec.encode(candidate.delivery)
    return count / (time.perf_counter() - began), count / (time.process_time() - began_cpu)


def publish_raw(
    config: MailferryConfig,
    servers: list[str],
    count: int,
    size: int,
    start: int = 0,
    topic: str | None = None,
    packed: bool = False,
) -> None:
    """``count`` mails into raw, keyed by their dedup shard; ``packed``: as the fetcher
    packs them under load (``mailferry.packing``, full packs of one partition)."""
    blobs = LocalBlobStore(config.blob_dir)
    producer = new_producer(config.kafka, servers, linger_ms=20, batch_size=1 << 20)
    topic = topic or full_name(config.kafka, RAW)
    partitions = len(producer.partitions_for(topic))
    packer = Packer(pack_limit(config) if packed else 0, linger=float("inf"))
    for i in range(start, start + count):
        key, record = build_raw_record(
            RawSource("acme", "catchall", "pop3"), sample(i, size), blobs=blobs, inline_threshold=1 << 20
        )
        for pack in packer.add(partition_for(key, partitions), key, encode_raw(record), 0.0):
            producer.send(topic, key=pack.key, value=RAW_PACK.pack(pack.values), partition=pack.partition)
    for pack in packer.drain():
        producer.send(topic, key=pack.key, value=RAW_PACK.pack(pack.values), partition=pack.partition)
    producer.flush()
    producer.close()


class Worker:
    def __init__(self, config_path: Path, log: Path) -> None:
        argv = [sys.executable, "-m", "mailferry", "-c", str(config_path), "stream"]
        self.started = time.perf_counter()
        with log.open("ab") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(120)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def count_deliveries(
    kafka: KafkaConfig,
    servers: list[str],
    expected: int,
    timeout: float,
    on_first: Callable[[], None] = lambda: None,
) -> tuple[float, float]:
    """(time of the first delivery, time of the ``expected``-th), perf_counter seconds."""
    consumer = new_consumer(kafka, servers, topics=[full_name(kafka, DELIVER)])
    seen, first = 0, 0.0
    deadline = time.perf_counter() + timeout
    try:
        while seen < expected:
            if time.perf_counter() > deadline:
                raise SystemExit(f"timed out after {seen} of {expected} deliveries")
            for batch in consumer.poll(timeout_ms=200, max_records=5000).values():
                if not seen:
                    first = time.perf_counter()
                    on_first()
                seen += len(batch)
        return first, time.perf_counter()
    finally:
        consumer.close()


class WorkerFailed(Exception):
    """The worker died or timed out: its row says so, the other rows still run."""


@dataclass
class WorkerRun:
    wall_rate: float
    cpu_rate: float
    records: dict[str, int]  # per topic role: records this run read (raw) or wrote
    sizes: dict[str, int]  # bytes of those records (key + value)

    def summary(self) -> str:
        micros = 1e6 / self.cpu_rate
        return f"{self.wall_rate:,.0f} msg/s wall, {self.cpu_rate:,.0f} per CPU-s ({micros:,.0f} µs)"

    def per_mail(self, mails: int) -> tuple[str, str]:
        records = " + ".join(f"{n / mails:.2f} {role}" for role, n in self.records.items())
        sizes = " + ".join(f"{n / mails:,.0f} {role}" for role, n in self.sizes.items())
        return records, sizes


def _ends(consumer: Any, topic: str) -> dict[TopicPartition, int]:
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    return dict(consumer.end_offsets(partitions)) if partitions else {}


def _volume(kafka: KafkaConfig, servers: list[str], since: dict[TopicPartition, int]) -> tuple[int, int]:
    """(records, bytes of key + value) written to the partitions of ``since`` after those offsets."""
    consumer = new_consumer(kafka, servers, consumer_timeout_ms=3000)
    try:
        ends = consumer.end_offsets(list(since))
        consumer.assign([tp for tp in since if ends[tp] > since[tp]])
        for tp in consumer.assignment():
            consumer.seek(tp, since[tp])
        records = size = 0
        wanted = sum(ends[tp] - since[tp] for tp in since)
        for message in consumer:
            records += 1
            size += len(message.key or b"") + len(message.value or b"")
            if records >= wanted:
                break
        return records, size
    finally:
        consumer.close()


def worker_run(
    config_path: Path, servers: list[str], mails: int, variant: str, log: Path, *, volume: bool
) -> WorkerRun:
    """One worker (``benchmarks/stream_variant.py``) over the raw backlog of its config, with
    an app id of its own (a fresh table and group); rates between its first and last delivery."""
    config = load_config(config_path)
    kafka = config.kafka
    roles = (("raw", RAW), ("deliver", DELIVER), ("audit", AUDIT))
    topics = {role: full_name(kafka, logical) for role, logical in roles}
    consumer = new_consumer(kafka, servers)
    try:
        before = {role: _ends(consumer, name) for role, name in topics.items() if role != "raw"}
        raw_ends = _ends(consumer, topics["raw"])
    finally:
        consumer.close()
    argv = [sys.executable, str(Path(__file__).with_name("stream_variant.py")), variant]
    argv += ["-c", str(config_path), "stream"]
    with log.open("ab") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    cpu_at_first: list[float] = []
    try:
        first, last, seen = count_since(
            kafka,
            servers,
            before["deliver"],
            mails,
            lambda: cpu_at_first.append(cpu_seconds(process.pid)),
            alive=lambda: process.poll() is None,
        )
        cpu = cpu_seconds(process.pid) - cpu_at_first[0]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(120)
    rates = ((seen - 1) / (last - first), (seen - 1) / cpu)
    if not volume:
        return WorkerRun(*rates, {}, {})
    changelog = f"{kafka.topic_prefix}.{config.stream.app_id}-dedup-changelog"
    consumer = new_consumer(kafka, servers)
    try:
        before["changelog"] = {tp: 0 for tp in _ends(consumer, changelog)}
    finally:
        consumer.close()
    records = {"raw": sum(raw_ends.values())}
    sizes = {"raw": _volume(kafka, servers, {tp: 0 for tp in raw_ends})[1]}
    for role, since in before.items():
        records[role], sizes[role] = _volume(kafka, servers, since)
    return WorkerRun(*rates, records, sizes)


def count_since(
    kafka: KafkaConfig,
    servers: list[str],
    since: dict[TopicPartition, int],
    expected: int,
    on_first: Callable[[], None],
    *,
    alive: Callable[[], bool],
    timeout: float = 1800,
) -> tuple[float, float, int]:
    """(time of the first delivery record after ``since``, of the last, deliveries seen)."""
    consumer = new_consumer(kafka, servers)
    consumer.assign(list(since))
    for tp, offset in since.items():
        consumer.seek(tp, offset)
    seen, first = 0, 0.0
    deadline = time.perf_counter() + timeout
    try:
        while seen < expected:
            if time.perf_counter() > deadline or not alive():
                raise WorkerFailed(f"after {seen} of {expected} deliveries")
            for batch in consumer.poll(timeout_ms=200, max_records=5000).values():
                if not seen:
                    first = time.perf_counter()
                    on_first()
                seen += sum(len(DELIVERY_PACK.unpack(m.value)) for m in batch)  # deliveries, not records
        return first, time.perf_counter(), seen
    finally:
        consumer.close()


FAUST_DEFAULTS = ["--batch-size", "16384", "--linger-ms", "0"]
CEILINGS = (
    ("plain aiokafka getmany → send loop, 1 record out per record in", "aiokafka", 1, []),
    ("plain aiokafka getmany → send loop, 4 records out per record in", "aiokafka", 4, []),
    ("minimal Faust agent, consume only", "faust-consume", 0, []),
    ("minimal Faust agent, Topic.send, 4 out per in, Faust's producer defaults", "faust", 4, FAUST_DEFAULTS),
    ("minimal Faust agent, Topic.send, 4 out per in", "faust", 4, []),
    ("minimal Faust agent, app.producer.send, 4 out per in", "faust-producer", 4, []),
    ("the stream app's Faust shape with no work (2 agents, hop, table, 2 in / 4 out)", "faust-shape", 3, []),
)


def ceiling_rows(
    config_path: Path, config: MailferryConfig, servers: list[str], count: int, size: int
) -> list[tuple[str, str, str]]:
    """What Kafka clients and Faust cost per record on this machine (benchmarks/stream_ceiling.py)."""
    script = Path(__file__).with_name("stream_ceiling.py")
    source = f"{config.kafka.topic_prefix}.ceiling.in"
    admin = new_admin(config.kafka, servers)
    try:
        sinks = [f"{source}.out{number}.{i}" for number in range(len(CEILINGS)) for i in range(4)]
        admin.create_topics(
            [
                NewTopic(name, 2, 1, topic_configs={"max.message.bytes": str(1 << 24)})
                for name in [source, *sinks]
            ]
        )
    finally:
        admin.close()
    publish_raw(config, servers, count, size, topic=source)
    rows = []
    for number, (label, mode, fanout, extra) in enumerate(CEILINGS):
        argv = [sys.executable, str(script), mode, "--config", str(config_path), "--source", source]
        argv += ["--sink", f"{source}.out{number}", "--count", str(count), "--fanout", str(fanout), *extra]
        try:
            output = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False).stdout
        except subprocess.TimeoutExpired:
            output = ""
        lines = [line for line in output.splitlines() if line.startswith("{")]
        if not lines:
            rows.append((label, f"{count:,}", "failed"))
            continue
        result = json.loads(lines[-1])
        per_cpu = result["records"] / result["cpu"]
        wall = result["records"] / result["wall"]
        rows.append(
            (
                label,
                f"{count:,}",
                f"{wall:,.0f} msg/s wall, {per_cpu:,.0f} per CPU-s ({1e6 / per_cpu:,.0f} µs)",
            )
        )
    return rows


def fill_changelog(config: MailferryConfig, servers: list[str], keys: int) -> float:
    """Write ``keys`` sightings straight into the dedup table's changelog; returns seconds taken."""
    topic = f"{app_id(config)}-dedup-changelog"
    admin = new_admin(config.kafka, servers)
    partitions = config.kafka.topics.defaults.partitions
    try:
        admin.create_topics([NewTopic(topic, partitions, 1, topic_configs={"cleanup.policy": "compact"})])
    finally:
        admin.close()
    began = time.perf_counter()
    asyncio.run(_send_sightings(config.kafka, servers, topic, keys))
    return time.perf_counter() - began


async def _send_sightings(kafka: KafkaConfig, servers: list[str], topic: str, keys: int) -> None:
    """aiokafka: about five times faster than kafka-python for a million small records."""
    settings = aiokafka_settings(kafka, servers)
    producer = AIOKafkaProducer(**settings, acks=1, linger_ms=50, max_batch_size=1 << 20)
    await producer.start()
    now_ms = int(time.time() * 1000)
    try:
        for i in range(keys):
            value = {
                "first_seen_ms": now_ms,
                "origin": f"raw/0/{i}",
                "mailbox_id": "catchall",
                "delivery_id": f"{i:032x}",
            }
            key = f"acme/user{i}@{DOMAIN}/<{i}@old.example>".encode()
            await producer.send(topic, key=key, value=json.dumps(value).encode())
        await producer.flush()
    finally:
        await producer.stop()


def time_to_first_delivery(
    config_path: Path, config: MailferryConfig, servers: list[str], log: Path
) -> float:
    shutil.rmtree(config.stream_data_dir, ignore_errors=True)
    publish_raw(config, servers, 1, 1024, start=10_000_000)
    worker = Worker(config_path, log)
    try:
        first, _last = count_deliveries(config.kafka, servers, 1, timeout=1800)
    finally:
        worker.stop()
    return first - worker.started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=20 * 1024)
    parser.add_argument("--router-messages", type=int, default=20_000)
    parser.add_argument("--recovery-keys", type=int, default=1_000_000, help="0 skips the recovery run")
    parser.add_argument("--ceiling-messages", type=int, default=0, help="0 skips the ceiling rows")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="Faust variants on packed input, comma-separated"
    )
    parser.add_argument(
        "--one-variants",
        default="as-shipped",
        help="variants on one mail per record, comma-separated ('' skips those rows)",
    )
    parser.add_argument("--volume", action="store_true", help="records and bytes per mail for every row")
    parser.add_argument("--bootstrap", help="use this broker instead of starting the embedded one")
    parser.add_argument("--kafka-home", help="with --bootstrap: that embedded broker's folder (its login)")
    args = parser.parse_args()
    console = Console()
    home = Path(tempfile.mkdtemp(prefix="mailferry-bench-stream-"))
    broker = None
    if args.bootstrap:
        kafka = KafkaConfig(bootstrap_servers=[args.bootstrap])
        if args.kafka_home:
            kafka = BrokerCredentials(Path(args.kafka_home)).apply(kafka)
    else:
        broker = EmbeddedBroker(EmbeddedKafka(port=0, controller_port=0), home / "kafka")
        broker.start()
        kafka = broker.client_config()
    servers = list(kafka.bootstrap_servers)
    rows: list[tuple[str, str, str]] = []
    kafka_rows: list[tuple[str, str, str]] = []
    try:
        config_path = write_config(home, kafka, f"bench{int(time.time())}")
        config = load_config(config_path)
        for mailbox in ("catchall", "alice"):
            wall, cpu_rate = router_rate(config, mailbox, args.router_messages, args.size)
            label = f"router alone, {mailbox} mailbox (wall)"
            rows.append((label, f"{args.router_messages:,}", f"{wall:,.0f} msg/s"))
            rows.append(("  same, per CPU-second", "", f"{cpu_rate:,.0f} msg/s"))
            console.print(rows[-2:])

        if args.ceiling_messages:
            rows.extend(ceiling_rows(config_path, config, servers, args.ceiling_messages, args.size))
            console.print(rows[-len(CEILINGS) :])

        for packed in (False, True):
            variants = [v for v in (args.variants if packed else args.one_variants).split(",") if v]
            if not variants:
                continue
            form = "packed" if packed else "one mail per record"
            prefix = f"{'pk' if packed else 'one'}{int(time.time())}"
            base = load_config(write_config(home, kafka, prefix))
            admin = new_admin(base.kafka, servers)
            ensure_topics(admin, topic_specs(base.kafka, len(base.retry.tiers)))
            admin.close()
            publish_raw(base, servers, args.messages, args.size, packed=packed)
            for variant in variants:
                path = write_config(home, kafka, prefix, app=f"s-{variant.replace('+', '.')}")
                log = home / f"{prefix}-{variant}.log"
                label = f"Faust worker, {form}, {variant}"
                try:
                    volume = args.volume or variant == "as-shipped"
                    run = worker_run(path, servers, args.messages, variant, log, volume=volume)
                except WorkerFailed as exc:
                    tail = log.read_text(errors="replace")[-400:].replace("\n", " ")
                    rows.append((label, f"{args.messages:,}", f"failed {exc}: {tail}"))
                    console.print(rows[-1])
                    continue
                rows.append((label, f"{args.messages:,}", run.summary()))
                if volume:
                    kafka_rows.append((f"{form}, {variant}", *run.per_mail(args.messages)))
                console.print(rows[-1])

        if args.recovery_keys:
            for label, keys in (("empty changelog", 0), (f"{args.recovery_keys:,} keys", args.recovery_keys)):
                path = write_config(home, kafka, f"rec{keys}x{int(time.time())}")
                cfg = load_config(path)
                admin = new_admin(cfg.kafka, servers)
                ensure_topics(admin, topic_specs(cfg.kafka, len(cfg.retry.tiers)))
                admin.close()
                if keys:
                    fill = fill_changelog(cfg, servers, keys)
                    rows.append((f"  writing {label} to the changelog", f"{keys:,}", f"{fill:.1f} s"))
                elapsed = time_to_first_delivery(path, cfg, servers, home / f"recovery-{keys}.log")
                rows.append((f"start to first delivery, {label}", f"{keys:,}", f"{elapsed:.1f} s"))
                console.print(rows[-1])
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(home, ignore_errors=True)

    table = Table(title=f"stream stage, {args.size:,}-byte messages, one worker (2-core machine, shared)")
    for column in ("measurement", "records", "result"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    per_mail = Table(title="Kafka records and bytes per mail through the stream worker (as shipped)")
    for column in ("raw form", "records per mail (raw in + out)", "bytes per mail (raw in + out)"):
        per_mail.add_column(column)
    for row in kafka_rows:
        per_mail.add_row(*row)
    console.print(per_mail)


if __name__ == "__main__":
    main()
