"""How long a deliver worker takes to read the delivery ledger at start, single entries
against packs, on the real embedded broker.

Run: .venv/bin/python benchmarks/ledger_load.py [--entries 200000] [--batch 50] [--rounds 2]

Every deliver worker reads the whole ledger topic before its first delivery
(``Ledger.load``), so the ledger's record count is start-up time after every restart and
rebalance-free crash. This writes ``--entries`` delivered entries twice, into two topic
prefixes: once one record per entry (as before 2026-12-04), once in packs of ``--batch``
entries per partition (``Ledger.record_many``, what an attempt batch writes now). Then it
times ``Ledger.load`` of each, alternating, ``--rounds`` times, and prints records,
bytes on the broker, load wall time and CPU (this process: the loader's consumer and its
decoding).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mailferry.config.kafka import EmbeddedKafka, KafkaConfig
from mailferry.consumers.ledger import Entry, Ledger, ledger_key
from mailferry.kafka.admin import ensure_topics
from mailferry.kafka.clients import new_admin, new_producer
from mailferry.kafka.embedded import EmbeddedBroker
from mailferry.kafka.topics import DELIVERY_LEDGER, full_name, topic_specs


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def fill(kafka: KafkaConfig, servers: list[str], entries: int, batch: int) -> None:
    """``entries`` delivered entries, written as an attempt batch of ``batch`` would write them."""
    producer = new_producer(kafka, servers, linger_ms=20, batch_size=256 * 1024)
    writer = Ledger(kafka, servers, producer)
    try:
        done = 0
        while done < entries:
            size = min(batch, entries - done)
            pending = [
                Entry(
                    ledger_key("acme", "archive", f"user{(done + i) % 500}@acme.example", uuid.uuid4().hex),
                    uuid.uuid4().hex,
                    (done // batch) % kafka.topics.defaults.partitions,
                )
                for i in range(size)
            ]
            writer.record_many(pending)  # a batch of one is written as a single entry
            done += size
        producer.flush()
    finally:
        writer.close()
        producer.close()


def topic_bytes(broker_home: Path, kafka: KafkaConfig) -> int:
    topic = full_name(kafka, DELIVERY_LEDGER)
    return sum(f.stat().st_size for f in broker_home.rglob("*.log") if f.parent.name.startswith(f"{topic}-"))


def load_once(kafka: KafkaConfig, servers: list[str]) -> tuple[int, float, float]:
    producer = new_producer(kafka, servers)
    ledger = Ledger(kafka, servers, producer)
    try:
        cpu, began = _cpu(), time.monotonic()
        loaded = ledger.load(timeout_s=600)
        return loaded, time.monotonic() - began, _cpu() - cpu
    finally:
        ledger.close()
        producer.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=50, help="entries per attempt batch in the packed topic")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mailferry-ledger-load-") as tmp:
        home = Path(tmp)
        broker = EmbeddedBroker(EmbeddedKafka(port=0, controller_port=0), home / "kafka")
        broker.start()
        try:
            servers: list[str] = []
            sides: dict[str, KafkaConfig] = {}
            for name, batch in (("one record per entry", 1), (f"packs of {args.batch}", args.batch)):
                kafka = broker.client_config(KafkaConfig(topic_prefix=f"l{uuid.uuid4().hex[:8]}"))
                servers = list(kafka.bootstrap_servers)
                admin = new_admin(kafka, servers)
                ensure_topics(admin, topic_specs(kafka, 1))
                admin.close()
                began = time.monotonic()
                fill(kafka, servers, args.entries, batch)
                print(f"{name}: written in {time.monotonic() - began:.1f} s", file=sys.stderr)
                sides[name] = kafka
            rows = []
            for round_ in range(1, args.rounds + 1):
                for name, kafka in sides.items():
                    loaded, wall, cpu = load_once(kafka, servers)
                    print(f"{name}, round {round_}: {loaded} entries in {wall:.2f} s", file=sys.stderr)
                    rows.append((name, round_, loaded, wall, cpu, topic_bytes(home / "kafka", kafka)))
        finally:
            broker.stop()
    table = Table(title=f"Ledger.load of {args.entries:,} delivered entries")
    for column in ("ledger written as", "round", "entries loaded", "load wall s", "load CPU s", "topic MB"):
        table.add_column(column)
    for name, round_, loaded, wall, cpu, size in rows:
        table.add_row(name, str(round_), f"{loaded:,}", f"{wall:.2f}", f"{cpu:.2f}", f"{size / 1e6:.1f}")
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
