"""Long-lived clients keep working right after a partition leader moves to another broker.

kafka-python 3.0 answers a ListOffsets ``NOT_LEADER_OR_FOLLOWER`` by asking the same stale
leader again, without refreshing its metadata, until the call times out (30 s), and an idle
client refreshes its metadata only every ``metadata_max_age_ms``. The blob store's index
reader lives as long as the fetch role: with the library's 5-minute default, every message
with a blob failed for five minutes after a broker restart (the two-host test found it).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter

import pytest

from mailferry.blobs.kafka import KafkaBlobStore
from mailferry.config.kafka import KafkaConfig
from mailferry.kafka.admin import ensure_topics
from mailferry.kafka.clients import new_admin
from mailferry.kafka.topics import BLOBS, BLOBS_INDEX, full_name, topic_specs
from mailferry_testkit.kafka_cluster import KafkaCluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]


def test_blob_index_is_read_right_after_its_leader_moved(cluster: KafkaCluster) -> None:
    kafka = cluster.client_config(KafkaConfig(topic_prefix=f"moves{uuid.uuid4().hex[:6]}"))
    servers = list(kafka.bootstrap_servers)
    admin = new_admin(kafka, servers)
    try:
        ensure_topics(admin, [s for s in topic_specs(kafka, 0) if s.logical in (BLOBS, BLOBS_INDEX)])
    finally:
        admin.close()
    store = KafkaBlobStore(kafka, servers)
    try:
        first = store.put(b"before the leader moved")  # the index reader now holds metadata
        leaders = Counter(cluster.leaders(full_name(kafka, BLOBS_INDEX)).values())
        victim = leaders.most_common(1)[0][0]
        cluster.kill(victim)
        cluster.restart(victim)  # back as a follower: leadership stays where it moved
        assert victim not in cluster.leaders(full_name(kafka, BLOBS_INDEX)).values()

        started = time.monotonic()
        second = store.put(b"after the leader moved")  # reads the index to its end first
        took = time.monotonic() - started
        assert store.read(first) == b"before the leader moved"
        assert store.read(second) == b"after the leader moved"
        assert took < 20, f"the blob index took {took:.0f}s to answer after the leader moved"
    finally:
        store.close()
