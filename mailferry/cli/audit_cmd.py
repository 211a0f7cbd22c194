"""``mailferry audit trace|index|export``."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import typer

from mailferry.cli.context import CliContext
from mailferry.cli.output import cli_errors, console, err_console
from mailferry.cli.times import as_utc

if TYPE_CHECKING:
    from rich.table import Table

    from mailferry.audit import ReadEvent

app = typer.Typer(help="The audit trail kept in the audit topic.", no_args_is_help=True)


class ExportFormat(StrEnum):
    jsonl = "jsonl"
    csv = "csv"


@app.command("trace")
@cli_errors
def trace_cmd(
    ctx: typer.Context,
    message: str = typer.Argument(..., help="a Message-ID (with or without <>), dedup key, hash or id"),
    tenant: str | None = typer.Option(None, "--tenant", "-t"),
    since: datetime | None = typer.Option(
        None, "--since", help="without an index, scan from this time (UTC if no zone)"
    ),
    as_json: bool = typer.Option(False, "--json", help="one JSON object, for machines"),
) -> None:
    """Every event of one message: fetched where, routed to whom and why, delivered when.

    Asks the audit index (local file, else the configured replicas); without one, scans
    the audit topic from --since (default: the configured scan window).
    """
    from mailferry.audit_index.access import open_index
    from mailferry.audit_trace import trace_message
    from mailferry.kafka.topics import AUDIT, full_name

    cli: CliContext = ctx.obj
    config = cli.config
    index = open_index(config.audit_index_dir, config.audit_index.urls, full_name(config.kafka, AUDIT))
    if index is None and since is None:
        since = datetime.now(UTC) - config.audit_index.scan_window
    result = trace_message(
        config.kafka,
        cli.bootstrap_servers(),
        message,
        tenant=tenant,
        since=as_utc(since) if since else None,
        index=index,
    )
    if as_json:
        print(
            json.dumps(
                {"message": message, "via": result.via, "notes": result.notes, "events": result.events},
                default=str,
                indent=2,
            )
        )
        return
    for note in result.notes:
        err_console.print(note, highlight=False, markup=False)
    if not result.events:
        console.print(f"no audit events for {message}", highlight=False, markup=False)
        raise typer.Exit(1)
    console.print(trace_table(message, result.events))


def trace_table(message: str, events: list[ReadEvent]) -> Table:
    from rich.table import Table

    table = Table(title=f"audit trace of {message}", show_lines=False)
    for column in ("at", "stage", "event", "tenant/mailbox", "recipient", "details"):
        table.add_column(column, overflow="fold")
    for event in events:
        details = ", ".join(f"{k}={v}" for k, v in sorted(event["details"].items()))
        table.add_row(
            event["at"].strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            event["stage"],
            event["event"],
            f"{event['tenant']}/{event['mailbox_id'] or '-'}",
            event["recipient"] or "-",
            details,
        )
    return table


@app.command("index")
@cli_errors
def index_cmd(
    ctx: typer.Context,
    port: int | None = typer.Option(None, help="answer lookups over HTTP here (default: config)"),
) -> None:
    """The audit index role: keeps an index of the audit topic for fast traces.

    Its folder (audit_index.path) can be deleted at any time: the next start rebuilds it
    from the retained topic. SIGTERM or Ctrl-C stops it; what it committed stays.
    """
    from mailferry.audit_index.indexer import Indexer
    from mailferry.audit_index.server import serve
    from mailferry.audit_index.store import IndexStore
    from mailferry.kafka.topics import AUDIT, full_name
    from mailferry.observe import health
    from mailferry.observe.server import observe

    logging.basicConfig(  # a no-op when the global --log-level already set the log up
        level=logging.WARNING,
        format="%(asctime)s audit-index %(levelname)s %(name)s: %(message)s",
    )
    cli: CliContext = ctx.obj
    config = cli.config
    topic = full_name(config.kafka, AUDIT)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, request_stop)
    store = IndexStore(config.audit_index_dir, topic=topic)
    indexer = Indexer(
        config.kafka,
        cli.bootstrap_servers(),
        topic,
        store,
        purge_interval=config.audit_index.purge_interval.total_seconds(),
    )
    listen = port if port is not None else config.audit_index.port
    server = (
        serve(config.audit_index_dir, topic, config.audit_index.host, listen) if listen is not None else None
    )
    where = f"; lookups on http://{config.audit_index.host}:{server.server_port}" if server else ""
    console.print(f"indexing {topic} into {store.path}{where}", highlight=False, markup=False)
    observer = observe(config, "audit-index", cli.bootstrap_servers())

    def stepped(_: object) -> None:
        health.beat()
        health.ready()

    try:
        indexer.run(stop, on_step=stepped)
    finally:
        observer.close()
        if server is not None:
            server.shutdown()
        indexer.close()
        store.close()


@app.command("export")
@cli_errors
def export_cmd(
    ctx: typer.Context,
    since: datetime = typer.Option(..., "--from", help="start of the range (ISO time, UTC if no zone)"),
    until: datetime = typer.Option(..., "--to", help="end of the range, exclusive"),
    tenant: str | None = typer.Option(None, "--tenant", "-t"),
    fmt: ExportFormat = typer.Option(ExportFormat.jsonl, "--format"),
    output: Path | None = typer.Option(None, "--output", "-o", help="file to write (default: stdout)"),
) -> None:
    """A time range of the audit topic for compliance archives (columns in docs/audit.md)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from mailferry.audit_export import export_events

    cli: CliContext = ctx.obj
    out = output.open("w", encoding="utf-8", newline="") if output else sys.stdout
    with Progress(
        TextColumn("exporting"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} records"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        task = progress.add_task("export", total=None)
        try:
            written = export_events(
                cli.config.kafka,
                cli.bootstrap_servers(),
                out,
                since=as_utc(since),
                until=as_utc(until),
                tenant=tenant,
                fmt="csv" if fmt is ExportFormat.csv else "jsonl",
                on_total=lambda n: progress.update(task, total=n),
                on_record=lambda: progress.advance(task),
            )
        finally:
            if output:
                out.close()
    err_console.print(f"exported {written} events", highlight=False)
