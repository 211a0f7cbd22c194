"""Fetch throughput into Kafka, side by side with the server's limit and a plain poplib loop.

Run (as root: it starts its own Dovecot and embedded Kafka on loopback):
    .venv/bin/python benchmarks/fetch_throughput.py [--mailboxes 100] [--messages 100] [--huge-mb 150]

Every client reads the same Dovecot data over plain POP3/IMAP on 127.0.0.1, one mailbox after
the other unless the row says otherwise, and leaves the mail on the server:
  (a) socket drain: all RETRs pipelined, replies drained without parsing (the server's limit)
  (b) poplib loop: USER/PASS, RETR one by one
  (c) mailferry's POP3 reader alone (pipelined RETR, block reads), no Kafka
  (d) mailferry POP3 pass into Kafka (raw records, audit, fetch state; acks=all, idempotent)
  (e) the same, 8 mailboxes at once (as the fetch worker's scheduler runs them)
  (f) mailferry IMAP pass into Kafka
  (h) as (d) with one audit record per event, as before a pass's events were packed (runs
      just before (d), for a side-by-side ratio)
  (g) the same as (e), spread over --processes worker processes (each its own producer, as
      `mailferry fetch` workers of one consumer group would be); their start-up is not timed
Besides wall and CPU seconds of the benchmark process, each row shows the CPU seconds Dovecot
and the Kafka broker spent meanwhile, and "at best": (a)'s time over the row's CPU floor (all
three CPU figures spread perfectly over the machine's cores), the most the row could reach
here whatever the scheduling.
Then the peak RSS of a process fetching one --huge-mb message (POP3 and IMAP, each in its own
process) into Kafka and the blob store.
"""

from __future__ import annotations

import argparse
import json
import os
import poplib
import random
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mailferry.blobs import LocalBlobStore
from mailferry.config import MailferryConfig
from mailferry.config.kafka import EmbeddedKafka, KafkaConfig
from mailferry.config.loader import parse_config
from mailferry.config.sources import ImapSource, Pop3Source
from mailferry.kafka.admin import ensure_topics
from mailferry.kafka.clients import new_admin
from mailferry.kafka.embedded import EmbeddedBroker
from mailferry.kafka.topics import topic_specs
from mailferry.producers.context import FetchContext
from mailferry.producers.imap_fetch import imap_pass
from mailferry.producers.mailboxes import sync_mailboxes
from mailferry.producers.pop3_client import Pop3Client
from mailferry.producers.pop3_fetch import pop3_pass
from mailferry.producers.publish import Publisher, make_producer
from mailferry.producers.state import MailboxState
from mailferry_testkit.dovecot import DovecotServer

PASSWORD = "bench"
TICKS = os.sysconf("SC_CLK_TCK")
CONTEXT = ssl.create_default_context()
_WORDS = [
    w.encode()
    for w in [
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "lazy",
        "dog",
        "mail",
        "ferry",
        "kafka",
        "pop",
        "imap",
    ]
]


def make_message(rnd: random.Random, n: int, size: int) -> bytes:
    """A plausible message of about ``size`` bytes: headers, text lines, a few dot-leading lines."""
    head = (
        f"Message-ID: <bench-{n}@bench.example>\r\nFrom: sender{n % 50}@example.org\r\n"
        f"To: user{n % 100}@acme.example\r\nSubject: benchmark message {n}\r\n"
        "Date: Sun, 29 Nov 2026 08:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    ).encode()
    lines = [head]
    total = len(head)
    while total < size:
        line = b" ".join(rnd.choice(_WORDS) for _ in range(12))[:76]
        if rnd.random() < 0.01:
            line = b"." + line
        lines.append(line + b"\r\n")
        total += len(line) + 2
    return b"".join(lines)


def mixed_size(rnd: random.Random) -> int:
    """70% 2-20 KB, 25% 20-100 KB, 5% 100 KB-1 MB."""
    roll = rnd.random()
    if roll < 0.70:
        return rnd.randint(2_000, 20_000)
    if roll < 0.95:
        return rnd.randint(20_000, 100_000)
    return rnd.randint(100_000, 1_000_000)


def config_for(tmp: Path, kafka: KafkaConfig, dovecot: DovecotServer, users: list[str]) -> MailferryConfig:
    return parse_config(config_text(tmp, kafka, dovecot, users))


def config_text(tmp: Path, kafka: KafkaConfig, dovecot: DovecotServer, users: list[str]) -> str:
    sources = "".join(
        f'[[tenants.sources]]\nid = "{u}"\nkind = "pop3"\nmode = "personal"\nhost = "127.0.0.1"\n'
        f'port = {dovecot.pop3_port}\ntls = "none"\nallow_plaintext_login = true\nusername = "{u}"\n'
        f'auth = {{ kind = "password", password = "{PASSWORD}" }}\ndeliver_to = "a@acme.example"\n'
        "leave_on_server = true\n"
        for u in users
    )
    text = (
        f'state_dir = "{tmp / "state"}"\nallow_plaintext_secrets = true\n'
        + kafka.connection_toml()
        + '[[tenants]]\nid = "acme"\naccepted_domains = ["acme.example"]\n'
        'default_mailbox = "postmaster@acme.example"\ndefault_target = "archive"\n'
        f'fetch_concurrency = 8\n[[tenants.targets]]\nname = "archive"\nkind = "maildir"\npath = "{tmp}"\n'
        + sources
    )
    return text


def imap_variant(source: Pop3Source, imap_port: int) -> ImapSource:
    data = source.model_dump(exclude={"kind", "leave_on_server", "delete_after", "deliver_to", "auth"})
    data.update(kind="imap", mode="global", port=imap_port, after_fetch="none", idle=False)
    data["auth"] = source.auth
    return ImapSource.model_validate(data)


def context(config: MailferryConfig) -> FetchContext:
    producer = make_producer(config, list(config.kafka.bootstrap_servers))
    return FetchContext(
        publisher=Publisher(config, producer),
        blobs=LocalBlobStore(config.blob_dir),
        inline_threshold=config.blob_store.inline_threshold,
    )


# -- the clients ------------------------------------------------------------------------------
def drain(port: int, user: str, count: int) -> int:
    sock = socket.create_connection(("127.0.0.1", port))
    reader = sock.makefile("rb")
    reader.readline()
    commands = f"USER {user}\r\nPASS {PASSWORD}\r\n" + "".join(f"RETR {i}\r\n" for i in range(1, count + 1))
    sock.sendall((commands + "QUIT\r\n").encode())
    total = 0
    while chunk := sock.recv(1 << 20):
        total += len(chunk)
    sock.close()
    return total


def poplib_loop(port: int, user: str, count: int) -> int:
    pop = poplib.POP3("127.0.0.1", port)
    pop.user(user)
    pop.pass_(PASSWORD)
    total = 0
    for i in range(1, count + 1):
        _, _lines, octets = pop.retr(i)
        total += octets
    pop.quit()
    return total


def reader_only(port: int, user: str, count: int) -> int:
    client = Pop3Client.connect("127.0.0.1", port, tls="none", context=CONTEXT, timeout=60)
    client.login_user(user, PASSWORD)
    total = 0
    for _, chunks in client.retrieve(range(1, count + 1)):
        total += len(b"".join(chunks))
    client.quit()
    return total


@dataclass(frozen=True)
class Row:
    label: str
    seconds: float
    cpu: float  # this process's CPU seconds (all threads), + the children's for row (g)
    dovecot_cpu: float
    kafka_cpu: float

    @property
    def total_cpu(self) -> float:
        return self.cpu + self.dovecot_cpu + self.kafka_cpu


def proc_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` (all threads), of its ended children and of its live children:
    Dovecot forks a process per session and reaps it, the broker is one JVM."""
    total = _stat_cpu(pid, children=True)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if parent == pid:
                total += _stat_cpu(int(entry.name), children=True)
    return total


def _stat_cpu(pid: int, *, children: bool) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICKS


def timed(
    label: str,
    run: Callable[[], int],
    servers: Callable[[], tuple[float, float]],
    prepare: Callable[[], None] | None = None,
) -> Row:
    """Wall and CPU seconds of one row; ``servers`` gives Dovecot's and Kafka's CPU so far."""
    if prepare is not None:
        prepare()
    dovecot, kafka = servers()
    started, cpu = time.perf_counter(), time.process_time()
    run()
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu + getattr(run, "children_cpu", 0.0)
    dovecot_after, kafka_after = servers()
    return Row(label, seconds, cpu, dovecot_after - dovecot, kafka_after - kafka)


def rss_child(spec: str) -> None:
    """Child process: fetch the huge mailbox once, print peak and start RSS as JSON."""
    args = json.loads(spec)
    config = parse_config(Path(args["config"]).read_text())
    source = next(s for s in config.tenants[0].sources if s.id == args["user"])
    assert isinstance(source, Pop3Source)
    ctx = context(config)
    ctx.publisher.state_partitions()
    start_kb = _status_kb("VmRSS")
    state = MailboxState("acme", source.id)
    if args["kind"] == "imap":
        result = imap_pass(imap_variant(source, args["imap_port"]), "acme", state, ctx)
    else:
        result = pop3_pass(source, "acme", state, ctx)
    ctx.publisher.close()
    print(json.dumps({"start_kb": start_kb, "peak_kb": _status_kb("VmHWM"), "bytes": result.bytes}))


def pass_child(spec: str) -> None:
    """Child process of row (g): fetch its share of the mailboxes once ``go`` arrives on stdin."""
    args = json.loads(spec)
    config = parse_config(Path(args["config"]).read_text())
    sources = {s.id: s for s in config.tenants[0].sources}
    ctx = context(config)
    ctx.publisher.state_partitions()

    def one(user: str) -> int:
        source = sources[user]
        assert isinstance(source, Pop3Source)
        return pop3_pass(source, "acme", MailboxState("acme", user), ctx).bytes

    print("ready", flush=True)
    sys.stdin.readline()
    cpu = time.process_time()
    with ThreadPoolExecutor(args["threads"]) as pool:
        size = sum(pool.map(one, args["users"]))
    ctx.publisher.close()
    print(json.dumps({"bytes": size, "cpu": time.process_time() - cpu}), flush=True)


class InProcesses:
    """Row (g): ``processes`` children, each with ``threads`` passes at once over its share.

    ``prepare`` starts them and waits until each has its producer connected (not timed, as a
    long-running worker pays that once); calling the object lets them go and waits for all.
    """

    def __init__(self, config_path: Path, users: list[str], processes: int, threads: int) -> None:
        self.specs = [
            json.dumps({"config": str(config_path), "users": users[i::processes], "threads": threads})
            for i in range(processes)
        ]
        self.children: list[subprocess.Popen[str]] = []
        self.children_cpu = 0.0  # CPU seconds the children spent after "go"

    def prepare(self) -> None:
        for spec in self.specs:
            self.children.append(
                subprocess.Popen(
                    [sys.executable, __file__, "--pass-child", spec],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        for child in self.children:
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError("a benchmark child failed to start")

    def __call__(self) -> int:
        children = self.children
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        total = 0
        for child in children:
            out, _ = child.communicate()
            figures = json.loads(out.strip().splitlines()[-1])
            total += figures["bytes"]
            self.children_cpu += figures["cpu"]
        return total


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mailboxes", type=int, default=100)
    parser.add_argument("--messages", type=int, default=100, help="per mailbox")
    parser.add_argument("--huge-mb", type=int, default=150, help="0 skips the RSS measurement")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rows", default="abcdefg", help="which rows to run, e.g. 'ad' (a is always run)")
    parser.add_argument("--processes", type=int, default=2, help="worker processes of row (g)")
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    parser.add_argument("--pass-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child)
        return
    if args.pass_child:
        pass_child(args.pass_child)
        return
    console = Console(width=200)
    tmp = Path(tempfile.mkdtemp(prefix="mailferry-fetch-bench-"))
    dovecot = DovecotServer(tmp / "dovecot").start()
    broker = EmbeddedBroker(EmbeddedKafka(port=0, controller_port=0), tmp / "kafka")
    try:
        broker.start()
        kafka = broker.client_config(KafkaConfig(topic_prefix="bench"))
        address = broker.address
        users = [f"mb{i:03d}" for i in range(args.mailboxes)]
        rnd = random.Random(args.seed)
        total_bytes = 0
        for index, user in enumerate(users):
            dovecot.add_user(user, PASSWORD)
            batch = [make_message(rnd, index * 1000 + n, mixed_size(rnd)) for n in range(args.messages)]
            total_bytes += sum(len(m) for m in batch)
            dovecot.seed(user, batch)
        config_path = tmp / "bench.toml"
        config_path.write_text(config_text(tmp, kafka, dovecot, [*users, "huge"]))
        config = parse_config(config_path.read_text())
        admin = new_admin(kafka, [address])
        ensure_topics(admin, topic_specs(config.kafka, len(config.retry.tiers)))
        admin.close()
        count = args.messages
        port = dovecot.pop3_port
        console.print(
            f"{len(users)} mailboxes x {count} messages, {total_bytes / 1e6:.1f} MB on the server "
            f"(Dovecot {dovecot.pop3_port}, Kafka {address}); warming Dovecot's indexes...",
            highlight=False,
        )
        for user in users:
            drain(port, user, count)
        sources = {s.id: s for s in config.tenants[0].sources}
        ctx = context(config)
        ctx.publisher.state_partitions()

        def each(fn: Callable[[str], int]) -> Callable[[], int]:
            return lambda: sum(fn(u) for u in users)

        def pop3_into_kafka(user: str) -> int:
            source = sources[user]
            assert isinstance(source, Pop3Source)
            return pop3_pass(source, "acme", MailboxState("acme", user), ctx).bytes

        def imap_into_kafka(user: str) -> int:
            source = sources[user]
            assert isinstance(source, Pop3Source)
            return imap_pass(
                imap_variant(source, dovecot.imap_port), "acme", MailboxState("acme", user), ctx
            ).bytes

        def unpacked_audit(fn: Callable[[], int]) -> Callable[[], int]:
            """``fn`` with every audit event in a record of its own, as before the events of a
            pass were packed."""

            def run() -> int:
                packed = ctx.publisher.audit_pack_bytes
                ctx.publisher.audit_pack_bytes = 0
                try:
                    return fn()
                finally:
                    ctx.publisher.audit_pack_bytes = packed

            return run

        def concurrently(fn: Callable[[str], int], workers: int) -> Callable[[], int]:
            def run() -> int:
                with ThreadPoolExecutor(workers) as pool:
                    return sum(pool.map(fn, users))

            return run

        def drain_one(user: str) -> int:
            return drain(port, user, count)

        plan: list[tuple[str, str, Callable[[], int]]] = [
            ("a", "(a) socket drain, all RETRs pipelined (server's limit)", each(drain_one)),
            ("b", "(b) poplib loop", each(lambda u: poplib_loop(port, u, count))),
            ("c", "(c) mailferry POP3 reader alone, no Kafka", each(lambda u: reader_only(port, u, count))),
            ("h", "(h) as (d), one audit record per event (before)", unpacked_audit(each(pop3_into_kafka))),
            ("d", "(d) mailferry POP3 -> Kafka", each(pop3_into_kafka)),
            ("e", "(e) mailferry POP3 -> Kafka, 8 mailboxes at once", concurrently(pop3_into_kafka, 8)),
            ("f", "(f) mailferry IMAP -> Kafka", each(imap_into_kafka)),
        ]
        if {"d", "h"} & set(args.rows):
            # one unreported pass: the broker's JIT warms on the first traffic, and the first
            # Kafka row would otherwise pay for it (seen as 0.5 vs 0.35 broker CPU s)
            each(pop3_into_kafka)()
        broker_pid = broker.running_state().pid  # type: ignore[union-attr]
        dovecot_pid = dovecot._process.pid  # type: ignore[union-attr]

        def servers() -> tuple[float, float]:
            return proc_cpu(dovecot_pid), proc_cpu(broker_pid or 0)

        rows = [timed(label, run, servers) for key, label, run in plan if key == "a" or key in args.rows]
        if "g" in args.rows:
            per = 8 // args.processes or 1
            spread = InProcesses(config_path, users, args.processes, per)
            label = f"(g) POP3 -> Kafka, {args.processes} processes x {per} mailboxes at once"
            rows.append(timed(label, spread, servers, spread.prepare))
        ctx.publisher.close()
        console.print(results_table(rows, len(users) * count, total_bytes))
        console.print(
            f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores",
            highlight=False,
        )
        if args.huge_mb:
            huge = make_message(random.Random(1), 999_999, args.huge_mb * 1_000_000)
            dovecot.add_user("huge", PASSWORD)
            huge_path = tmp / "huge.toml"
            huge_path.write_text(_config_text(tmp / "state", kafka, dovecot))
            rss = Table(title=f"peak RSS of one process fetching a {len(huge) / 1e6:.0f} MB message")
            for column in ("protocol", "RSS before (MB)", "peak RSS (MB)", "fetched MB"):
                rss.add_column(column)
            for kind in ("pop3", "imap"):
                dovecot.seed("huge", [huge])
                spec = json.dumps(
                    {"config": str(huge_path), "user": "huge", "kind": kind, "imap_port": dovecot.imap_port}
                )
                out = (
                    subprocess.run(
                        [sys.executable, __file__, "--rss-child", spec],
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    .stdout.strip()
                    .splitlines()[-1]
                )
                figures = json.loads(out)
                rss.add_row(
                    kind,
                    f"{figures['start_kb'] / 1024:.0f}",
                    f"{figures['peak_kb'] / 1024:.0f}",
                    f"{figures['bytes'] / 1e6:.0f}",
                )
                _empty(dovecot, "huge")
            dovecot.seed("huge", [huge])
            peak_kb = worker_rss(tmp, kafka, dovecot)
            rss.add_row(
                "pop3, a `mailferry fetch` worker", "-", f"{peak_kb / 1024:.0f}", f"{len(huge) / 1e6:.0f}"
            )
            console.print(rss)
    finally:
        broker.stop()
        dovecot.remove()


def results_table(rows: list[Row], messages: int, total_bytes: int) -> Table:
    """The throughput table; "at best" is (a)'s time over the row's CPU floor: all CPU seconds
    (ours, Dovecot's, Kafka's) spread perfectly over this machine's cores."""
    cores = os.cpu_count() or 1
    limit = rows[0].seconds
    table = Table(title=f"fetch throughput, {messages} messages, {total_bytes / 1e6:.0f} MB")
    columns = ("client", "seconds", "CPU s", "Dovecot CPU s", "Kafka CPU s", "msg/s", "MB/s", "vs (a)")
    for column in (*columns, f"at best on {cores} cores"):
        table.add_column(column, justify="right" if column != "client" else "left")
    for row in rows:
        table.add_row(
            row.label,
            f"{row.seconds:.2f}",
            f"{row.cpu:.2f}",
            f"{row.dovecot_cpu:.2f}",
            f"{row.kafka_cpu:.2f}",
            f"{messages / row.seconds:.0f}",
            f"{total_bytes / 1e6 / row.seconds:.1f}",
            f"{limit / row.seconds:.0%}",
            f"{limit / (row.total_cpu / cores):.0%}" if row is not rows[0] else "-",
        )
    return table


def worker_rss(tmp: Path, kafka: KafkaConfig, dovecot: DovecotServer) -> int:
    """Peak RSS (KiB) of a real ``mailferry fetch`` process until the huge message has passed."""
    path = tmp / "worker.toml"
    path.write_text(
        _config_text(tmp / "worker-state", kafka, dovecot)
        .replace('id = "huge"', 'id = "huge-worker"')
        .replace("leave_on_server = true\n", 'poll_interval = "1s"\n')
    )
    sync_mailboxes(parse_config(path.read_text()), list(kafka.bootstrap_servers))
    worker = subprocess.Popen(
        [sys.executable, "-m", "mailferry", "-c", str(path), "fetch"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    status = Path(f"/proc/{worker.pid}/status")
    try:
        deadline = time.monotonic() + 600
        while dovecot.message_count("huge") and time.monotonic() < deadline:
            time.sleep(0.2)
        return _kb(status, "VmHWM")
    finally:
        worker.terminate()
        worker.wait(timeout=60)


def _kb(status: Path, field: str) -> int:
    for line in status.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _config_text(tmp: Path, kafka: KafkaConfig, dovecot: DovecotServer) -> str:
    return (
        f'state_dir = "{tmp}"\nallow_plaintext_secrets = true\n'
        + kafka.connection_toml()
        + '[[tenants]]\nid = "acme"\naccepted_domains = ["acme.example"]\n'
        'default_mailbox = "postmaster@acme.example"\ndefault_target = "archive"\n'
        f'[[tenants.targets]]\nname = "archive"\nkind = "maildir"\npath = "{tmp}"\n'
        f'[[tenants.sources]]\nid = "huge"\nkind = "pop3"\nmode = "personal"\nhost = "127.0.0.1"\n'
        f'port = {dovecot.pop3_port}\ntls = "none"\nallow_plaintext_login = true\nusername = "huge"\n'
        f'auth = {{ kind = "password", password = "{PASSWORD}" }}\ndeliver_to = "a@acme.example"\n'
        "leave_on_server = true\n"
    )


def _empty(dovecot: DovecotServer, user: str) -> None:
    for sub in ("new", "cur"):
        for path in (dovecot.runtime / "mail" / user / sub).iterdir():
            os.unlink(path)


if __name__ == "__main__":
    main()
