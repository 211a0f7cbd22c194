"""Running the stream app as the ``mailferry stream`` role.

The Faust worker owns the event loop and the signals: SIGTERM and SIGINT stop it
gracefully, which flushes the producer and commits the offsets of what was processed.
The topics are ensured first (idempotent), so the role also works on its own, outside
``mailferry run``.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Any

import faust
from prometheus_client import REGISTRY

from mailferry.config.models import MailferryConfig
from mailferry.errors import ConfigError
from mailferry.kafka.admin import ensure_topics, partition_counts
from mailferry.kafka.clients import new_admin
from mailferry.kafka.topics import DELIVER, RAW, full_name, topic_settings, topic_specs
from mailferry.observe import health, logs, metrics
from mailferry.observe.server import Observer, observe
from mailferry.status import write_snapshot
from mailferry.streams.app import StreamApp
from mailferry.streams.offset_gaps import refuse_gaps
from mailferry.streams.router import DirectoryFor

ROLE = "stream"
SNAPSHOT_EVERY = 5.0
METADATA_WAIT = 15.0  # seconds


def partitions_in_kafka(config: MailferryConfig, servers: list[str]) -> dict[str, int]:
    """Ensure the pipeline's topics; how many partitions ``raw`` and ``deliver`` have in Kafka.

    The dedup table is co-partitioned with ``raw`` and Faust refuses a changelog with
    another count, so the table follows the topic as it is (an older or hand-made topic can
    have more partitions than the config says, as a count only grows). A packed delivery
    record is sent to the partition Kafka's partitioner gives its key, computed from
    ``deliver``'s count as it is.
    """
    admin = new_admin(config.kafka, servers)
    try:
        ensure_topics(admin, topic_specs(config.kafka, len(config.retry.tiers)))
        names = {logical: full_name(config.kafka, logical) for logical in (RAW, DELIVER)}
        deadline = time.monotonic() + METADATA_WAIT
        # a topic created a moment ago can be missing from the metadata for a while
        while len(counts := partition_counts(admin, list(names.values()))) < len(names):
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        return {
            logical: counts.get(name) or topic_settings(config.kafka, logical).partitions
            for logical, name in names.items()
        }
    finally:
        admin.close()


def prepare_topics(config: MailferryConfig, servers: list[str], stream: StreamApp) -> None:
    admin = new_admin(config.kafka, servers)
    try:
        ensure_topics(
            admin, topic_specs(config.kafka, len(config.retry.tiers)) + stream.internal_topic_specs()
        )
    finally:
        admin.close()


def live_directories() -> DirectoryFor:
    """EWS ResolveNames / Graph look-ups (``mailferry.exchange``, shared with the delivery
    stage); imported here, when the role starts, since exchangelib is slow to import."""
    from mailferry.exchange.directory import directory_for

    return directory_for


def run_stream(config: MailferryConfig, servers: list[str], *, log_level: str = "warning") -> None:
    """Run the worker until a signal stops it (raises SystemExit with the worker's code)."""
    config.stream_data_dir.mkdir(parents=True, exist_ok=True)
    partitions = partitions_in_kafka(config, servers)
    stream = StreamApp(
        config,
        servers,
        directory_for=live_directories(),
        raw_partitions=partitions[RAW],
        deliver_partitions=partitions[DELIVER],
    )
    prepare_topics(config, servers, stream)

    def read_again() -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    refuse_gaps({full_name(config.kafka, RAW)}, on_gap=read_again)
    stream.skips.arm(read_again)

    def snapshot(state: str) -> None:
        payload: dict[str, Any] = {"state": state, **stream.status()}
        write_snapshot(config.state_dir, ROLE, payload)

    async def _snapshot() -> None:
        snapshot("running")
        health.beat()

    stream.app.timer(SNAPSHOT_EVERY)(_snapshot)
    observer = _observe(config, servers, stream)

    level = logging.getLevelName(log_level.upper())
    if not isinstance(level, int):
        raise ConfigError(f"unknown log level {log_level!r}")
    worker = faust.Worker(
        stream.app,
        loglevel=level,
        quiet=True,
        redirect_stdouts=False,
        workdir=str(config.stream_data_dir),
        logging_config=logs.dict_config(ROLE, logs.chosen(config), level),
    )
    # Faust's terminal spinner lowers the root logger to DEBUG so it can spin on every
    # record; with it, each produced message builds log records nobody reads
    worker.spinner = None
    snapshot("starting")
    try:
        worker.execute_from_commandline()
    finally:
        observer.close()
        snapshot("stopped")


def _observe(config: MailferryConfig, servers: list[str], stream: StreamApp) -> Observer:
    """Metrics and probes: ready once a rebalance completed (tables recovered included)."""
    REGISTRY.register(metrics.StreamCounters(stream.counters))

    async def assigned(sender: Any, *_: Any, **__: Any) -> None:
        health.ready()

    async def revoked(sender: Any, *_: Any, **__: Any) -> None:
        health.ready(False, "rebalancing")

    stream.app.on_rebalance_complete.connect(assigned)  # type: ignore[arg-type]
    stream.app.on_partitions_revoked.connect(revoked)  # type: ignore[arg-type]
    return observe(config, ROLE, servers, config.stream.app_id)
