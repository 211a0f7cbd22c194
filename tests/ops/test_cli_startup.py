"""The command's start-up: a command imports its own module and what it uses, nothing else
(`mailferry audit trace` answers in under a second including start-up, docs/benchmarks/audit.md),
and loading commands on demand leaves none out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.main import get_group
from typer.testing import CliRunner

from mailferry.cli.main import COMMANDS, app
from mailferry.config.kafka import KafkaConfig
from mailferry.consumers import cli as deliver_cli
from mailferry.producers import cli as fetch_cli
from mailferry.streams import cli as stream_cli
from tests.ops.test_audit_index import build, send, story, topics  # noqa: F401  (fixture)

ROLE_LIBRARIES = ("faust", "exchangelib", "boto3", "aiokafka", "starlette", "uvicorn", "msal")
# what an indexed trace with a configured cluster does not use: the replica client, the other
# commands' libraries, the embedded broker's controls
NOT_FOR_A_TRACE = (
    *ROLE_LIBRARIES,
    "httpx",
    "yaml",
    "rich.progress",
    "mailferry.kafka.embedded",
    "mailferry.cli.topics_cmd",
    "mailferry.cli.run_cmd",
)

PROBE = """
import json, sys
sys.argv = ["mailferry", *json.loads(sys.argv[1])]
from mailferry.cli.main import entry
try:
    entry()
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def loaded_by(args: list[str]) -> tuple[str, set[str]]:
    """Run ``mailferry args`` in a new interpreter: its output and every module it imported."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    modules = json.loads(done.stderr.strip().splitlines()[-1])
    return done.stdout, set(modules)


def test_every_command_of_every_stage_is_listed_and_loads() -> None:
    for stage in (fetch_cli, stream_cli, deliver_cli):
        holder = typer.Typer()
        stage.register(holder)
        for name in get_group(holder).commands:
            assert COMMANDS[name].module == stage.__name__, name
    runner = CliRunner()
    for name in COMMANDS:
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert "Usage:" in result.output


def test_help_lists_every_command_without_the_roles_libraries() -> None:
    out, modules = loaded_by(["--help"])
    listed = {line.split()[1] for line in out.splitlines() if line.startswith("│ ") and len(line.split()) > 2}
    assert set(COMMANDS) <= listed
    assert modules.isdisjoint(ROLE_LIBRARIES), modules & set(ROLE_LIBRARIES)


@pytest.mark.integration
def test_an_indexed_trace_imports_only_what_it_uses(topics: KafkaConfig, tmp_path: Path) -> None:  # noqa: F811
    send(topics, story(1))
    build(topics, tmp_path / "index").close()
    config = tmp_path / "c.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        + topics.connection_toml()
        + f'[audit_index]\npath = "{tmp_path / "index"}"\n',
        encoding="utf-8",
    )
    out, modules = loaded_by(["-c", str(config), "audit", "trace", "--json", "<msg-1@example.org>"])
    answer = json.loads(out)
    assert answer["via"] == "index" and len(answer["events"]) == 5
    assert modules.isdisjoint(NOT_FOR_A_TRACE), modules & set(NOT_FOR_A_TRACE)
