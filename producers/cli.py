"""The ``mailferry`` commands of this stage, registered on the main app."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from pathlib import Path

import typer

from mailferry.cli.context import CliContext
from mailferry.cli.output import cli_errors, console

mailboxes_app = typer.Typer(help="The mailbox configs fetch workers poll.", no_args_is_help=True)


@mailboxes_app.command("sync")
@cli_errors
def sync_cmd(
    ctx: typer.Context,
    config: Path | None = typer.Argument(None, help="config file (default: the global -c)"),
) -> None:
    """Publish every configured source to the compacted mailboxes topic; removed ones get tombstones."""
    from mailferry.producers.mailboxes import sync_mailboxes

    cli: CliContext = ctx.obj
    if config is not None:
        cli = CliContext(config)
    report = sync_mailboxes(cli.config, cli.bootstrap_servers())
    for line in report.lines():
        console.print(line, highlight=False)
    console.print(
        f"{len(report.published)} published, {len(report.unchanged)} unchanged, "
        f"{len(report.removed)} removed",
        highlight=False,
    )


@cli_errors
def fetch_cmd(
    ctx: typer.Context,
    threads: int = typer.Option(64, help="passes running at once in this worker (all tenants)"),
    status_every: float = typer.Option(5.0, help="seconds between status snapshots"),
    processes: int = typer.Option(
        1, min=1, help="worker processes on this host (one per core is the way to use several cores)"
    ),
) -> None:
    """Fetch worker: poll the mailboxes of the partitions Kafka assigns to this process.

    Stops cleanly on SIGTERM/SIGINT: running passes finish (and their deletions are safe),
    then the worker leaves the group so another one takes its mailboxes over. SIGUSR1 makes
    every mailbox waiting for its poll timer start a pass now (``mailferry run`` passes it on).
    """
    cli: CliContext = ctx.obj
    cli.check_secrets()
    if processes > 1:
        _supervise_workers(cli, processes, threads, status_every)
        return
    from mailferry.producers.worker import FetchWorker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from mailferry.observe.server import observe
    from mailferry.producers.worker import group_id

    worker = FetchWorker(cli.config, cli.bootstrap_servers(), threads=threads, status_every=status_every)
    observer = observe(cli.config, "fetch", cli.bootstrap_servers(), group_id(cli.config))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, worker.poll_now)
        await worker.run(stop)

    try:
        asyncio.run(main())
    finally:
        observer.close()


def _supervise_workers(cli: CliContext, processes: int, threads: int, status_every: float) -> None:
    """``--processes N``: N single-process workers, each a member of the one consumer group.

    One Python process is held to one core by its GIL, and a fetch pass is CPU work in
    kafka-python; separate processes are the designed way to scale (the group spreads the
    mailbox partitions over them). A worker that exits is restarted with back-off; SIGTERM or
    SIGINT stops every worker cleanly before this process returns.
    """
    from mailferry.cli.run_cmd import role_argv
    from mailferry.supervisor import Role, Supervisor

    argv = role_argv(cli, f"fetch --threads {threads} --status-every {status_every}")
    roles = [Role(f"fetch-{index}", argv) for index in range(1, processes + 1)]
    supervisor = Supervisor(
        roles, log_dir=cli.config.state_dir / "logs", report=lambda m: console.print(m, highlight=False)
    )
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda _s, _f: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, lambda _s, _f: supervisor.poll_now())
    try:
        supervisor.start()
        while not stop.wait(0.5):
            supervisor.check()
    finally:
        supervisor.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def register(app: typer.Typer) -> None:
    """Add this stage's commands (the ``fetch`` role and its tools) to ``app``."""
    app.add_typer(mailboxes_app, name="mailboxes")
    app.command("fetch")(fetch_cmd)
