"""The ``mailferry`` commands of this stage, registered on the main app."""

from __future__ import annotations

import typer

from mailferry.cli.context import CliContext
from mailferry.cli.output import cli_errors


@cli_errors
def stream_cmd(
    ctx: typer.Context,
    log_level: str = typer.Option(
        "warning", envvar="MAILFERRY_LOG_LEVEL", help="debug, info, warning or error"
    ),
) -> None:
    """Run the stream role: resolve recipients, deduplicate and route raw mail to deliveries.

    Uses its own data folder (``stream.data_dir``) and web port (``stream.web_port``, 0: no
    web server); SIGTERM or Ctrl-C stops it after committing what it processed.
    """
    from mailferry.streams.worker import run_stream

    cli: CliContext = ctx.obj
    cli.check_secrets()
    run_stream(cli.config, cli.bootstrap_servers(), log_level=log_level)


def register(app: typer.Typer) -> None:
    """Add this stage's commands (the ``stream`` role and its tools) to ``app``."""
    app.command("stream")(stream_cmd)
