"""The ``mailferry`` command."""

from __future__ import annotations

import logging
import os
from importlib.metadata import version
from pathlib import Path

import typer

from mailferry import redact
from mailferry.cli import (
    audit_cmd,
    blobs_cmd,
    check_cmd,
    config_cmd,
    console_cmd,
    demo_cmd,
    import_cmd,
    kafka_cmd,
    migrate_cmd,
    replay_cmd,
    run_cmd,
    status_cmd,
    topics_cmd,
)
from mailferry.cli.context import CliContext
from mailferry.consumers import cli as deliver_cli
from mailferry.observe import logs
from mailferry.producers import cli as fetch_cli
from mailferry.streams import cli as stream_cli

LEVEL_ENV = "MAILFERRY_LOG_LEVEL"

app = typer.Typer(
    name="mailferry",
    help="POP3/IMAP to Microsoft Exchange over a Kafka pipeline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


LEVELS = ("debug", "info", "warning", "error", "critical")


def _print_version(wanted: bool) -> None:
    if wanted:
        print(f"mailferry {version('mailferry')}")
        raise typer.Exit()


def _set_level(level: str | None) -> None:
    """One level for every role's log, libraries included; children of `mailferry run` inherit it
    through the environment."""
    if level is None:
        return
    if level.lower() not in LEVELS:
        raise typer.BadParameter(" | ".join(LEVELS), param_hint="--log-level")
    os.environ[LEVEL_ENV] = level.lower()
    logging.basicConfig(format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level.upper())


@app.callback()
def main(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None,
        "-c",
        "--config",
        envvar="MAILFERRY_CONFIG",
        help="TOML config; without it, the built-in defaults with the embedded broker",
    ),
    log_level: str | None = typer.Option(
        None,
        "--log-level",
        envvar=LEVEL_ENV,
        help="debug | info | warning | error | critical, for every role; default: each role's own",
    ),
    _version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="print the version and exit"
    ),
    log_format: str | None = typer.Option(
        None,
        "--log-format",
        envvar=logs.ENV,
        help="text or json (one object per line) for every role; default: [logging] format",
    ),
) -> None:
    if log_format is not None:
        if log_format not in ("text", "json"):
            raise typer.BadParameter("text or json", param_hint="--log-format")
        os.environ[logs.ENV] = log_format  # the roles `mailferry run` starts inherit it
    _set_level(log_level)
    ctx.obj = CliContext(config)


app.add_typer(kafka_cmd.app, name="kafka")
app.add_typer(topics_cmd.app, name="topics")
app.add_typer(config_cmd.app, name="config")
app.command("run")(run_cmd.run)
app.add_typer(import_cmd.app, name="import")
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(blobs_cmd.app, name="blobs")
app.add_typer(migrate_cmd.app, name="migrate")
app.command("replay")(replay_cmd.replay_cmd)
app.command("status")(status_cmd.status_cmd)
app.command("check")(check_cmd.check_cmd)
app.command("console")(console_cmd.console_cmd)
app.command("demo")(demo_cmd.demo_cmd)

for stage in (fetch_cli, stream_cli, deliver_cli):
    stage.register(app)


def entry() -> None:
    """The ``mailferry`` command. What it writes (mail, blobs, state, logs, the embedded broker's
    data, which all hold mail or secrets) is readable by its own user only; no log line holds a
    secret (``mailferry.redact``); ``--log-level`` / ``MAILFERRY_LOG_LEVEL`` (e.g. ``debug``) sets
    the level of every role's log, libraries included."""
    os.umask(0o077)
    redact.install()
    app()
