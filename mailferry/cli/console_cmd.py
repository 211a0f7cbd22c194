"""``mailferry console``: the web console role."""

from __future__ import annotations

import typer

from mailferry.cli.context import CliContext
from mailferry.cli.output import cli_errors, console


@cli_errors
def console_cmd(
    ctx: typer.Context,
    host: str | None = typer.Option(None, "--host", help="bind address (default console.host, 127.0.0.1)"),
    port: int | None = typer.Option(None, "--port", help="TCP port (default console.port, 8025)"),
) -> None:
    """A web console: mailboxes, lag and throughput; dead letters to requeue or discard; traces.

    Any bind other than loopback needs console.token or console.password_hash in the config.
    """
    import uvicorn

    from mailferry.console.app import build_app

    cli: CliContext = ctx.obj
    config = cli.config
    bind = host or config.console.host
    app = build_app(config, cli.bootstrap_servers(), bind)
    chosen = config.console.port if port is None else port
    console.print(f"mailferry console on http://{bind}:{chosen}/", highlight=False)
    uvicorn.run(app, host=bind, port=chosen, log_level="warning", proxy_headers=False)
