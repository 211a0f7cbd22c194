"""Delivery worker throughput: Maildir, an SMTP sink and the EWS EMULATOR, through the real
worker and broker, with one delivery per Kafka record and with packed records.

Run: .venv/bin/python benchmarks/deliver_throughput.py [--messages 2000] [--size 5000]
     [--mailboxes 50] [--concurrency 8] [--pack 20] [--only maildir]

For each target an embedded broker (temporary folder) gets --messages delivery records on
the deliver topic, then ``DeliveryWorker`` (the code behind ``mailferry deliver``) runs in
this process until every message is in place. Reported per target:
- direct: the target alone, called from a thread pool of the same size (no Kafka) — the
  ceiling the worker is measured against;
- worker: first to last delivery (steady rate) and from worker start (ledger load and
  consumer-group join included); every delivery also writes a ledger entry and an audit
  event and waits for Kafka's acknowledgement before its offset is committed.
The SMTP sink is aiosmtpd on 127.0.0.1 without TLS (counts and drops messages). The Graph
rows write into the GRAPH EMULATOR (not Microsoft Graph), run in this process: its CPU is in
those rows' CPU column.

The Maildir and Graph targets run twice in the same run: with the worker's batches (group commit:
one fsync of each ``new/`` folder per batch, the batch's ledger entries sent together) and
with batches of one (``consumers.batching.BATCH_SIZES`` set to 1: a folder fsync per
message, one attempt per thread hand-off, as before batching; for Graph one request per
message instead of $batch requests of up to 20). CPU is this process's
(the worker's) per 1,000 deliveries; the broker is another process.

The "packed" rows put the same deliveries on the deliver topic as the stream does under
load (``mailferry.packing``): the deliveries bound for one partition (Kafka's default
partitioner on ``tenant/recipient``) in records of up to ``--pack``, keyed by the first.
The EWS EMULATOR (not Microsoft Exchange) runs in this process: its CPU is in those rows'
CPU column.

"as shipped" rows (Maildir and EWS) run the same worker with the switches of the 2026-12-04
changes set back (``variant``): Maildir files of a batch written and fsynced one after
another (``maildir.WRITERS = 1``), one audit record per delivered/skipped event
(``outcomes.PACK_AUDIT = False``) and the outcome producer's 5 ms / 16 KiB batching
(``worker.OUTCOME_PRODUCER = {}``). Each pair runs next to each other, the older first, so
the machine's load hits both alike; "packed audit only" sets back the Maildir writes and
the producer, "producer as shipped" only the producer (these three also write the ledger one
record per entry, as then); "ledger 1 record/entry" sets back only the ledger packs
(``outcomes.PACK_LEDGER = False``). ``--repeat`` runs every row again,
in the same order.
The CPU column is this process's user + kernel time; "kernel" is its kernel share (file
writes, fsyncs, sockets).
"""

from __future__ import annotations

import argparse
import faulthandler
import hashlib
import io
import os
import resource
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from kafka.partitioner.default import murmur2
from rich.console import Console
from rich.table import Table

from mailferry.config import MailferryConfig, parse_config
from mailferry.config.kafka import EmbeddedKafka, KafkaConfig
from mailferry.consumers import batching, outcomes
from mailferry.consumers import worker as deliver_worker
from mailferry.consumers.registry import build_target
from mailferry.consumers.target import DeliveryItem
from mailferry.consumers.targets import maildir
from mailferry.consumers.targets.maildir import mailbox_dirname
from mailferry.consumers.worker import DeliveryWorker
from mailferry.kafka.admin import ensure_topics
from mailferry.kafka.clients import new_admin, new_producer
from mailferry.kafka.embedded import EmbeddedBroker
from mailferry.kafka.topics import DELIVER, full_name, topic_specs
from mailferry.packing import DELIVERY_PACK
from mailferry.schemas.codec import DELIVERY, codec
from mailferry_testkit.ews_emulator.server import EwsEmulator
from mailferry_testkit.graph_emulator import GraphEmulator

EWS_USER, EWS_PASSWORD = "svc-mailferry", "emulator"
Target = tuple[str, str, Callable[[], int]]  # row name, target TOML, delivered count
Scenario = tuple[str, Callable[[], Target], int | None, int, str]
"""kind, target, batch size override, deliveries per record, variant (``VARIANTS``)"""


class CountingSink:
    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.count += 1
        return "250 queued"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def message(index: int, size: int) -> bytes:
    head = (
        f"From: sender@example.org\r\nTo: user{index}@acme.example\r\nSubject: bench {index}\r\n"
        f"Message-ID: <{index}.{uuid.uuid4().hex}@bench>\r\n\r\n"
    ).encode()
    line = b"x" * 76 + b"\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


def config_for(home: Path, broker: EmbeddedBroker, target_toml: str) -> MailferryConfig:
    kafka = broker.client_config(KafkaConfig(topic_prefix=f"b{uuid.uuid4().hex[:8]}"))
    text = (
        f'state_dir = "{home / "state"}"\nallow_plaintext_secrets = true\n'
        + kafka.connection_toml()
        + '[[tenants]]\nid = "acme"\naccepted_domains = ["acme.example"]\n'
        'default_mailbox = "postmaster@acme.example"\ndefault_target = "t"\n' + target_toml
    )
    config = parse_config(text)
    admin = new_admin(kafka, list(kafka.bootstrap_servers))
    ensure_topics(admin, topic_specs(config.kafka, len(config.retry.tiers)))
    admin.close()
    return config


def record(index: int, mailboxes: int, body: bytes) -> dict[str, Any]:
    recipient = f"user{index % mailboxes}@acme.example"
    return {
        "delivery_id": uuid.uuid4().hex,
        "tenant": "acme",
        "recipient": recipient,
        "target": "t",
        "dedup_key": f"acme/{recipient}/{index}/{uuid.uuid4().hex}",
        "message_id": None,
        "mailbox_id": "bench",
        "size": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "inline": body,
        "blob_ref": None,
        "reasons": [],
        "flags": [],
        "add_headers": [{"name": "X-Mailferry-Trace", "value": "acme; bench"}],
        "raw_origin": None,
        "routed_at": datetime.now(UTC),
    }


def direct_rate(config: MailferryConfig, records: list[dict[str, Any]], concurrency: int) -> float:
    target = build_target(config.tenant("acme"), "t")

    def one(rec: dict[str, Any]) -> None:
        body = rec["inline"]
        target.deliver(
            DeliveryItem(
                tenant="acme",
                mailbox=rec["recipient"],
                dedup_key="direct/" + rec["dedup_key"],
                message_id=None,
                size=len(body),
                sha256=rec["sha256"],
                open_message=lambda: io.BytesIO(body),
                add_headers=(("X-Mailferry-Trace", "acme; bench"),),
            )
        )

    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, records))
    elapsed = time.perf_counter() - began
    target.close()
    return len(records) / elapsed


def publish(config: MailferryConfig, records: list[dict[str, Any]], pack: int) -> int:
    """Put ``records`` on the deliver topic, up to ``pack`` per Kafka record; how many records."""
    producer = new_producer(config.kafka, list(config.kafka.bootstrap_servers))
    topic = full_name(config.kafka, DELIVER)
    partitions = sorted(producer.partitions_for(topic))
    bound: dict[int, list[tuple[bytes, bytes]]] = {}
    for rec in records:
        key = f"acme/{rec['recipient']}".encode()
        partition = partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]  # Kafka's default
        bound.setdefault(partition, []).append((key, codec(DELIVERY).encode(rec)))
    sent = 0
    for partition, items in bound.items():
        for start in range(0, len(items), pack):
            chunk = items[start : start + pack]
            value = DELIVERY_PACK.pack([value for _, value in chunk])
            producer.send(topic, key=chunk[0][0], value=value, partition=partition)
            sent += 1
    producer.flush()
    producer.close()
    return sent


def worker_rates(
    config: MailferryConfig, records: list[dict[str, Any]], delivered: Callable[[], int]
) -> tuple[float, float, float, float]:
    baseline = delivered()
    worker = DeliveryWorker(config, list(config.kafka.bootstrap_servers))
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    began = time.perf_counter()
    usage_began = resource.getrusage(resource.RUSAGE_SELF)
    thread.start()
    first = None
    deadline = began + 600
    while delivered() - baseline < len(records):
        if time.perf_counter() > deadline:
            raise RuntimeError(f"only {delivered() - baseline} of {len(records)} delivered in 600 s")
        if first is None and delivered() > baseline:
            first = time.perf_counter()
        if not thread.is_alive():
            raise RuntimeError("the worker stopped early")
        time.sleep(0.1)
    last = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    stop.set()
    thread.join(timeout=120)
    user = usage.ru_utime - usage_began.ru_utime
    kernel = usage.ru_stime - usage_began.ru_stime
    steady = (len(records) - 1) / (last - (first or began)) if len(records) > 1 else float("nan")
    per_1000 = 1000 / len(records)
    return steady, len(records) / (last - began), (user + kernel) * per_1000, kernel * per_1000


VARIANTS: dict[str, tuple[int, bool, dict[str, Any], bool]] = {
    # row suffix: (maildir.WRITERS, outcomes.PACK_AUDIT, worker.OUTCOME_PRODUCER,
    # outcomes.PACK_LEDGER); "": this tree's
    "": (maildir.WRITERS, outcomes.PACK_AUDIT, dict(deliver_worker.OUTCOME_PRODUCER), outcomes.PACK_LEDGER),
    ", as shipped": (1, False, {}, False),
    ", packed audit only": (1, True, {}, False),
    ", producer as shipped": (maildir.WRITERS, outcomes.PACK_AUDIT, {}, False),
    ", ledger 1 record/entry": (
        maildir.WRITERS,
        outcomes.PACK_AUDIT,
        dict(deliver_worker.OUTCOME_PRODUCER),
        False,
    ),
}


def variant(suffix: str) -> None:
    """Set the switches of the 2026-12-04 changes as the row ``suffix`` says."""
    maildir.WRITERS, outcomes.PACK_AUDIT, producer, outcomes.PACK_LEDGER = VARIANTS[suffix]
    deliver_worker.OUTCOME_PRODUCER.clear()
    deliver_worker.OUTCOME_PRODUCER.update(producer)


def _maildir(root: Path, mailboxes: int, concurrency: int) -> Target:
    folders = [root / mailbox_dirname(f"user{i}@acme.example") / "new" for i in range(mailboxes)]

    def delivered() -> int:  # listdir, not glob: the count ran in the worker's process, under its GIL
        return sum(len(os.listdir(folder)) for folder in folders if folder.is_dir())

    toml = (
        f'[[tenants.targets]]\nname = "t"\nkind = "maildir"\npath = "{root}"\nconcurrency = {concurrency}\n'
    )
    return "maildir", toml, delivered


def _emulated_mailboxes(emulator: EwsEmulator | GraphEmulator, mailboxes: int) -> Callable[[], int]:
    """Add the postmaster and ``user0..`` mailboxes; how many messages they hold."""
    addresses = [f"user{i}@acme.example" for i in range(mailboxes)]
    for address in ("postmaster@acme.example", *addresses):
        emulator.add_mailbox(address)

    def delivered() -> int:
        return sum(len(emulator.items(a)) for a in addresses)

    return delivered


def _ews(emulator: EwsEmulator, mailboxes: int, concurrency: int) -> Target:
    """The EWS target into the EWS EMULATOR (not Microsoft Exchange), in this process."""
    emulator.add_account(EWS_USER, EWS_PASSWORD)
    delivered = _emulated_mailboxes(emulator, mailboxes)
    toml = (
        f'[[tenants.targets]]\nname = "t"\nkind = "ews"\nendpoint = "{emulator.url}"\n'
        'version = "Exchange2016"\n'
        f'auth = "basic"\nusername = "{EWS_USER}"\npassword = "{EWS_PASSWORD}"\ntimeout = "60s"\n'
        f"concurrency = {concurrency}\n"
    )
    return "ews (EWS EMULATOR)", toml, delivered


def _graph(emulator: GraphEmulator, mailboxes: int, concurrency: int) -> Target:
    """The Graph target (import-mime) into the GRAPH EMULATOR (not Microsoft Graph), in this process."""
    emulator.add_app("bench-app", "bench secret", "acme-tenant")
    delivered = _emulated_mailboxes(emulator, mailboxes)
    os.environ["BENCH_GRAPH_SECRET"] = "bench secret"
    toml = (
        f'[[tenants.targets]]\nname = "t"\nkind = "graph"\nmode = "import-mime"\n'
        f'base_url = "{emulator.base_url}"\nauthority = "{emulator.authority("acme-tenant")}"\n'
        f'ca_file = "{emulator.identity_ca_file}"\ntenant_id = "acme-tenant"\nclient_id = "bench-app"\n'
        f'client_secret = "env:BENCH_GRAPH_SECRET"\nconcurrency = {min(concurrency, 4)}\n'  # Graph allows 4
    )
    return "graph import-mime (GRAPH EMULATOR, $batch)", toml, delivered


def main() -> None:
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` prints every thread's stack
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--size", type=int, default=5000)
    parser.add_argument("--mailboxes", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--pack", type=int, default=20, help="deliveries per record in the packed rows")
    parser.add_argument(
        "--only", default="", help="run only the rows whose name starts with this (comma-separated)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="run every row this many times")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        broker = EmbeddedBroker(EmbeddedKafka(port=0, controller_port=0), home / "kafka")
        broker.start()
        sink = CountingSink()
        smtp_port = free_port()
        controller = Controller(sink, hostname="127.0.0.1", port=smtp_port)
        controller.start()
        # one EMULATOR per EWS row: a second worker in this process against the endpoint of an
        # earlier one stalls after ~45 deliveries, packed or not (exchangelib state; not looked into)
        exchanges: list[EwsEmulator] = []

        def ews() -> Target:
            exchanges.append(EwsEmulator().start())
            return _ews(exchanges[-1], args.mailboxes, args.concurrency)

        graph_api = GraphEmulator().start()
        folders = iter(range(10**6))
        try:

            def md() -> Target:
                return _maildir(home / f"maildir{next(folders)}", args.mailboxes, args.concurrency)

            def smtp() -> Target:
                toml = (
                    '[[tenants.targets]]\nname = "t"\nkind = "smtp"\nhost = "127.0.0.1"\n'
                    f'port = {smtp_port}\ntls = "none"\nconcurrency = {args.concurrency}\n'
                )
                return "smtp (aiosmtpd sink)", toml, lambda: sink.count

            def graph() -> Target:
                return _graph(graph_api, args.mailboxes, args.concurrency)

            scenarios: list[Scenario] = [
                ("maildir", md, None, 1, ", as shipped"),
                ("maildir", md, None, 1, ""),
                ("maildir", md, None, 1, ", ledger 1 record/entry"),
                ("maildir", md, None, 1, ", packed audit only"),
                ("maildir", md, None, 1, ", producer as shipped"),
                ("maildir", md, None, args.pack, ", as shipped"),
                ("maildir", md, None, args.pack, ""),
                ("maildir", md, None, args.pack, ", ledger 1 record/entry"),
                ("maildir", md, None, args.pack, ", packed audit only"),
                ("maildir", md, None, args.pack, ", producer as shipped"),
                ("maildir", md, 1, 1, ", as shipped"),
                ("ews", ews, None, 1, ", as shipped"),
                ("ews", ews, None, 1, ""),
                ("ews", ews, None, 1, ", ledger 1 record/entry"),
                ("ews", ews, None, args.pack, ", as shipped"),
                ("ews", ews, None, args.pack, ""),
                ("ews", ews, None, args.pack, ", ledger 1 record/entry"),
                ("smtp", smtp, None, 1, ""),
                ("graph", graph, None, 1, ""),
                ("graph", graph, 1, 1, ""),
            ]
            sizes = dict(batching.BATCH_SIZES)
            for _round in range(args.repeat):
                for kind, make, one_by_one, pack, suffix in scenarios:
                    if not kind.startswith(tuple(args.only.split(","))):
                        continue
                    variant(suffix)
                    name, toml, delivered = make()
                    if one_by_one is not None:
                        batching.BATCH_SIZES.update(dict.fromkeys(sizes, one_by_one))
                        name = name.replace(", $batch", "") + ", batches of 1 (before)"
                    else:
                        batching.BATCH_SIZES.update(sizes)
                    name += f", packed ≤{pack}/record" if pack > 1 else ", 1/record"
                    name += suffix
                    config = config_for(home, broker, toml)
                    records = [record(i, args.mailboxes, message(i, args.size)) for i in range(args.messages)]
                    direct = direct_rate(config, records, args.concurrency)
                    print(f"{name}: direct {direct:.0f}/s, now through the worker", file=sys.stderr)
                    kafka_records = publish(config, records, pack)
                    steady, total, cpu_ms, kernel_ms = worker_rates(config, records, delivered)
                    print(f"{name}: {steady:.0f}/s, {cpu_ms:.2f} CPU s/1k", file=sys.stderr)
                    rows.append((name, kafka_records, direct, steady, total, cpu_ms, kernel_ms))
        finally:
            variant("")
            graph_api.stop()
            controller.stop()
            for exchange in exchanges:
                exchange.stop()
            broker.stop()
    table = Table(
        title=f"deliveries/s: {args.messages} messages of ~{args.size} B to {args.mailboxes} mailboxes, "
        f"concurrency {args.concurrency}"
    )
    columns = (
        "target",
        "deliver records",
        "direct (no Kafka)",
        "worker steady",
        "worker incl. start",
        "worker/direct",
        "worker CPU s / 1,000",
        "of which kernel",
    )
    for column in columns:
        table.add_column(column)
    for name, kafka_records, direct, steady, total, cpu_ms, kernel_ms in rows:
        table.add_row(
            name,
            str(kafka_records),
            f"{direct:.0f}",
            f"{steady:.0f}",
            f"{total:.0f}",
            f"{steady / direct:.0%}",
            f"{cpu_ms:.2f}",
            f"{kernel_ms:.2f}",
        )
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
