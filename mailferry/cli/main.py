"""The ``mailferry`` command."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import typer

from mailferry import redact
from mailferry.cli.context import CliContext
from mailferry.cli.lazy import Lazy, lazy_group
from mailferry.observe import logs

LEVEL_ENV = "MAILFERRY_LOG_LEVEL"

_CLI = "mailferry.cli."
COMMANDS = {  # in the order `mailferry --help` lists them; each module is imported when used
    "run": Lazy(_CLI + "run_cmd", "run", "command"),
    "replay": Lazy(_CLI + "replay_cmd", "replay_cmd", "command"),
    "status": Lazy(_CLI + "status_cmd", "status_cmd", "command"),
    "check": Lazy(_CLI + "check_cmd", "check_cmd", "command"),
    "console": Lazy(_CLI + "console_cmd", "console_cmd", "command"),
    "demo": Lazy(_CLI + "demo_cmd", "demo_cmd", "command"),
    "fetch": Lazy("mailferry.producers.cli", "register", "register"),
    "stream": Lazy("mailferry.streams.cli", "register", "register"),
    "deliver": Lazy("mailferry.consumers.cli", "register", "register"),
    "kafka": Lazy(_CLI + "kafka_cmd", "app"),
    "topics": Lazy(_CLI + "topics_cmd", "app"),
    "config": Lazy(_CLI + "config_cmd", "app"),
    "import": Lazy(_CLI + "import_cmd", "app"),
    "audit": Lazy(_CLI + "audit_cmd", "app"),
    "blobs": Lazy(_CLI + "blobs_cmd", "app"),
    "migrate": Lazy(_CLI + "migrate_cmd", "app"),
    "mailboxes": Lazy("mailferry.producers.cli", "register", "register"),
    "dlq": Lazy("mailferry.consumers.cli", "register", "register"),
}

app = typer.Typer(
    name="mailferry",
    help="POP3/IMAP to Microsoft Exchange over a Kafka pipeline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=lazy_group(COMMANDS),
)


LEVELS = ("debug", "info", "warning", "error", "critical")


def _print_version(wanted: bool) -> None:
    if wanted:
        from importlib.metadata import version

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


def entry() -> None:
    """The ``mailferry`` command. What it writes (mail, blobs, state, logs, the embedded broker's
    data, which all hold mail or secrets) is readable by its own user only; no log line holds a
    secret (``mailferry.redact``); ``--log-level`` / ``MAILFERRY_LOG_LEVEL`` (e.g. ``debug``) sets
    the level of every role's log, libraries included."""
    os.umask(0o077)
    # pydantic looks for plugins in every installed package's metadata when the first model
    # is built: a tenth of a second of `mailferry audit trace`; mailferry uses none (an
    # operator who wants one sets the variable, even empty)
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    redact.install()
    app()
