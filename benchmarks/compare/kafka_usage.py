"""Kafka records and bytes per mail of a mailferry row, per topic, from its embedded broker.

Issue 14 asks for "Kafka records and bytes per mail, before and after". Records are the sum
of the topic's end offsets (what the producers appended; nothing here is transactional, so
no offset is a control record); bytes are the topic's log segment files on the broker's disk
(Kafka's own batch headers included). Both are snapshots: the row takes one when its clock
starts and one when the last mail arrived, and reports the difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kafka import TopicPartition

from mailferry.config import load_config
from mailferry.kafka.clients import new_consumer
from mailferry.kafka.embedded import EmbeddedBroker


@dataclass(frozen=True)
class Usage:
    records: dict[str, int]  # topic (without the run's prefix) -> records appended so far
    bytes: dict[str, int]  # topic -> bytes of its log segments


def snapshot(config_path: Path) -> Usage:
    config = load_config(config_path)
    broker = EmbeddedBroker(config.kafka.embedded, config.kafka_state_dir)
    kafka = broker.client_config(config.kafka)
    consumer = new_consumer(kafka, list(kafka.bootstrap_servers))
    try:
        topics = [t for t in consumer.topics() if not t.startswith("__")]
        partitions = [
            TopicPartition(topic, p) for topic in topics for p in consumer.partitions_for_topic(topic) or ()
        ]
        ends = consumer.end_offsets(partitions)
    finally:
        consumer.close()
    records: dict[str, int] = {}
    for tp, end in ends.items():
        records[_short(tp.topic)] = records.get(_short(tp.topic), 0) + end
    sizes: dict[str, int] = {}
    for segment in broker.data_dir.glob("*-*/*.log"):
        topic = _short(segment.parent.name.rpartition("-")[0])
        if topic in records:
            sizes[topic] = sizes.get(topic, 0) + segment.stat().st_size
    return Usage(records, sizes)


def per_mail(before: Usage, after: Usage, mails: int) -> str:
    """'records/mail 2.1 (raw 0.03, deliver 0.05, ...), KB/mail 22.0': the window's difference."""
    if mails == 0:
        return "no Kafka figures per mail (no mail arrived)"
    grown = {t: after.records[t] - before.records.get(t, 0) for t in after.records}
    grown = {t: n for t, n in grown.items() if n > 0}
    sizes = {t: after.bytes.get(t, 0) - before.bytes.get(t, 0) for t in grown}
    parts = ", ".join(f"{t} {n / mails:.2f}" for t, n in sorted(grown.items(), key=lambda kv: -kv[1]))
    total_kb = sum(sizes.values()) / 1024 / mails
    return f"Kafka records/mail {sum(grown.values()) / mails:.2f} ({parts}), KB/mail {total_kb:.1f}"


def _short(topic: str) -> str:
    """'mailferry.raw' or 'bench.deliver' -> 'raw' / 'deliver'; Faust's own topics keep their tail."""
    return topic.rpartition(".")[2] if "." in topic else topic
