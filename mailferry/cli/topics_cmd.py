"""``mailferry topics ensure|list``."""

from __future__ import annotations

import typer
from kafka import KafkaAdminClient

from mailferry.cli.context import CliContext
from mailferry.cli.output import cli_errors, console
from mailferry.kafka.admin import ensure_topics
from mailferry.kafka.clients import new_admin
from mailferry.kafka.topics import topic_specs

app = typer.Typer(help="The pipeline's Kafka topics.", no_args_is_help=True)


def admin_client(cli: CliContext) -> KafkaAdminClient:
    return new_admin(cli.config.kafka, cli.bootstrap_servers())


@app.command()
@cli_errors
def ensure(ctx: typer.Context) -> None:
    """Create or update every topic with the configured settings; a second run changes nothing."""
    cli: CliContext = ctx.obj
    config = cli.config
    admin = admin_client(cli)
    try:
        report = ensure_topics(admin, topic_specs(config.kafka, len(config.retry.tiers)))
    finally:
        admin.close()
    for line in report.lines():
        console.print(line, highlight=False)


@app.command("list")
@cli_errors
def list_topics(ctx: typer.Context) -> None:
    """The topics the configuration asks for, with their settings."""
    cli: CliContext = ctx.obj
    config = cli.config
    for spec in topic_specs(config.kafka, len(config.retry.tiers)):
        settings = " ".join(f"{k}={v}" for k, v in sorted(spec.config.items()))
        console.print(
            f"{spec.name}  partitions={spec.partitions} rf={spec.replication_factor} {settings}",
            highlight=False,
        )
