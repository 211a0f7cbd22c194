"""The topic layout of the brief: logical names, full names under a prefix, default settings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from mailferry.config.kafka import KafkaConfig, TopicSettings

MAILBOXES = "mailboxes"
FETCH_STATE = "fetch-state"
RAW = "raw"
DELIVER = "deliver"
DLT = "deliver.dlt"
AUDIT = "audit"
DELIVERY_LEDGER = "deliver.ledger"
DLT_STATE = "deliver.dlt.state"  # per dead letter: requeued / discarded (compacted)
BLOBS = "blobs"  # blob store kind kafka: content in chunks, keyed by digest
BLOBS_INDEX = "blobs.index"  # per digest: where its chunks are (partition, offset range)


def retry_topic(tier: int) -> str:
    """Logical name of retry tier ``tier`` (0-based): ``deliver.retry.0``, ..."""
    return f"deliver.retry.{tier}"


@dataclass(frozen=True)
class TopicSpec:
    logical: str
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str]


_DAY_MS = 24 * 3600 * 1000
# cleanup policy and default retention per topic type (ms; -1 keeps forever)
_DEFAULTS: dict[str, tuple[str, int | None]] = {
    MAILBOXES: ("compact", None),
    FETCH_STATE: ("compact", None),
    DELIVERY_LEDGER: ("compact", None),
    DLT_STATE: ("compact", None),
    RAW: ("delete", 90 * _DAY_MS),
    DELIVER: ("delete", 7 * _DAY_MS),
    DLT: ("delete", 90 * _DAY_MS),
    AUDIT: ("delete", 365 * _DAY_MS),
    BLOBS: ("delete", 90 * _DAY_MS),
    BLOBS_INDEX: ("compact,delete", 90 * _DAY_MS),
}
# a blob must outlive every record that can name it: raw (replay) and deliver.dlt (requeue),
# written up to the in-flight window after the blob; without a retention override of their
# own, these topics keep the longer of the two plus that window
_OUTLIVE = (BLOBS, BLOBS_INDEX)
_IN_FLIGHT_MS = 7 * _DAY_MS
_RETRY_RETENTION_MS = 7 * _DAY_MS


def full_name(kafka: KafkaConfig, logical: str) -> str:
    return f"{kafka.topic_prefix}.{logical}"


def logical_topics(retry_tiers: int) -> list[str]:
    return [*_DEFAULTS, *(retry_topic(i) for i in range(retry_tiers))]


def topic_settings(kafka: KafkaConfig, logical: str) -> TopicSettings:
    return kafka.topics.overrides.get(logical, kafka.topics.defaults)


PACK_BYTES = 256 * 1024  # a pack record of many small entries (audit events, ledger entries)


def pack_limit(kafka: KafkaConfig, logical: str) -> int:
    """Bytes of entries per pack record on ``logical``: ``PACK_BYTES``, or half of what the
    topic accepts when that is less (room for Kafka's own record and batch headers)."""
    return min(PACK_BYTES, topic_settings(kafka, logical).max_message_bytes // 2)


def largest_message_bytes(kafka: KafkaConfig) -> int:
    """The largest record any topic accepts: what producers may send and consumers must fetch."""
    return max(s.max_message_bytes for s in [kafka.topics.defaults, *kafka.topics.overrides.values()])


def _retention_ms(kafka: KafkaConfig, logical: str) -> int | None:
    retention = topic_settings(kafka, logical).retention
    if retention is not None:
        return int(retention / timedelta(milliseconds=1))
    return _DEFAULTS.get(logical, ("delete", _RETRY_RETENTION_MS))[1]


def blob_retention_ms(kafka: KafkaConfig) -> int | None:
    """Retention of the ``blobs`` topics: their own override, else raw's or deliver.dlt's
    (the longer) plus the in-flight window; None (forever) when either keeps forever."""
    own = kafka.topics.overrides.get(BLOBS)
    if own is not None and own.retention is not None:
        return int(own.retention / timedelta(milliseconds=1))
    referrers = [_retention_ms(kafka, RAW), _retention_ms(kafka, DLT)]
    if any(ms is None or ms < 0 for ms in referrers):
        return None
    return max(ms for ms in referrers if ms is not None) + _IN_FLIGHT_MS


def topic_specs(kafka: KafkaConfig, retry_tiers: int) -> list[TopicSpec]:
    """Every topic the pipeline needs, with config overrides applied."""
    specs = []
    for logical in logical_topics(retry_tiers):
        cleanup = _DEFAULTS.get(logical, ("delete", 0))[0]
        settings = topic_settings(kafka, logical)
        retention_ms = blob_retention_ms(kafka) if logical in _OUTLIVE else _retention_ms(kafka, logical)
        config = {
            "cleanup.policy": cleanup,
            "max.message.bytes": str(settings.max_message_bytes),
        }
        if retention_ms is not None and cleanup != "compact":
            config["retention.ms"] = str(retention_ms)
        specs.append(
            TopicSpec(
                logical=logical,
                name=full_name(kafka, logical),
                partitions=settings.partitions,
                replication_factor=settings.replication_factor,
                config=config,
            )
        )
    return specs
