"""The embedded single-node Apache Kafka broker (KRaft, combined mode).

Kafka runs from its Maven Central jars: ``fetch_jars`` has Maven copy them into a cache
once, ``EmbeddedBroker.start`` formats the storage on first start and runs the broker as a
child process on 127.0.0.1. The chosen ports are kept in the state folder: a KRaft
controller records its own endpoint when the storage is formatted, so a restart must use
the same ports again.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import string
import subprocess
import time
import uuid
from contextlib import closing
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mailferry.config.kafka import EmbeddedKafka
from mailferry.errors import SetupError

READY_LINE = "Kafka Server started"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def cache_dir() -> Path:
    explicit = os.environ.get("MAILFERRY_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "mailferry"


def jars_dir(version: str) -> Path:
    return cache_dir() / "kafka" / version / "libs"


def _asset(name: str) -> str:
    return resources.files("mailferry.kafka.assets").joinpath(name).read_text("utf-8")


def _require(tool: str, install_hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise SetupError(f"{tool} was not found on PATH; install it first: {install_hint}")
    return path


def fetch_jars(version: str, *, quiet: bool = True) -> Path:
    """Copy Kafka ``version`` and its log4j2 binding from Maven Central into the cache, once."""
    target = jars_dir(version)
    if (target / f"kafka_2.13-{version}.jar").exists():
        return target
    mvn = _require("mvn", "apt-get install maven (and openjdk-17-jdk-headless)")
    _require("java", "apt-get install openjdk-17-jre-headless")
    work = target.parent / "pom"
    work.mkdir(parents=True, exist_ok=True)
    (work / "pom.xml").write_text(_asset("pom.xml"), encoding="utf-8")
    partial = target.with_name("libs.partial")
    shutil.rmtree(partial, ignore_errors=True)
    command = [
        mvn,
        "-B",
        "-f",
        str(work / "pom.xml"),
        f"-Dkafka.version={version}",
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={partial}",
    ]
    if quiet:
        command.insert(1, "-q")
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
        raise SetupError(f"Maven could not fetch Kafka {version}:\n{tail}")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def _port_free(port: int) -> bool:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cluster_id() -> str:
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not candidate.startswith("-"):
            return candidate


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


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
        if state and state.pid and _pid_alive(state.pid):
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
        return BrokerState(port, controller, _cluster_id(), self.settings.kafka_version)

    def start(self) -> BrokerState:
        """Start the broker (formatting storage the first time) and wait until it answers."""
        running = self.running_state()
        if running:
            return running
        java = _require("java", "apt-get install openjdk-17-jre-headless")
        libs = fetch_jars(self.settings.kafka_version)
        state = self.load_state()
        formatted = (self.data_dir / "meta.properties").exists()
        if state is None or not formatted:
            state = self._initial_state()
        for port, what in ((state.port, "broker"), (state.controller_port, "controller")):
            if not _port_free(port):
                raise SetupError(
                    f"port {port} for the embedded Kafka {what} on 127.0.0.1 is already in use; "
                    "stop what holds it or choose another port in [kafka.embedded]"
                )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.properties.write_text(
            string.Template(_asset("server.properties.template")).substitute(
                port=state.port,
                controller_port=state.controller_port,
                data_dir=self.data_dir,
                max_message_bytes=MAX_MESSAGE_BYTES,
            ),
            encoding="utf-8",
        )
        log_config = self.home / "log4j2.properties"
        log_config.write_text(_asset("log4j2.properties"), encoding="utf-8")
        jvm = [
            java,
            f"-Xmx{self.settings.heap}",
            f"-Xms{self.settings.heap}",
            "-XX:+UseG1GC",
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log_config}",
            f"-Dkafka.logs.dir={self.logs_dir}",
            "-cp",
            f"{libs}/*",
        ]
        if not formatted:
            result = subprocess.run(
                [
                    *jvm,
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    state.cluster_id,
                    "-c",
                    str(self.properties),
                    "--standalone",
                    "--ignore-formatted",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise SetupError(f"formatting the Kafka storage failed:\n{result.stdout}{result.stderr}")
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
        self._wait_ready(state, process)
        return state

    def _wait_ready(self, state: BrokerState, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.settings.start_timeout.total_seconds()
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SetupError(
                    f"the embedded Kafka broker exited with code {process.returncode}; "
                    f"its log ends with:\n{self.log_tail()}"
                )
            if metadata_ok(state.address):
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
        while time.monotonic() < deadline and _pid_alive(state.pid):
            time.sleep(0.2)
        if _pid_alive(state.pid):
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
            "answers": bool(running and metadata_ok(running.address)),
            "address": state.address if state else None,
            "pid": running.pid if running else None,
            "version": state.version if state else self.settings.kafka_version,
        }


def metadata_ok(address: str, timeout_ms: int = 2000) -> bool:
    """True when the broker at ``address`` answers a metadata request."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    host, _, port = address.rpartition(":")
    try:
        # a closed port answers at once; the admin client would retry until its timeout
        socket.create_connection((host, int(port)), timeout=timeout_ms / 1000).close()
    except OSError:
        return False
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=[address],
            request_timeout_ms=timeout_ms,
            connections_max_idle_ms=10_000,
        )
    except (KafkaError, OSError, ValueError):
        return False
    try:
        admin.describe_cluster()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()
