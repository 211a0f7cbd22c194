"""`mailferry import mbox` rate and peak memory on a large historical batch.

Run: .venv/bin/python benchmarks/import_rate.py [--messages 100000] [--size 3000]

Writes a deterministic mbox (fixed seed; sizes spread around --size), starts an embedded
broker in a temporary folder, ensures the topics, then runs the real command
`mailferry -c CONFIG import mbox FILE` in a child process and reports its wall time,
messages/s, MB/s, CPU seconds and peak RSS (from the child's rusage).
"""

from __future__ import annotations

import argparse
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mailferry.config import load_config
from mailferry.config.kafka import EmbeddedKafka
from mailferry.kafka.admin import ensure_topics
from mailferry.kafka.clients import new_admin
from mailferry.kafka.embedded import EmbeddedBroker
from mailferry.kafka.topics import topic_specs

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=3000, help="mean body size in bytes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        mbox = home / "batch.mbox"
        volume = write_mbox(mbox, args.messages, args.size)
        broker = EmbeddedBroker(EmbeddedKafka(port=0, controller_port=0), home / "kafka")
        broker.start()
        try:
            config_path = home / "bench.toml"
            kafka = broker.client_config().connection_toml()
            config_path.write_text(CONFIG.format(state=home / "state", kafka=kafka), "utf-8")
            config = load_config(config_path)
            admin = new_admin(config.kafka, list(config.kafka.bootstrap_servers))
            ensure_topics(admin, topic_specs(config.kafka, len(config.retry.tiers)))
            admin.close()
            began = time.perf_counter()
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "mailferry",
                    "-c",
                    str(config_path),
                    "import",
                    "mbox",
                    str(mbox),
                    "--tenant",
                    "bench",
                    "--envelope-to",
                    "user0@bench.example",
                    "--mailbox",
                    "history",
                ],
                capture_output=True,
                text=True,
            )
            wall = time.perf_counter() - began
            usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # before the broker is reaped
        finally:
            broker.stop()
    if done.returncode != 0:
        raise SystemExit(done.stdout + done.stderr)
    table = Table(title=f"mailferry import mbox: {args.messages:,} messages, {volume / 1e6:.1f} MB")
    for column in ("wall s", "msg/s", "MB/s", "CPU s", "peak RSS MB"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{wall:.1f}",
        f"{args.messages / wall:,.0f}",
        f"{volume / 1e6 / wall:.1f}",
        f"{usage.ru_utime + usage.ru_stime:.1f}",
        f"{usage.ru_maxrss / 1024:.0f}",
    )
    Console().print(table)


if __name__ == "__main__":
    main()
