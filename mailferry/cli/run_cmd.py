"""``mailferry run``: every role on one machine."""

from __future__ import annotations

import typer
from kafka import KafkaAdminClient

from mailferry.cli.context import CliContext
from mailferry.cli.output import cli_errors, console
from mailferry.kafka.admin import ensure_topics
from mailferry.kafka.clients import common_settings
from mailferry.kafka.topics import topic_specs


@cli_errors
def run(ctx: typer.Context) -> None:
    """Start the embedded broker when no Kafka is configured, ensure the topics, run the roles."""
    cli: CliContext = ctx.obj
    config = cli.config
    if config.kafka.uses_embedded:
        state = cli.embedded_broker().start()
        console.print(f"embedded Kafka {state.version} at {state.address} (state in {config.state_dir})")
    admin = KafkaAdminClient(**common_settings(config.kafka, cli.bootstrap_servers()))
    try:
        report = ensure_topics(admin, topic_specs(config.kafka, len(config.retry.tiers)))
    finally:
        admin.close()
    for line in report.lines():
        console.print(line, highlight=False)
    console.print(
        "The fetch, stream and delivery roles are not wired into `mailferry run` yet; "
        "it stops after starting Kafka and creating the topics. Stop the broker with "
        "`mailferry kafka stop`.",
        highlight=False,
    )
