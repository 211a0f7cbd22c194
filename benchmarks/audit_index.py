"""The audit index at retention scale: build rate, size, trace time against the full scan,
and the export rate, on a real embedded broker.

Run: .venv/bin/python benchmarks/audit_index.py [--mails 2000000] [--traces 5] [--home DIR]
     [--pack N] [--compare-pack N]

With ``--home`` the broker's data and the index stay in DIR between runs: a second run skips
producing (and, unless ``--rebuild``, building), so the timed traces can be repeated on a
quiet machine without producing 10 million events again.

Each generated mail leaves five events (fetched; routed and delivered for two recipients),
so the default is 10 million events, stamped evenly over two days: the first day is the
export's range (one day of a 1-million-mail tenant). Traces run the real command,
``mailferry audit trace``, as a new process each, so their time includes the command's own
start-up; each row gives wall and CPU time (the child's user + system) and the load average
beside it, since wall time on a shared machine follows the load. The full scan is the same
command with no index reachable (``--scan-limit`` stops it after that many seconds: the row
then says so).

``--pack N`` writes the events as a packing pipeline does (``mailferry.packing``): per stage
one record holding the events of N consecutive mails, keyed by its first event.
``--compare-pack N`` builds both layouts side by side (plain under the topic prefix
``bench``, packed under ``benchpackN``, on one broker) and interleaves their traces, so the
packed/plain ratio of trace time is measured under the same load.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mailferry.audit import audit_event
from mailferry.audit_export import export_events
from mailferry.audit_index.indexer import Indexer
from mailferry.audit_index.store import IndexStore
from mailferry.config.kafka import EmbeddedKafka, KafkaConfig
from mailferry.kafka.admin import ensure_topics
from mailferry.kafka.clients import new_admin, new_producer
from mailferry.kafka.embedded import EmbeddedBroker
from mailferry.kafka.topics import AUDIT, full_name, topic_specs
from mailferry.packing import AUDIT_PACK

DAY0 = datetime(2026, 11, 1, tzinfo=UTC)
EVENTS_PER_MAIL = 5


def mail_events(n: int, at: datetime) -> list[tuple[bytes, bytes]]:
    sha, mid = f"{n:064x}", f"<{n}.bench@example.org>"
    events = [audit_event("fetched", stage="fetch", tenant="acme", mailbox_id="catchall", sha256=sha, at=at)]
    for who in ("bob", "eve"):
        dk = f"acme|{who}@acme.example|{n}.bench@example.org"
        common = {"tenant": "acme", "message_id": mid, "sha256": sha, "dedup_key": dk}
        events.append(
            audit_event(
                "routed",
                stage="stream",
                recipient=f"{who}@acme.example",
                details={"reason": "envelope Delivered-To #1"},
                at=at,
                **common,
            )
        )
        events.append(
            audit_event(
                "delivered",
                stage="deliver",
                recipient=f"{who}@acme.example",
                details={"delivery_id": f"{n:x}-{who}", "target": "exchange", "attempts": "1"},
                at=at,
                **common,
            )
        )
    return events


def packed(mails: list[list[tuple[bytes, bytes]]]) -> list[tuple[bytes, bytes]]:
    """The records of these mails' events: plain for one mail, else one pack per stage
    (fetched; routed; delivered), as the stream and the deliver workers write them."""
    if len(mails) == 1:
        return mails[0]
    stages = [
        [m[0] for m in mails],
        [m[i] for m in mails for i in (1, 3)],
        [m[i] for m in mails for i in (2, 4)],
    ]
    return [(events[0][0], AUDIT_PACK.pack([value for _key, value in events])) for events in stages]


def produce(kafka: KafkaConfig, servers: list[str], mails: int, console: Console, pack: int = 1) -> float:
    producer = new_producer(kafka, servers, linger_ms=50, batch_size=1024 * 1024)
    topic = full_name(kafka, AUDIT)
    span = timedelta(days=2) / mails
    began = time.perf_counter()
    for first in range(0, mails, pack):
        at = DAY0 + first * span
        millis = int(at.timestamp() * 1000)
        group = [mail_events(n, DAY0 + n * span) for n in range(first, min(first + pack, mails))]
        for key, value in packed(group):
            producer.send(topic, key=key, value=value, timestamp_ms=millis)
        if first % 200_000 < pack and first:
            console.print(f"  produced {first * EVENTS_PER_MAIL:,} events", highlight=False)
    producer.flush()
    producer.close()
    return time.perf_counter() - began


def build_index(kafka: KafkaConfig, servers: list[str], folder: Path) -> tuple[float, float, int]:
    topic = full_name(kafka, AUDIT)
    store = IndexStore(folder, topic=topic)
    indexer = Indexer(kafka, servers, topic, store)
    wall, cpu = time.perf_counter(), time.process_time()
    indexer.catch_up(timeout=24 * 3600)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    events = indexer.stats.events
    indexer.close()
    store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return wall, cpu, events


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_cli(config: Path, args: list[str], limit: float | None = None) -> tuple[float, float, str | None]:
    """Wall and CPU seconds of ``mailferry args`` in a new process and its output (None when
    it was stopped at ``limit`` seconds). The command runs as installed: with its bytecode
    cached (a shell with PYTHONDONTWRITEBYTECODE would compile mailferry's modules every run)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    began, cpu = time.perf_counter(), _children_cpu()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "mailferry", "-c", str(config), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=limit,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return time.perf_counter() - began, _children_cpu() - cpu, None
    if done.returncode != 0:
        raise RuntimeError(f"{args}: {done.stderr[-2000:]}")
    return time.perf_counter() - began, _children_cpu() - cpu, done.stdout


def load() -> float:
    return os.getloadavg()[0]


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f})"


def export_row(kafka: KafkaConfig, servers: list[str]) -> tuple[str, str, str]:
    """The first generated day, exported as JSON lines to nowhere: what an archive job costs."""
    with open(os.devnull, "w", encoding="utf-8") as sink:
        wall, cpu = time.perf_counter(), time.process_time()
        exported = export_events(kafka, servers, sink, since=DAY0, until=DAY0 + timedelta(days=1))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return (
        f"export one day, jsonl ({exported:,} events, {exported // EVENTS_PER_MAIL:,} mails)",
        f"{wall:.0f} s wall, {cpu:.0f} s CPU",
        f"{exported / wall:,.0f} events/s, {exported / cpu:,.0f} events/CPU-s",
    )


def write_config(path: Path, state: Path, kafka: KafkaConfig, index: Path) -> None:
    path.write_text(
        f'state_dir = "{state}"\n' + kafka.connection_toml() + f'[audit_index]\npath = "{index}"\n',
        encoding="utf-8",
    )


@dataclass
class Layout:
    """One way of writing the same events: its topic prefix, index folder and traces."""

    pack: int
    home: Path
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)

    @property
    def label(self) -> str:
        return "plain" if self.pack == 1 else f"packs of {self.pack} mails"

    @property
    def prefix(self) -> str:
        return "bench" if self.pack == 1 else f"benchpack{self.pack}"

    @property
    def index(self) -> Path:
        return self.home / ("index" if self.pack == 1 else f"index-{self.prefix}")

    def marker(self, mails: int) -> Path:
        return self.home / (f"produced-{mails}" if self.pack == 1 else f"produced-{self.prefix}-{mails}")


def prepare(
    layout: Layout, broker: EmbeddedBroker, mails: int, rebuild: bool, console: Console
) -> tuple[KafkaConfig, Path, list[tuple[str, str, str]]]:
    """The layout's topic produced and indexed (each once per --home); its config file."""
    rows = []
    kafka = broker.client_config(KafkaConfig(topic_prefix=layout.prefix))
    servers = [broker.address]
    admin = new_admin(kafka, servers)
    ensure_topics(admin, topic_specs(kafka, 1))
    admin.close()
    events = mails * EVENTS_PER_MAIL
    if not layout.marker(mails).exists():
        console.print(f"producing {events:,} audit events ({mails:,} mails, {layout.label})", highlight=False)
        produced = produce(kafka, servers, mails, console, layout.pack)
        layout.marker(mails).touch()
        rows.append(
            (f"produce (setup), {layout.label}", f"{produced:.0f} s", f"{events / produced:,.0f} events/s")
        )
    if rebuild or not layout.index.exists():
        shutil.rmtree(layout.index, ignore_errors=True)
        wall, cpu, indexed = build_index(kafka, servers, layout.index)
        size = sum(f.stat().st_size for f in layout.index.iterdir())
        per_million = size / 1e6 / (indexed / 1e6)
        rate = f"{indexed / cpu:,.0f} events/CPU-s"
        rows.append((f"index build, {layout.label}", f"{wall:.0f} s wall, {cpu:.0f} s CPU", rate))
        rows.append(
            (
                f"index size, {layout.label}",
                f"{size / 1e6:,.0f} MB",
                f"{per_million:.1f} MB per million events",
            )
        )
    config = layout.home / f"{layout.prefix}.toml"
    write_config(config, layout.home / "state", kafka, layout.index)
    return kafka, config, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mails", type=int, default=2_000_000)
    parser.add_argument("--traces", type=int, default=5)
    parser.add_argument("--skip-scan", action="store_true", help="leave out the full-scan row")
    parser.add_argument("--home", type=Path, help="keep broker data and index here between runs")
    parser.add_argument("--rebuild", action="store_true", help="with --home: build the index again")
    parser.add_argument("--skip-export", action="store_true", help="leave out the export row")
    parser.add_argument("--keep-broker", action="store_true", help="with --home: leave the broker running")
    parser.add_argument("--scan-limit", type=float, help="stop the full scan after this many seconds")
    parser.add_argument("--pack", type=int, default=1, help="mails per audit record and stage (1: plain)")
    parser.add_argument("--compare-pack", type=int, help="plain and packs of N mails side by side")
    args = parser.parse_args()
    console = Console()
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="audit-bench-") as scratch:
        home = args.home or Path(scratch)
        home.mkdir(parents=True, exist_ok=True)
        packs = [1, args.compare_pack] if args.compare_pack else [args.pack]
        layouts = [Layout(pack, home) for pack in packs]
        broker = EmbeddedBroker(EmbeddedKafka(port=0, controller_port=0, heap="1g"), home / "kafka")
        address = broker.start().address
        events = args.mails * EVENTS_PER_MAIL
        try:
            servers = [address]
            prepared = [prepare(layout, broker, args.mails, args.rebuild, console) for layout in layouts]
            for _kafka, _config, built in prepared:
                rows += built
            kafka, config = prepared[0][0], prepared[0][1]
            picks = random.Random(7).sample(range(args.mails), args.traces)
            loads = []
            for n in picks:
                for layout, (_kafka, layout_config, _rows) in zip(layouts, prepared, strict=True):
                    loads.append(load())
                    wall, cpu, out = timed_cli(
                        layout_config, ["audit", "trace", "--json", f"<{n}.bench@example.org>"]
                    )
                    found = (out or "").count('"event_id"')
                    if found != EVENTS_PER_MAIL:
                        raise RuntimeError(f"trace of mail {n} ({layout.label}) found {found} events")
                    layout.walls.append(wall)
                    layout.cpus.append(cpu)
            for layout in layouts:
                rows.append(
                    (
                        f"audit trace, index, {layout.label} ({args.traces} mails, new process each)",
                        f"wall {spread(layout.walls)}; CPU median {statistics.median(layout.cpus):.2f} s",
                        f"load {min(loads):.1f}-{max(loads):.1f}",
                    )
                )
            if len(layouts) == 2:
                plain, pack = layouts
                rows.append(
                    (
                        f"ratio {pack.label} / plain (interleaved)",
                        f"wall median {statistics.median(pack.walls) / statistics.median(plain.walls):.2f}",
                        f"CPU median {statistics.median(pack.cpus) / statistics.median(plain.cpus):.2f}",
                    )
                )
            starts = [timed_cli(config, ["--help"]) for _ in range(5)]
            rows.append(
                (
                    "the command's own start-up (--help, 5 runs)",
                    f"wall {spread([w for w, _, _ in starts])}; CPU median "
                    f"{statistics.median([c for _, c, _ in starts]):.2f} s",
                    f"load {load():.1f}",
                )
            )
            if not args.skip_scan:
                noindex = home / "noindex.toml"
                write_config(noindex, home / "state", kafka, home / "absent")  # the first layout
                before = load()
                wall, cpu, out = timed_cli(
                    noindex,
                    ["audit", "trace", "--json", "--since", "2000-01-01", f"<{picks[0]}.bench@example.org>"],
                    limit=args.scan_limit,
                )
                if out is None:
                    what = f"stopped at {wall:.0f} s wall, {cpu:.0f} s CPU, unfinished"
                else:
                    assert out.count('"event_id"') == EVENTS_PER_MAIL
                    what = f"{wall:.0f} s wall, {cpu:.0f} s CPU"
                rows.append(
                    (
                        "audit trace, full scan (same mail, two passes over the topic)",
                        what,
                        f"load {before:.1f}-{load():.1f}",
                    )
                )

            if not args.skip_export:
                rows.append(export_row(kafka, servers))
        finally:
            if not (args.home and args.keep_broker):
                broker.stop()
    table = Table(title=f"audit index, {events:,} events, {os.cpu_count()} cores")
    for column in ("what", "time / size", "rate"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)


if __name__ == "__main__":
    main()
