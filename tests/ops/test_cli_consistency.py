"""One CLI: version, one ``--json`` shape, unwrapped piped output, the same exit codes everywhere,
times without a zone read as UTC, one log level for every role, never-polled mailboxes in status."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailferry.cli.main import app
from mailferry.config.kafka import KafkaConfig

pytestmark = pytest.mark.integration

TENANT = """
[[tenants]]
id = "acme"
accepted_domains = ["acme.example"]
default_mailbox = "postmaster@acme.example"
default_target = "box"

[[tenants.targets]]
name = "box"
kind = "maildir"
path = "{maildir}"

[[tenants.sources]]
id = "alice-isp"
kind = "pop3"
mode = "personal"
host = "pop.isp.example"
username = "alice"
auth = {{ kind = "password", password = "env:MF_NEVER_SET_CLI" }}
deliver_to = "alice@acme.example"
"""


def _config(tmp_path: Path, kafka: KafkaConfig, *, tenants: bool = True) -> Path:
    text = f'state_dir = "{tmp_path / "state"}"\n' + kafka.connection_toml()
    if tenants:
        text += TENANT.format(maildir=tmp_path / "maildir")
    path = tmp_path / "mailferry.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def new_york() -> Iterator[None]:
    """A machine whose local zone is not UTC, so a time read in the local zone shows."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("mailferry 0.")


def test_piped_output_is_not_wrapped(tmp_path: Path, kafka_config: KafkaConfig) -> None:
    config = _config(tmp_path, kafka_config)
    done = subprocess.run(
        [sys.executable, "-m", "mailferry", "-c", str(config), "topics", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "COLUMNS"},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(map(len, lines)) > 80
    assert all(line.startswith(kafka_config.topic_prefix + ".") for line in lines), lines


def test_every_json_answer_is_one_object(tmp_path: Path, kafka_config: KafkaConfig) -> None:
    config = str(_config(tmp_path, kafka_config))
    runner = CliRunner()
    assert runner.invoke(app, ["-c", config, "topics", "ensure"]).exit_code == 0
    answers = {
        ("topics", "list"): "topics",
        ("dlq", "list"): "dead_letters",
        ("status",): "mailboxes",
    }
    for command, key in answers.items():
        result = runner.invoke(app, ["-c", config, *command, "--json"])
        assert result.exit_code == 0, f"{command}: {result.output}"
        document = json.loads(result.output)
        assert isinstance(document, dict) and key in document, command
    topics = json.loads(runner.invoke(app, ["-c", config, "topics", "list", "--json"]).output)["topics"]
    assert f"{kafka_config.topic_prefix}.raw" in {t["name"] for t in topics}


def test_exit_codes_not_found_1_usage_2(tmp_path: Path, kafka_config: KafkaConfig) -> None:
    config = str(_config(tmp_path, kafka_config))
    runner = CliRunner()
    assert runner.invoke(app, ["-c", config, "topics", "ensure"]).exit_code == 0
    nonsense = runner.invoke(app, ["-c", config, "dlq", "list", "-e", "nonsense"])
    assert nonsense.exit_code == 2, nonsense.output
    assert "transient-expired" in nonsense.output
    missing = runner.invoke(app, ["-c", config, "dlq", "show", "no-such-letter"])
    assert missing.exit_code == 1, missing.output
    assert "no dead letter with id no-such-letter" in missing.output
    trace = runner.invoke(app, ["-c", config, "audit", "trace", "<nothing@acme.example>"])
    assert trace.exit_code == 1, trace.output
    unnarrowed = runner.invoke(app, ["-c", config, "dlq", "requeue"])
    assert unnarrowed.exit_code == 2, unnarrowed.output


def test_replay_reads_a_time_without_zone_as_utc(
    tmp_path: Path, kafka_config: KafkaConfig, new_york: None
) -> None:
    config = str(_config(tmp_path, kafka_config))
    runner = CliRunner()
    assert runner.invoke(app, ["-c", config, "topics", "ensure"]).exit_code == 0
    since, until = "2026-11-01T00:00:00", "2026-11-02T00:00:00"
    result = runner.invoke(app, ["-c", config, "replay", "-t", "acme", "--from", since, "--to", until])
    assert result.exit_code == 0, result.output
    assert "between 2026-11-01T00:00:00+00:00 and 2026-11-02T00:00:00+00:00" in result.output


def test_log_level_for_every_role(tmp_path: Path, kafka_config: KafkaConfig) -> None:
    config = str(_config(tmp_path, kafka_config))
    root = logging.getLogger()
    before = root.level
    try:
        result = CliRunner().invoke(app, ["-c", config, "--log-level", "debug", "topics", "list"])
        assert result.exit_code == 0, result.output
        assert root.level == logging.DEBUG
        assert os.environ["MAILFERRY_LOG_LEVEL"] == "debug"  # what `mailferry run`'s roles inherit
    finally:
        root.setLevel(before)
        os.environ.pop("MAILFERRY_LOG_LEVEL", None)
    bogus = CliRunner().invoke(app, ["-c", config, "--log-level", "loud", "topics", "list"])
    assert bogus.exit_code == 2, bogus.output


def test_status_lists_configured_mailboxes_never_polled(tmp_path: Path, kafka_config: KafkaConfig) -> None:
    config = str(_config(tmp_path, kafka_config))
    result = CliRunner().invoke(app, ["-c", config, "status", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["mailboxes"] == {"acme/alice-isp": {"state": "never polled"}}
    table = CliRunner().invoke(app, ["-c", config, "status"])
    assert "acme/alice-isp" in table.output and "never polled" in table.output


@pytest.mark.parametrize("role", [["deliver"], ["stream"], ["audit", "index"], ["fetch"], ["console"]])
def test_roles_take_the_log_level_from_the_global_option_only(role: list[str]) -> None:
    """A role with a level option of its own would disagree with ``mailferry --log-level``."""
    helped = CliRunner().invoke(app, [*role, "--help"], env={"COLUMNS": "200"})
    assert helped.exit_code == 0, helped.output
    assert "--log-level" not in helped.output and "--verbose" not in helped.output
