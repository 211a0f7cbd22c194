"""The ``mailferry`` commands of this stage, registered on the main app."""

from __future__ import annotations

import logging
import signal
import threading
from datetime import timedelta
from types import FrameType

import typer

from mailferry.cli.context import CliContext
from mailferry.cli.output import cli_errors, console


@cli_errors
def deliver_cmd(
    ctx: typer.Context,
    group: str | None = typer.Option(None, help="consumer group (default: <topic prefix>.deliver)"),
    credential_retry: float = typer.Option(30.0, help="seconds between credential checks of a paused tenant"),
) -> None:
    """The delivery role: deliver topic and retry tiers into the recipients' mailboxes.

    SIGTERM or Ctrl-C stops it cleanly: running deliveries finish and their offsets are
    committed; nothing is lost or written twice.
    """
    from mailferry.consumers.worker import DeliveryWorker

    logging.basicConfig(  # a no-op when the global --log-level already set the log up
        level=logging.WARNING,
        format="%(asctime)s deliver %(levelname)s %(name)s: %(message)s",
    )
    cli: CliContext = ctx.obj
    cli.check_secrets()
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, request_stop)
    worker = DeliveryWorker(
        cli.config,
        cli.bootstrap_servers(),
        group_id=group,
        credential_retry=timedelta(seconds=credential_retry),
    )
    from mailferry.observe.server import observe

    observer = observe(cli.config, "deliver", cli.bootstrap_servers(), worker.group_id)
    console.print(f"delivering from {worker.deliver_topic} and {len(worker.tier_topics)} retry tiers")
    try:
        worker.run(stop)
    finally:
        observer.close()


def register(app: typer.Typer) -> None:
    """Add this stage's commands (the ``deliver`` role and its tools) to ``app``."""
    from mailferry.consumers.dlq_cli import dlq_app

    app.command("deliver")(deliver_cmd)
    app.add_typer(dlq_app, name="dlq")
