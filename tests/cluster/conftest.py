"""One real 3-broker KRaft cluster for the tests of this folder (its start costs about a minute)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mailferry_testkit.kafka_cluster import KafkaCluster


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    cluster = KafkaCluster(Path(tmp_path_factory.mktemp("cluster")))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
