"""A real schema registry on 127.0.0.1: Apicurio Registry with its Confluent-compatible API.

The registry wire format (``mailferry.schemas.confluent``) is tested against a registry that
speaks Confluent's REST API, not against a stub of it. Neither Confluent's registry nor
Karapace can be installed here; Apicurio Registry's application jar is on Maven Central, and
``mailferry_testkit/schema_registry_assets/pom.xml`` builds a runnable Quarkus application from it (in-memory
storage). ``python -m mailferry_testkit.schema_registry fetch`` (run by ``scripts/setup``)
does that build once into the cache; it takes a few minutes.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from importlib import resources
from pathlib import Path

from mailferry.errors import SetupError
from mailferry.kafka.embedded import cache_dir, free_port
from mailferry.maven import JAVA_HINT, require_tool, run_maven
from mailferry_testkit.child import ChildServer

_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}
_ASSETS = "mailferry_testkit.schema_registry_assets"
_JAVA = "DynamicConfigProducer.java"
API = "/apis/ccompat/v6"


def _asset(name: str) -> str:
    return resources.files(_ASSETS).joinpath(name).read_text("utf-8")


def version() -> str:
    found = ET.fromstring(_asset("pom.xml")).find("m:properties/m:apicurio.version", _POM_NS)
    if found is None or not found.text:
        raise SetupError("mailferry_testkit/schema_registry_assets/pom.xml names no apicurio.version")
    return found.text


def build_dir() -> Path:
    return cache_dir() / "schema-registry" / version()


def runner_jar() -> Path:
    return build_dir() / "target" / "mailferry-test-registry-1-runner.jar"


def _built() -> Path:
    """Written after a whole build: an interrupted one leaves a jar that is not one."""
    return build_dir() / "built"


def fetch() -> Path:
    """Build the runnable registry from Maven Central's jars into the cache, once."""
    jar = runner_jar()
    if _built().exists():
        return jar
    work = build_dir()
    sources = work / "src" / "main" / "java" / "io" / "mailferry" / "registry"
    sources.mkdir(parents=True, exist_ok=True)
    (work / "pom.xml").write_text(_asset("pom.xml"), encoding="utf-8")
    (sources / _JAVA).write_text(_asset(_JAVA), encoding="utf-8")
    what = f"build Apicurio Registry {version()}"
    run_maven(work / "pom.xml", ["clean", "package", "-DskipTests"], what=what)
    if not jar.exists():
        raise SetupError(f"Maven could not {what}: no {jar.name}")
    _built().touch()
    return jar


class SchemaRegistry(ChildServer):
    """One registry process (in-memory storage, its log under ``root``); a context manager."""

    stop_grace = 30.0

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = 0
        super().__init__()

    @property
    def url(self) -> str:
        """The Confluent-compatible API's base URL, what a Confluent client is given."""
        return f"http://127.0.0.1:{self.port}{API}"

    def start(self, timeout: float = 240.0) -> SchemaRegistry:
        jar = runner_jar()
        if not _built().exists():
            raise SetupError(f"the schema registry is not built in {jar.parent}: run scripts/setup")
        java = require_tool("java", JAVA_HINT)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        log_path = self.root / "registry.log"
        log = log_path.open("wb")
        self._process = subprocess.Popen(
            [
                java, "-Xmx384m", f"-Dquarkus.http.port={self.port}", "-Dquarkus.http.host=127.0.0.1",
                "-jar", str(jar),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.root,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise SetupError(f"the schema registry exited: {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/subjects", timeout=2):
                    return self
            except (OSError, urllib.error.URLError):
                time.sleep(0.5)
        self.stop()
        raise SetupError(f"the schema registry did not answer on {self.url} within {timeout}s")


if __name__ == "__main__":
    if sys.argv[1:] != ["fetch"]:
        sys.exit("usage: python -m mailferry_testkit.schema_registry fetch")
    print(f"Apicurio Registry {version()} built: {fetch()}")
