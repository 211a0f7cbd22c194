"""A real 3-broker Kafka cluster on loopback for tests: KRaft combined mode, the same jars,
the same SASL/SCRAM login as the embedded broker, free ports, one folder per node.

What a single broker cannot show is what an operator's cluster does: partitions replicated
3 times with ``min.insync.replicas = 2``, a leader that dies (``kill -9``) and another that
takes over, a node that comes back and catches up. The controller quorum is static
(``controller.quorum.voters``), so the three nodes are formatted once with the same cluster
id and need nothing else to find each other.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from mailferry.config.kafka import EmbeddedKafka, KafkaConfig
from mailferry.errors import SetupError
from mailferry.kafka.clients import new_admin
from mailferry.kafka.credentials import BrokerCredentials
from mailferry.kafka.node import (
    cluster_id,
    ensure_client_user,
    format_storage,
    free_port,
    jvm_command,
    metadata_ok,
    pid_alive,
    render_properties,
)

REPLICATION = 3
MIN_INSYNC = 2


@dataclass
class Node:
    node_id: int
    home: Path
    port: int
    controller_port: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None and pid_alive(self.process.pid)


class KafkaCluster:
    """Three combined broker+controller nodes under ``home``; ``start`` returns when all answer."""

    def __init__(
        self, home: Path, *, size: int = 3, heap: str = "384m", start_timeout: float = 120.0
    ) -> None:
        self.home = home
        self.settings = EmbeddedKafka(heap=heap)
        self.start_timeout = start_timeout
        self.credentials = BrokerCredentials(home)
        self.cluster_id = cluster_id()
        self.nodes = [Node(i + 1, home / f"node{i + 1}", free_port(), free_port()) for i in range(size)]

    @property
    def addresses(self) -> list[str]:
        return [node.address for node in self.nodes]

    def client_config(self, kafka: KafkaConfig | None = None) -> KafkaConfig:
        """``kafka`` pointed at every node, with the cluster's login and topics replicated 3 times."""
        base = kafka or KafkaConfig()
        defaults = base.topics.defaults.model_copy(update={"replication_factor": REPLICATION})
        overrides = {
            name: settings.model_copy(update={"replication_factor": REPLICATION})
            for name, settings in base.topics.overrides.items()
        }
        topics = base.topics.model_copy(update={"defaults": defaults, "overrides": overrides})
        update = {"bootstrap_servers": self.addresses, "topics": topics}
        return self.credentials.apply(base.model_copy(update=update))

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.credentials.ensure()
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        for node in self.nodes:
            render_properties(
                node.home / "server.properties",
                node_id=node.node_id,
                port=node.port,
                controller_port=node.controller_port,
                quorum=f"controller.quorum.voters={voters}",
                data_dir=node.home / "data",
                credentials=self.credentials,
                replication=REPLICATION,
                min_insync=MIN_INSYNC,
            )
            format_storage(self._jvm(node), self.cluster_id, node.home / "server.properties")
        for node in self.nodes:
            self._launch(node)
        self.wait_ready(self.nodes, login=self.credentials.broker_settings())
        ensure_client_user(self.nodes[0].address, self.credentials, self.start_timeout)
        self.wait_ready(self.nodes, login=self.credentials.client_settings())

    def _jvm(self, node: Node) -> list[str]:
        (node.home / "logs").mkdir(parents=True, exist_ok=True)
        return jvm_command(self.settings, node.home, node.home / "logs")

    def _launch(self, node: Node) -> None:
        command = [*self._jvm(node), "kafka.Kafka", str(node.home / "server.properties")]
        with (node.home / "logs" / "stdout.log").open("ab") as out:
            node.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def wait_ready(self, nodes: list[Node], *, login: dict[str, object] | None = None) -> None:
        kafka = KafkaConfig().model_copy(update=login or self.credentials.client_settings())
        deadline = time.monotonic() + self.start_timeout
        waiting = list(nodes)
        while waiting:
            for node in list(waiting):
                if node.process is not None and node.process.poll() is not None:
                    raise SetupError(f"Kafka node {node.node_id} exited: {self.log_tail(node)}")
                if metadata_ok(node.address, kafka=kafka):
                    waiting.remove(node)
            if waiting and time.monotonic() > deadline:
                raise SetupError(f"Kafka nodes {[n.node_id for n in waiting]} did not answer in time")
            time.sleep(0.2)

    def kill(self, node_id: int) -> None:
        """``kill -9`` of one node: no clean shutdown, no leadership handed over."""
        node = self.node(node_id)
        if node.process is None:
            return
        try:
            os.killpg(node.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        node.process.wait(timeout=30)
        node.process = None

    def restart(self, node_id: int) -> None:
        node = self.node(node_id)
        self._launch(node)
        self.wait_ready([node])

    def node(self, node_id: int) -> Node:
        return next(n for n in self.nodes if n.node_id == node_id)

    def leaders(self, topic: str) -> dict[int, int]:
        """Partition -> id of the node leading it now."""
        kafka = self.client_config()
        live = [n.address for n in self.nodes if n.alive]
        admin = new_admin(kafka, live)
        try:
            [described] = admin.describe_topics([topic])
        finally:
            admin.close()
        return {p["partition_index"]: p["leader_id"] for p in described["partitions"]}

    def stop(self) -> None:
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.terminate()
        for node in self.nodes:
            if node.process is None:
                continue
            try:
                node.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(node.process.pid, signal.SIGKILL)
                node.process.wait(timeout=30)
            node.process = None

    @staticmethod
    def log_tail(node: Node, lines: int = 30) -> str:
        for name in ("server.log", "stdout.log"):
            path = node.home / "logs" / name
            if path.exists() and path.stat().st_size:
                return "\n".join(path.read_text("utf-8", "replace").splitlines()[-lines:])
        return "(no log)"
