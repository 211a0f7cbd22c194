"""`mailferry import mbox` rate and peak memory on a large historical batch.

Run: .venv/bin/python benchmarks/import_rate.py [--messages 100000] [--size 3000] [--baseline REV]

Writes a deterministic mbox (fixed seed; sizes spread around --size), starts an embedded
broker in a temporary folder, ensures the topics, then runs the real command
`mailferry -c CONFIG import mbox FILE` in a child process and reports its wall time,
messages/s, MB/s, CPU seconds and peak RSS (from the child's rusage), and the raw records
written. ``--baseline REV`` also runs the command of git revision REV (its tree laid out as
the package installs it, first on the child's path), alternating with this tree's (or
``--candidate REV``'s) over
``--rounds`` rounds into fresh topics, so a shared machine's load falls on both sides.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from revisions import checkout
from rich.console import Console
from rich.table import Table

from mailferry.config import MailferryConfig, load_config
from mailferry.config.kafka import EmbeddedKafka, KafkaConfig
from mailferry.kafka.admin import ensure_topics
from mailferry.kafka.clients import new_admin, new_consumer
from mailferry.kafka.embedded import EmbeddedBroker
from mailferry.kafka.topics import RAW, full_name, topic_specs

CONFIG = """\
state_dir = "{state}"

{kafka}
[[tenants]]
id = "bench"
accepted_domains = ["bench.example"]
default_mailbox = "postmaster@bench.example"
default_target = "archive"

[[tenants.targets]]
name = "archive"
kind = "maildir"
path = "{state}/maildir"
"""


def write_mbox(path: Path, count: int, size: int, seed: int = 1) -> int:
    rng = random.Random(seed)
    words = b"the quarterly plan invoice meeting report draft review notes".split()
    total = 0
    with path.open("wb") as out:
        for i in range(count):
            body_len = max(200, int(rng.gauss(size, size / 3)))
            body = b" ".join(rng.choice(words) for _ in range(body_len // 6))
            message = (
                b"From sender@example.org Mon Nov  2 10:00:00 2026\n"
                b"From: sender@example.org\nTo: user%d@bench.example\n"
                % (i % 50)
                + b"Subject: historical message %d\nMessage-ID: <hist-%d@bench.example>\n\n" % (i, i)
                + body
                + b"\n\n"
            )
            out.write(message)
            total += len(message)
    return total


@dataclass
class Run:
    wall: float
    cpu: float
    peak_rss_mb: float
    records: int


def count_records(config: MailferryConfig) -> int:
    consumer = new_consumer(
        config.kafka,
        list(config.kafka.bootstrap_servers),
        topics=[full_name(config.kafka, RAW)],
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    count = sum(1 for _ in consumer)
    consumer.close()
    return count


def import_once(home: Path, broker: EmbeddedBroker, mbox: Path, prefix: str, code: Path | None) -> Run:
    config_path = home / f"{prefix}.toml"
    kafka = broker.client_config(KafkaConfig(topic_prefix=prefix)).connection_toml()
    config_path.write_text(CONFIG.format(state=home / f"state-{prefix}", kafka=kafka), "utf-8")
    config = load_config(config_path)
    admin = new_admin(config.kafka, list(config.kafka.bootstrap_servers))
    ensure_topics(admin, topic_specs(config.kafka, len(config.retry.tiers)))
    admin.close()
    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = str(code)
    command = [sys.executable, "-m", "mailferry", "-c", str(config_path), "import", "mbox", str(mbox)]
    command += ["--tenant", "bench", "--envelope-to", "user0@bench.example", "--mailbox", "history"]
    output = home / f"{prefix}.out"
    began = time.perf_counter()
    with output.open("wb") as out:
        # the child runs in ``home``: ``python -m`` puts its working folder first on the path
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=home)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage
    wall = time.perf_counter() - began
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(output.read_text("utf-8", "replace"))
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, count_records(config))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=3000, help="mean body size in bytes")
    parser.add_argument("--baseline", help="a git revision to measure side by side with this tree")
    parser.add_argument("--candidate", help="a git revision to measure instead of this tree")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    sides: list[tuple[str, Path | None]] = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        if args.baseline:
            sides.append((args.baseline, checkout(args.baseline, home / "baseline")))
        if args.candidate:
            sides.append((args.candidate, checkout(args.candidate, home / "candidate")))
        else:
            sides.append(("this tree", None))
        mbox = home / "batch.mbox"
        volume = write_mbox(mbox, args.messages, args.size)
        broker = EmbeddedBroker(EmbeddedKafka(port=0, controller_port=0), home / "kafka")
        broker.start()
        runs: dict[str, list[Run]] = {name: [] for name, _ in sides}
        try:
            for round_ in range(args.rounds):
                for n, (name, code) in enumerate(sides):
                    runs[name].append(import_once(home, broker, mbox, f"bench{round_}x{n}", code))
        finally:
            broker.stop()
    table = Table(title=f"mailferry import mbox: {args.messages:,} messages, {volume / 1e6:.1f} MB")
    for column in ("code", "round", "wall s", "msg/s", "MB/s", "CPU s", "peak RSS MB", "raw records"):
        table.add_column(column, justify="right")
    for name, _ in sides:
        for round_, run in enumerate(runs[name]):
            table.add_row(
                name,
                str(round_ + 1),
                f"{run.wall:.1f}",
                f"{args.messages / run.wall:,.0f}",
                f"{volume / 1e6 / run.wall:.1f}",
                f"{run.cpu:.1f}",
                f"{run.peak_rss_mb:.0f}",
                f"{run.records:,}",
            )
    Console().print(table)


if __name__ == "__main__":
    main()
