"""Embedded Kafka start-up time: cold (format + start to ready) and warm (start to ready).

Run: .venv/bin/python benchmarks/broker_start.py [--runs 5]
Prints a table with the median and the spread of each; "ready" means the broker answered
a metadata request, which is what `mailferry kafka start` waits for.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mailferry.config.kafka import EmbeddedKafka
from mailferry.kafka.embedded import EmbeddedBroker, fetch_jars


def timed_start(broker: EmbeddedBroker) -> float:
    began = time.perf_counter()
    broker.start()
    elapsed = time.perf_counter() - began
    broker.stop()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    settings = EmbeddedKafka(port=0, controller_port=0)
    fetch_jars(settings.kafka_version)
    cold, warm = [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as home:
            broker = EmbeddedBroker(settings, Path(home))
            cold.append(timed_start(broker))
            warm.append(timed_start(broker))
    table = Table(title=f"embedded Kafka {settings.kafka_version} start-up, {args.runs} runs")
    for column in ("start", "median s", "min s", "max s"):
        table.add_column(column)
    for name, values in (("cold (format + start)", cold), ("warm (start)", warm)):
        table.add_row(name, f"{statistics.median(values):.2f}", f"{min(values):.2f}", f"{max(values):.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
