"""``topics ensure``: create or bring into line every topic the pipeline needs.

Idempotent: a second run finds everything in place and changes nothing. Partitions can
only grow in Kafka; a configured count below the current one is reported, not applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic
from kafka.errors import TopicAlreadyExistsError

from mailferry.kafka.topics import TopicSpec


@dataclass
class EnsureReport:
    created: list[str] = field(default_factory=list)
    altered: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"created {name}" for name in self.created]
        out += [f"altered {change}" for change in self.altered]
        out += [f"warning: {w}" for w in self.warnings]
        if not self.created and not self.altered:
            out.append(f"nothing to change ({len(self.unchanged)} topics in place)")
        return out


def _describe_configs(admin: KafkaAdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    """The non-default settings of each topic (kafka-python 3 answers per resource type)."""
    if not names:
        return {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    answer = admin.describe_configs(resources)
    topics = answer.get("topic", {}) if isinstance(answer, dict) else {}
    return {name: {key: entry["value"] for key, entry in entries.items()} for name, entries in topics.items()}


def partition_counts(admin: KafkaAdminClient, names: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for topic in admin.describe_topics(names):
        if topic.get("error_code", 0) == 0:
            counts[topic.get("name") or topic["topic"]] = len(topic["partitions"])
    return counts


def ensure_topics(admin: KafkaAdminClient, specs: list[TopicSpec]) -> EnsureReport:
    report = EnsureReport()
    existing = set(admin.list_topics())
    missing = [spec for spec in specs if spec.name not in existing]
    if missing:
        try:
            admin.create_topics(
                [
                    NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=dict(s.config))
                    for s in missing
                ]
            )
        except TopicAlreadyExistsError:
            pass
        report.created.extend(s.name for s in missing)
    present = [spec for spec in specs if spec.name in existing]
    configs = _describe_configs(admin, [s.name for s in present])
    counts = partition_counts(admin, [s.name for s in present]) if present else {}
    for spec in present:
        current = configs.get(spec.name, {})
        drift = {k: v for k, v in spec.config.items() if current.get(k) != v}
        changed = False
        if drift:
            # incremental: only the drifted keys change, other overrides stay as they are
            resource = ConfigResource(ConfigResourceType.TOPIC, spec.name, configs=drift)
            admin.alter_configs([resource], incremental=True)
            report.altered.extend(
                f"{spec.name} {k}: {current.get(k)} -> {v}" for k, v in sorted(drift.items())
            )
            changed = True
        have = counts.get(spec.name, spec.partitions)
        if spec.partitions > have:
            admin.create_partitions({spec.name: NewPartitions(total_count=spec.partitions)})
            report.altered.append(f"{spec.name} partitions: {have} -> {spec.partitions}")
            changed = True
        elif spec.partitions < have:
            report.warnings.append(
                f"{spec.name} has {have} partitions, config asks for {spec.partitions}; "
                "Kafka cannot shrink a topic"
            )
        if not changed:
            report.unchanged.append(spec.name)
    return report
