"""How the Faust app is set up from a ``MailferryConfig``: its id and store.

Broker, credential and size settings come from ``mailferry.kafka.clients.faust_settings``.
"""

from __future__ import annotations

import importlib.util

from mailferry.config.models import MailferryConfig
from mailferry.kafka.topics import RAW, TopicSpec, topic_settings

DEDUP_TABLE = "dedup"
_DAY_MS = 24 * 3600 * 1000


def store_url() -> str:
    """RocksDB when its bindings (rocksdict) are installed, else memory (rebuilt from the changelog)."""
    return "rocksdb://" if importlib.util.find_spec("rocksdict") else "memory://"


def app_id(config: MailferryConfig) -> str:
    """The consumer group and changelog prefix: one per deployment prefix."""
    return f"{config.kafka.topic_prefix}.{config.stream.app_id}"


def dedup_changelog_spec(config: MailferryConfig, partitions: int | None = None) -> TopicSpec:
    """The dedup table's changelog as Faust names it (``<app id>-<table>-changelog``).

    Co-partitioned with raw (``partitions``: raw's count in Kafka when known). Compact keeps
    the latest sighting per key; delete drops sightings older than the window plus a day,
    which can no longer make anything a duplicate. The stream role creates it before Faust
    subscribes, and ``topics manifest`` declares it, so both come from here.
    """
    raw = topic_settings(config.kafka, RAW)
    retention_ms = int(config.stream.dedup_window.total_seconds() * 1000) + _DAY_MS
    return TopicSpec(
        DEDUP_TABLE,
        f"{app_id(config)}-{DEDUP_TABLE}-changelog",
        partitions or raw.partitions,
        raw.replication_factor,
        {"cleanup.policy": "compact,delete", "retention.ms": str(retention_ms)},
    )
