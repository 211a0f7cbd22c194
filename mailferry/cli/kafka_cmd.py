"""``mailferry kafka fetch|start|stop|status``: the embedded broker."""

from __future__ import annotations

import typer

from mailferry.cli.context import CliContext
from mailferry.cli.output import cli_errors, console, print_json
from mailferry.kafka.embedded import fetch_jars

app = typer.Typer(help="The embedded single-node Kafka broker (KRaft).", no_args_is_help=True)


@app.command()
@cli_errors
def fetch(ctx: typer.Context) -> None:
    """Download the Kafka jars from Maven Central into the cache (once)."""
    cli: CliContext = ctx.obj
    version = cli.config.kafka.embedded.kafka_version
    path = fetch_jars(version, quiet=False)
    console.print(f"Kafka {version} jars in {path}")


@app.command()
@cli_errors
def start(ctx: typer.Context) -> None:
    """Start the broker (formatting its storage the first time) and wait until it answers."""
    cli: CliContext = ctx.obj
    state = cli.embedded_broker().start()
    console.print(f"Kafka {state.version} is up at {state.address} (pid {state.pid})")


@app.command()
@cli_errors
def stop(ctx: typer.Context) -> None:
    """Stop the broker cleanly."""
    cli: CliContext = ctx.obj
    stopped = cli.embedded_broker().stop()
    console.print("stopped" if stopped else "the embedded broker was not running")


@app.command()
@cli_errors
def status(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """Whether the broker runs and answers, and where."""
    cli: CliContext = ctx.obj
    info = cli.embedded_broker().status()
    if as_json:
        print_json(info)
        return
    for key, value in info.items():
        console.print(f"{key:>8}: {value}")
    if not info["running"]:
        raise typer.Exit(3)
