"""s3proxy (``org.gaul:s3proxy`` from Maven Central, filesystem backend) on 127.0.0.1.

Blob store kind ``s3`` is tested against a real S3-compatible server rather than a mock
of boto3: s3proxy speaks the S3 REST API (SigV4, multipart upload, copy, listing) and keeps
the objects as files in a folder. Its jars are fetched with Maven the way the Kafka jars
are (``python -m mailferry_testkit.s3proxy fetch``, run by ``scripts/setup``).
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import xml.etree.ElementTree as ET
from importlib import resources
from pathlib import Path

from mailferry.errors import SetupError
from mailferry.kafka.embedded import cache_dir, free_port
from mailferry.maven import JAVA_HINT, copy_dependencies, require_tool
from mailferry_testkit.child import ChildServer

_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


def _pom() -> str:
    return resources.files("mailferry_testkit.s3proxy_assets").joinpath("pom.xml").read_text("utf-8")


def version() -> str:
    found = ET.fromstring(_pom()).find("m:properties/m:s3proxy.version", _POM_NS)
    if found is None or not found.text:
        raise SetupError("mailferry_testkit/s3proxy_assets/pom.xml names no s3proxy.version")
    return found.text


def jars_dir() -> Path:
    return cache_dir() / "s3proxy" / version() / "libs"


def fetch_jars() -> Path:
    """Copy s3proxy and its dependencies from Maven Central into the cache, once."""
    target = jars_dir()
    if (target / f"s3proxy-{version()}.jar").exists():
        return target
    return copy_dependencies(_pom(), target, what=f"s3proxy {version()}")


class S3Proxy(ChildServer):
    """One s3proxy process with its objects under ``root``; a context manager."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = 0
        self.access_key = "mailferry-test"
        self.secret_key = uuid.uuid4().hex
        super().__init__()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> S3Proxy:
        jars = jars_dir()
        if not (jars / f"s3proxy-{version()}.jar").exists():
            raise SetupError(f"s3proxy jars are not in {jars}: run scripts/setup")
        java = require_tool("java", JAVA_HINT)
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        properties = self.root / "s3proxy.properties"
        properties.write_text(
            f"s3proxy.endpoint=http://127.0.0.1:{self.port}\n"
            "s3proxy.authorization=aws-v2-or-v4\n"
            f"s3proxy.identity={self.access_key}\n"
            f"s3proxy.credential={self.secret_key}\n"
            "jclouds.provider=filesystem\n"
            f"jclouds.filesystem.basedir={self.root / 'data'}\n",
            encoding="utf-8",
        )
        properties.chmod(0o600)
        log = (self.root / "s3proxy.log").open("wb")
        self._process = subprocess.Popen(
            [java, "-Xmx256m", "-cp", f"{jars}/*", "org.gaul.s3proxy.Main", "--properties", str(properties)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise SetupError(f"s3proxy exited: {(self.root / 's3proxy.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(self.endpoint, timeout=1)
                return self
            except urllib.error.HTTPError:
                return self  # it answers (403 without a signature): ready
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise SetupError(f"s3proxy did not answer on {self.endpoint} within {timeout}s")


if __name__ == "__main__":
    if sys.argv[1:] != ["fetch"]:
        sys.exit("usage: python -m mailferry_testkit.s3proxy fetch")
    print(f"s3proxy {version()} jars in {fetch_jars()}")
