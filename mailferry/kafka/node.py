"""One KRaft node as a child process: the jars, its properties, its storage, its logins.

Shared by the embedded single broker (``mailferry.kafka.embedded``) and the tests' 3-broker
cluster, so both run the same jars with the same authentication.
"""

from __future__ import annotations

import base64
import os
import socket
import string
import subprocess
import time
import uuid
from contextlib import closing
from importlib import resources
from pathlib import Path

from kafka.admin import UserScramCredentialUpsertion
from kafka.errors import KafkaError

from mailferry.config.kafka import EmbeddedKafka, KafkaConfig
from mailferry.errors import SetupError
from mailferry.kafka.clients import new_admin
from mailferry.kafka.credentials import CLIENT_MECHANISM, CLIENT_USER, BrokerCredentials
from mailferry.maven import JAVA_HINT, copy_dependencies, require_tool

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


def fetch_jars(version: str, *, quiet: bool = True) -> Path:
    """Copy Kafka ``version`` and its log4j2 binding from Maven Central into the cache, once."""
    target = jars_dir(version)
    if (target / f"kafka_2.13-{version}.jar").exists():
        return target
    return copy_dependencies(
        _asset("pom.xml"), target, what=f"Kafka {version}", properties={"kafka.version": version}, quiet=quiet
    )


def port_free(port: int) -> bool:
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


def cluster_id() -> str:
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not candidate.startswith("-"):
            return candidate


def pid_alive(pid: int) -> bool:
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


def render_properties(
    path: Path,
    *,
    node_id: int,
    port: int,
    controller_port: int,
    quorum: str,
    data_dir: Path,
    credentials: BrokerCredentials,
    replication: int = 1,
    min_insync: int = 1,
) -> None:
    """Write a broker's ``server.properties`` (0600: it holds the broker's own password)."""
    text = string.Template(_asset("server.properties.template")).substitute(
        node_id=node_id,
        port=port,
        controller_port=controller_port,
        quorum=quorum,
        data_dir=data_dir,
        max_message_bytes=MAX_MESSAGE_BYTES,
        broker_password=credentials.broker_password(),
        replication=replication,
        min_insync=min_insync,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def jvm_command(settings: EmbeddedKafka, home: Path, logs_dir: Path) -> list[str]:
    """``java ... -cp <jars>``: what runs the storage tool and the broker."""
    java = require_tool("java", JAVA_HINT)
    libs = fetch_jars(settings.kafka_version)
    home.mkdir(parents=True, exist_ok=True)
    log_config = home / "log4j2.properties"
    log_config.write_text(_asset("log4j2.properties"), encoding="utf-8")
    return [
        java,
        f"-Xmx{settings.heap}",
        f"-Xms{settings.heap}",
        "-XX:+UseG1GC",
        "-XX:TieredStopAtLevel=1",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log_config}",
        f"-Dkafka.logs.dir={logs_dir}",
        "-cp",
        f"{libs}/*",
    ]


def format_storage(jvm: list[str], cluster_id: str, properties: Path, *extra: str) -> None:
    result = subprocess.run(
        [*jvm, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(properties), *extra],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SetupError(f"formatting the Kafka storage failed:\n{result.stdout}{result.stderr}")


def ensure_client_user(address: str, credentials: BrokerCredentials, timeout_s: float) -> None:
    """Create (or renew) the SCRAM credential of mailferry's clients, logged in as the broker."""
    admin_config = KafkaConfig(bootstrap_servers=[address], **credentials.broker_settings())
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = new_admin(admin_config, [address], request_timeout_ms=5000)
            try:
                upsert = UserScramCredentialUpsertion(
                    CLIENT_USER, CLIENT_MECHANISM, credentials.client_password()
                )
                errors = admin.alter_user_scram_credentials([upsert])
            finally:
                admin.close()
        except (KafkaError, OSError) as exc:
            errors = {CLIENT_USER: str(exc)}
        if not errors.get(CLIENT_USER):
            return
        if time.monotonic() > deadline:
            raise SetupError(f"could not create the embedded broker's client login: {errors[CLIENT_USER]}")
        time.sleep(0.2)


def metadata_ok(address: str, timeout_ms: int = 2000, *, kafka: KafkaConfig | None = None) -> bool:
    """True when the broker at ``address`` answers a metadata request with ``kafka``'s login."""
    host, _, port = address.rpartition(":")
    try:
        # a closed port answers at once; the admin client would retry until its timeout
        socket.create_connection((host, int(port)), timeout=timeout_ms / 1000).close()
    except OSError:
        return False
    try:
        admin = new_admin(
            kafka or KafkaConfig(),
            [address],
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
