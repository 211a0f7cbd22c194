"""``mailferry_consumer_lag``: how far a role's consumer group is behind, per partition.

Asked of the brokers (committed offsets of the group against the log end offsets) by a
background thread every ``interval`` seconds, never by the scrape itself: a scrape must not
hang on a slow broker, and every role (kafka-python, aiokafka under Faust) gets the same
figure, the one ``kafka-consumer-groups.sh --describe`` shows.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector

from mailferry.config.kafka import KafkaConfig
from mailferry.kafka.clients import new_admin, new_consumer

log = logging.getLogger(__name__)


class LagProbe(Collector):
    def __init__(self, kafka: KafkaConfig, servers: list[str], group: str, interval: float = 15.0) -> None:
        self.kafka = kafka
        self.servers = servers
        self.group = group
        self.interval = interval
        self._lag: dict[TopicPartition, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._admin: KafkaAdminClient | None = None
        self._consumer: KafkaConsumer | None = None
        self._thread = threading.Thread(target=self._run, name="consumer-lag", daemon=True)

    def start(self) -> None:
        REGISTRY.register(self)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        REGISTRY.unregister(self)

    def measure(self) -> dict[TopicPartition, int]:
        if self._admin is None or self._consumer is None:
            self._admin = new_admin(self.kafka, self.servers)
            self._consumer = new_consumer(self.kafka, self.servers, None)
        committed = self._admin.list_group_offsets({self.group: None}).get(self.group, {})
        ends = self._consumer.end_offsets(list(committed)) if committed else {}
        return {tp: max(0, ends[tp] - max(meta.offset, 0)) for tp, meta in committed.items() if tp in ends}

    def _close_clients(self) -> None:
        for client in (self._consumer, self._admin):
            if client is not None:
                client.close()
        self._admin, self._consumer = None, None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                lag = self.measure()
            except Exception as exc:  # a broker away for a while: keep the last figure, reconnect
                log.warning("consumer lag of %s not measured: %s", self.group, exc)
                self._close_clients()
            else:
                with self._lock:
                    self._lag = lag
            self._stop.wait(self.interval)
        self._close_clients()

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "mailferry_consumer_lag",
            "Records of the partition not yet committed by the role's consumer group",
            labels=["group", "topic", "partition"],
        )
        with self._lock:
            for tp, lag in sorted(self._lag.items()):
                family.add_metric([self.group, tp.topic, str(tp.partition)], lag)
        yield family
