"""The ``mailferry`` commands of this stage, registered on the main app."""

from __future__ import annotations

import os

import typer

from mailferry.cli.context import CliContext
from mailferry.cli.main import LEVEL_ENV
from mailferry.cli.output import cli_errors


@cli_errors
def stream_cmd(ctx: typer.Context) -> None:
    """Run the stream role: resolve recipients, deduplicate and route raw mail to deliveries.

    Uses its own data folder (``stream.data_dir``) and web port (``stream.web_port``, 0: no
    web server); SIGTERM or Ctrl-C stops it after committing what it processed.
    """
    from mailferry.streams.worker import run_stream

    cli: CliContext = ctx.obj
    cli.check_secrets()
    # Faust sets its own log up: it takes the level of the global --log-level (its variable)
    run_stream(cli.config, cli.bootstrap_servers(), log_level=os.environ.get(LEVEL_ENV, "warning"))


def register(app: typer.Typer) -> None:
    """Add this stage's commands (the ``stream`` role and its tools) to ``app``."""
    app.command("stream")(stream_cmd)
