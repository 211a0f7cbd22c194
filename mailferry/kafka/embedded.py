"""The embedded single-node Apache Kafka broker (KRaft, combined mode).

Kafka runs from its Maven Central jars: ``fetch_jars`` has Maven copy them into a cache
once, ``EmbeddedBroker.start`` formats the storage on first start and runs the broker as a
child process on 127.0.0.1. The chosen ports are kept in the state folder: a KRaft
controller records its own endpoint when the storage is formatted, so a restart must use
the same ports again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from mailferry.config.kafka import EmbeddedKafka, KafkaConfig
from mailferry.errors import SetupError
from mailferry.kafka.credentials import BrokerCredentials
from mailferry.kafka.node import (
    _asset,
    cache_dir,
    cluster_id,
    ensure_client_user,
    fetch_jars,
    format_storage,
    free_port,
    jvm_command,
    metadata_ok,
    pid_alive,
    port_free,
    render_properties,
)

__all__ = [
    "BrokerState",
    "EmbeddedBroker",
    "_asset",
    "cache_dir",
    "fetch_jars",
    "free_port",
    "metadata_ok",
]


@dataclass
class BrokerState:
    port: int
    controller_port: int
    cluster_id: str
    version: str
    pid: int | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


class EmbeddedBroker:
    """One broker whose files all live under ``home``."""

    def __init__(self, settings: EmbeddedKafka, home: Path) -> None:
        self.settings = settings
        self.home = home
        self.data_dir = home / "data"
        self.logs_dir = home / "logs"
        self.state_file = home / "broker.json"
        self.properties = home / "server.properties"
        self.credentials = BrokerCredentials(home)

    def client_config(self, kafka: KafkaConfig | None = None) -> KafkaConfig:
        """``kafka`` (or the defaults) pointed at this running broker with its client login."""
        base = kafka or KafkaConfig()
        return self.credentials.apply(base.model_copy(update={"bootstrap_servers": [self.address]}))

    # -- state ---------------------------------------------------------------------
    def load_state(self) -> BrokerState | None:
        try:
            return BrokerState(**json.loads(self.state_file.read_text("utf-8")))
        except FileNotFoundError:
            return None

    def _save_state(self, state: BrokerState) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(state.__dict__), encoding="utf-8")

    def running_state(self) -> BrokerState | None:
        state = self.load_state()
        if state and state.pid and pid_alive(state.pid):
            return state
        return None

    @property
    def address(self) -> str:
        state = self.load_state()
        if state is None:
            raise SetupError(f"the embedded broker in {self.home} was never started")
        return state.address

    def log_tail(self, lines: int = 30) -> str:
        for name in ("server.log", "stdout.log"):
            path = self.logs_dir / name
            if path.exists() and path.stat().st_size:
                return "\n".join(path.read_text("utf-8", "replace").splitlines()[-lines:])
        return "(the broker wrote no log)"

    # -- lifecycle -----------------------------------------------------------------
    def _initial_state(self) -> BrokerState:
        port = self.settings.port or free_port()
        controller = self.settings.controller_port or free_port()
        while controller == port:
            controller = free_port()
        return BrokerState(port, controller, cluster_id(), self.settings.kafka_version)

    def start(self) -> BrokerState:
        """Start the broker (formatting storage the first time) and wait until it answers."""
        running = self.running_state()
        if running:
            return running
        jvm = jvm_command(self.settings, self.home, self.logs_dir)
        state = self.load_state()
        formatted = (self.data_dir / "meta.properties").exists()
        if state is None or not formatted:
            state = self._initial_state()
        for port, what in ((state.port, "broker"), (state.controller_port, "controller")):
            if not port_free(port):
                raise SetupError(
                    f"port {port} for the embedded Kafka {what} on 127.0.0.1 is already in use; "
                    "stop what holds it or choose another port in [kafka.embedded]"
                )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.credentials.ensure()
        render_properties(
            self.properties,
            node_id=1,
            port=state.port,
            controller_port=state.controller_port,
            quorum=f"controller.quorum.bootstrap.servers=127.0.0.1:{state.controller_port}",
            data_dir=self.data_dir,
            credentials=self.credentials,
        )
        if not formatted:
            format_storage(jvm, state.cluster_id, self.properties, "--standalone", "--ignore-formatted")
        stdout = (self.logs_dir / "stdout.log").open("ab")
        process = subprocess.Popen(
            [*jvm, "kafka.Kafka", str(self.properties)],
            stdout=stdout,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        stdout.close()
        state.pid = process.pid
        self._save_state(state)
        self._wait_ready(state, process, self.credentials.broker_settings())
        ensure_client_user(state.address, self.credentials, self.settings.start_timeout.total_seconds())
        self._wait_ready(state, process, self.credentials.client_settings())
        return state

    def _wait_ready(
        self, state: BrokerState, process: subprocess.Popen[bytes], login: dict[str, object]
    ) -> None:
        deadline = time.monotonic() + self.settings.start_timeout.total_seconds()
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SetupError(
                    f"the embedded Kafka broker exited with code {process.returncode}; "
                    f"its log ends with:\n{self.log_tail()}"
                )
            if metadata_ok(state.address, kafka=KafkaConfig().model_copy(update=login)):
                return
            time.sleep(0.1)
        self._kill(process.pid, signal.SIGKILL)
        raise SetupError(
            f"the embedded Kafka broker did not answer within "
            f"{self.settings.start_timeout.total_seconds():g}s; its log ends with:\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop a running broker cleanly (SIGTERM, then SIGKILL after ``timeout``)."""
        state = self.running_state()
        if state is None or state.pid is None:
            return False
        self._kill(state.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and pid_alive(state.pid):
            time.sleep(0.2)
        if pid_alive(state.pid):
            self._kill(state.pid, signal.SIGKILL)
        state.pid = None
        self._save_state(state)
        return True

    @staticmethod
    def _kill(pid: int, sig: signal.Signals) -> None:
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass

    def status(self) -> dict[str, object]:
        state = self.load_state()
        running = self.running_state()
        return {
            "home": str(self.home),
            "running": running is not None,
            "answers": bool(running and metadata_ok(running.address, kafka=self.client_config())),
            "address": state.address if state else None,
            "pid": running.pid if running else None,
            "version": state.version if state else self.settings.kafka_version,
        }
