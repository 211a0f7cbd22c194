"""The Kafka side of the chaos suite: one embedded broker, or the 3-broker KRaft cluster.

Both are killed with ``kill -9`` and started again on the same storage and ports after a
pause; the restart runs in a thread so the suite keeps counting and checking its roles
while a broker comes back. On the cluster the victim is the node that leads the most
partitions of mailferry's topics at that moment, found through the admin API.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from mailferry.config.kafka import EmbeddedKafka, KafkaConfig
from mailferry.kafka.clients import new_admin
from mailferry.kafka.embedded import EmbeddedBroker
from mailferry_testkit.kafka_cluster import MIN_INSYNC, REPLICATION, KafkaCluster


class Brokers(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def client_config(self, kafka: KafkaConfig) -> KafkaConfig: ...
    def kill(self, topics: list[str]) -> str: ...
    def restart(self) -> None: ...
    @property
    def down(self) -> bool: ...
    def describe(self) -> str: ...


class _Restarts:
    """A restart in a thread; ``down`` from the kill until the broker answers again."""

    def __init__(self) -> None:
        self._killed = False
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def killed(self) -> None:
        self._killed = True

    def run(self, start: Callable[[], object]) -> None:
        def body() -> None:
            try:
                start()
            except BaseException as error:  # reported by the run loop
                self.error = error
            finally:
                self._killed = False

        self._thread = threading.Thread(target=body, name="broker-restart", daemon=True)
        self._thread.start()

    @property
    def down(self) -> bool:
        return self._killed


class SingleBroker:
    def __init__(self, home: Path) -> None:
        self.broker = EmbeddedBroker(EmbeddedKafka(port=0), home)
        self.restarts = _Restarts()

    def start(self) -> None:
        self.broker.start()

    def stop(self) -> None:
        self.broker.stop()

    def client_config(self, kafka: KafkaConfig) -> KafkaConfig:
        return self.broker.client_config(kafka)

    def kill(self, topics: list[str]) -> str:
        state = self.broker.running_state()
        if state is None or state.pid is None:
            return "broker (was not running)"
        os.killpg(state.pid, signal.SIGKILL)
        self.restarts.killed()
        return f"broker (pid {state.pid})"

    def restart(self) -> None:
        self.restarts.run(self.broker.start)

    @property
    def down(self) -> bool:
        return self.restarts.down

    def describe(self) -> str:
        return "one embedded KRaft broker (replication 1)"


class Cluster:
    def __init__(self, home: Path) -> None:
        self.cluster = KafkaCluster(home)
        self.restarts = _Restarts()
        self.victim: int | None = None

    def start(self) -> None:
        self.cluster.start()

    def stop(self) -> None:
        self.cluster.stop()

    def client_config(self, kafka: KafkaConfig) -> KafkaConfig:
        return self.cluster.client_config(kafka)

    def leaders(self, topics: list[str]) -> Counter[int]:
        """How many partitions of ``topics`` each node leads now (one admin request)."""
        live = [n.address for n in self.cluster.nodes if n.alive]
        admin = new_admin(self.cluster.client_config(), live)
        try:
            described = admin.describe_topics(topics)
        finally:
            admin.close()
        return Counter(p["leader_id"] for t in described for p in t["partitions"] if p["leader_id"] >= 0)

    def kill(self, topics: list[str]) -> str:
        led = self.leaders(topics)
        node_id, partitions = led.most_common(1)[0]
        self.cluster.kill(node_id)
        self.victim = node_id
        self.restarts.killed()
        return f"node {node_id} (led {partitions} of {sum(led.values())} partitions)"

    def restart(self) -> None:
        victim = self.victim
        assert victim is not None
        self.restarts.run(lambda: self.cluster.restart(victim))

    @property
    def down(self) -> bool:
        return self.restarts.down

    def describe(self) -> str:
        return f"3-broker KRaft cluster (replication {REPLICATION}, min.insync.replicas {MIN_INSYNC})"
