"""The container build file, the compose file (checked by ``docker-compose config``, Debian's
docker-compose, installed by scripts/setup) and the systemd units (``systemd-analyze verify``)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from mailferry.config import load_config

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose" / "compose.yaml"
SYSTEMD = ROOT / "deploy" / "systemd"
ROLE_COMMANDS = {
    "fetch": ["fetch"],
    "stream": ["stream"],
    "deliver": ["deliver"],
    "audit-index": ["audit", "index"],
}


def compose_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker-compose", "-f", str(path), "config"], capture_output=True, text=True, timeout=60
    )


def test_compose_file_is_valid_and_runs_every_role_against_its_kafka() -> None:
    result = compose_config(COMPOSE)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert set(services) == {"kafka", "topics", *ROLE_COMMANDS}
    config = load_config(COMPOSE.parent / "mailferry.toml")
    assert config.kafka.bootstrap_servers == ["kafka:9092"]
    for role, command in ROLE_COMMANDS.items():
        service = services[role]
        assert service["command"] == ["-c", "/etc/mailferry/mailferry.toml", *command]
        assert service["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        probe = " ".join(service["healthcheck"]["test"])
        assert f"127.0.0.1:{config.metrics.port}/readyz" in probe


def test_compose_config_refuses_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("restart: unless-stopped", "restart: [unless-stopped]"))
    assert compose_config(broken).returncode != 0


def test_container_build_copies_every_package_folder() -> None:
    """The image installs with ``pip install .``: each folder pyproject maps into the package
    must be copied, or that stage is missing from the image."""
    copied = set(re.findall(r"^COPY (?!--)(\S+) \S+$", (ROOT / "Containerfile").read_text(), re.M))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    folders = set(project["tool"]["setuptools"]["package-dir"].values())
    assert folders <= copied, folders - copied
    for source in copied:
        assert (ROOT / source).exists(), source
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert not folders & set(ignored)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_units_verify_including_the_prune_timer(tmp_path: Path) -> None:
    mailferry = Path(sys.executable).with_name("mailferry")
    for unit in SYSTEMD.glob("mailferry*"):
        text = unit.read_text().replace("/opt/mailferry/.venv/bin/mailferry", str(mailferry))
        (tmp_path / unit.name).write_text(text)
    units = sorted(str(p) for p in tmp_path.iterdir())
    assert any(u.endswith("mailferry-blobs-prune.timer") for u in units)
    result = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    prune = (tmp_path / "mailferry-blobs-prune.service").read_text()
    assert f"{mailferry} -c /etc/mailferry/mailferry.toml blobs prune" in prune
    assert "mailferry-blobs-prune.timer" in (tmp_path / "mailferry.target").read_text()

    (tmp_path / "mailferry-blobs-prune.timer").write_text("[Timer]\nOnCalendar=every so often\n")
    broken = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True, timeout=60)
    assert broken.returncode != 0 or broken.stderr.strip()
