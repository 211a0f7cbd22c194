"""``mailferry audit trace``."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import typer
from rich.table import Table

from mailferry.audit_trace import trace
from mailferry.cli.context import CliContext
from mailferry.cli.output import cli_errors, console

app = typer.Typer(help="The audit trail kept in the audit topic.", no_args_is_help=True)


@app.command("trace")
@cli_errors
def trace_cmd(
    ctx: typer.Context,
    message: str = typer.Argument(..., help="a Message-ID (with or without <>) or a dedup key"),
    tenant: str | None = typer.Option(None, "--tenant", "-t"),
    since: datetime | None = typer.Option(None, "--since", help="only events from this time on"),
    as_json: bool = typer.Option(False, "--json", help="one JSON array, for machines"),
) -> None:
    """Every event of one message: fetched where, routed to whom and why, delivered when."""
    cli: CliContext = ctx.obj
    events = trace(cli.config.kafka, cli.bootstrap_servers(), message, tenant=tenant, since=since)
    if as_json:
        print(json.dumps(events, default=str, indent=2))
        return
    if not events:
        console.print(f"no audit events for {message}", highlight=False)
        raise typer.Exit(1)
    console.print(trace_table(message, events))


def trace_table(message: str, events: list[dict[str, Any]]) -> Table:
    table = Table(title=f"audit trace of {message}", show_lines=False)
    for column in ("at", "stage", "event", "tenant/mailbox", "recipient", "details"):
        table.add_column(column, overflow="fold")
    for event in events:
        details = ", ".join(f"{k}={v}" for k, v in sorted(event["details"].items()))
        table.add_row(
            event["at"].strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            event["stage"],
            event["event"],
            f"{event['tenant']}/{event.get('mailbox_id') or '-'}",
            event.get("recipient") or "-",
            details,
        )
    return table
