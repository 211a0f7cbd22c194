"""Jars from Maven Central into mailferry's cache: the one Maven step of the embedded Kafka
broker (``mailferry.kafka.node``) and of the test kit's s3proxy and schema registry.

Maven resolves the dependency tree of a pom and copies it into a ``.partial`` folder that is
renamed into place only when complete, so an interrupted fetch is never mistaken for a done one.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from mailferry.errors import SetupError

JAVA_HINT = "apt-get install openjdk-17-jre-headless"


def require_tool(tool: str, install_hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise SetupError(f"{tool} was not found on PATH; install it first: {install_hint}")
    return path


def run_maven(pom_file: Path, arguments: list[str], *, what: str, quiet: bool = True) -> None:
    """``mvn -B -f pom_file arguments``; a ``SetupError`` naming ``what`` with Maven's last
    lines when it fails (``Maven could not fetch Kafka 4.1.1``)."""
    mvn = require_tool("mvn", "apt-get install maven (and openjdk-17-jdk-headless)")
    require_tool("java", JAVA_HINT)
    command = [mvn, *(["-q"] if quiet else []), "-B", "-f", str(pom_file), *arguments]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
        raise SetupError(f"Maven could not {what}:\n{tail}")


def copy_dependencies(
    pom: str,
    target: Path,
    *,
    what: str,
    properties: dict[str, str] | None = None,
    quiet: bool = True,
) -> Path:
    """Have Maven copy the runtime dependencies of ``pom`` into ``target``; ``what`` names them
    in the error (``Kafka 4.1.1``)."""
    work = target.parent / "pom"
    work.mkdir(parents=True, exist_ok=True)
    (work / "pom.xml").write_text(pom, encoding="utf-8")
    partial = target.with_name(f"{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()  # Maven creates it only when there is something to copy
    run_maven(
        work / "pom.xml",
        [
            *(f"-D{key}={value}" for key, value in (properties or {}).items()),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={partial}",
        ],
        what=f"fetch {what}",
        quiet=quiet,
    )
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target
