"""The stream's own topics exist before Faust subscribes to them.

Faust creates internal topics itself, but its consumer may not see a topic created after
it fetched metadata until the next refresh (5 minutes): the demo once sat that long with
every raw record read and nothing routed. The role now creates them first.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kafka.admin import NewTopic

from mailferry.config import parse_config
from mailferry.config.kafka import KafkaConfig
from mailferry.kafka.admin import partition_counts
from mailferry.kafka.clients import new_admin
from mailferry.kafka.topics import RAW, full_name
from mailferry.streams.app import StreamApp
from mailferry.streams.worker import partitions_in_kafka, prepare_topics

pytestmark = pytest.mark.integration


def test_prepare_creates_the_changelog_co_partitioned_with_raw(
    tmp_path: Path, kafka_config: KafkaConfig
) -> None:
    config = parse_config(
        f'state_dir = "{tmp_path}"\n'
        + kafka_config.connection_toml()
        + "[kafka.topics.defaults]\npartitions = 4\n"
        + "[kafka.topics.overrides.raw]\npartitions = 3\n"
        '[stream]\nweb_port = 0\ndedup_window = "2d"\n'
    )
    servers = list(kafka_config.bootstrap_servers)
    stream = StreamApp(config, servers)
    prepare_topics(config, servers, stream)

    admin = new_admin(kafka_config, servers)
    try:
        names = set(admin.list_topics())
        raw = full_name(config.kafka, RAW)
        changelog = f"{config.kafka.topic_prefix}.{config.stream.app_id}-dedup-changelog"
        assert {raw, changelog} <= names
        assert partition_counts(admin, [raw, changelog]) == {raw: 3, changelog: 3}
        assert full_name(config.kafka, "stream.dedup") not in names  # no re-key hop
    finally:
        admin.close()


def test_the_changelog_follows_raw_as_it_is_in_kafka(tmp_path: Path, kafka_config: KafkaConfig) -> None:
    """A raw topic with more partitions than the config says (grown by hand, or created by an
    older config): Faust refuses a changelog of another count, so the table follows Kafka."""
    config = parse_config(
        f'state_dir = "{tmp_path}"\n'
        + kafka_config.connection_toml()
        + "[kafka.topics.defaults]\npartitions = 2\n"
        '[stream]\nweb_port = 0\ndedup_window = "2d"\n'
    )
    servers = list(kafka_config.bootstrap_servers)
    raw = full_name(config.kafka, RAW)
    admin = new_admin(kafka_config, servers)
    try:
        admin.create_topics([NewTopic(raw, 5, 1)])
        stream = StreamApp(config, servers, raw_partitions=partitions_in_kafka(config, servers)[RAW])
        prepare_topics(config, servers, stream)
        changelog = stream.table.changelog_topic.get_topic_name()
        deadline = time.monotonic() + 20
        while len(counts := partition_counts(admin, [raw, changelog])) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)  # a topic created a moment ago can be missing from the metadata
        assert counts == {raw: 5, changelog: 5}
    finally:
        admin.close()
