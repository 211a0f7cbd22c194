"""``mailferry status``."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from mailferry.cli.context import CliContext
from mailferry.cli.output import cli_errors, console
from mailferry.status import consumer_lag, read_snapshots


@cli_errors
def status_cmd(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """Per mailbox the last poll, counts and last error; paused tenants; consumer lag."""
    cli: CliContext = ctx.obj
    config = cli.config
    snapshots = read_snapshots(config.state_dir)
    lag = consumer_lag(config.kafka, cli.bootstrap_servers())
    if as_json:
        print(
            json.dumps(
                {"roles": snapshots, "lag": [entry.__dict__ | {"lag": entry.lag} for entry in lag]},
                default=str,
                indent=2,
            )
        )
        return
    mailboxes = Table(title="mailboxes")
    for column in ("tenant/mailbox", "last poll", "fetched", "deleted", "errors", "last error", "state"):
        mailboxes.add_column(column, overflow="fold")
    paused: list[str] = []
    for snapshot in snapshots:
        if not snapshot["alive"]:
            continue
        for name, box in sorted(snapshot.get("mailboxes", {}).items()):
            mailboxes.add_row(
                name,
                str(box.get("last_poll") or "-"),
                str(box.get("fetched", 0)),
                str(box.get("deleted", 0)),
                str(box.get("errors", 0)),
                str(box.get("last_error") or "-"),
                str(box.get("state", "-")),
            )
        paused += [f"{t}: {why}" for t, why in sorted(snapshot.get("paused_tenants", {}).items())]
    console.print(mailboxes)
    console.print("paused tenants: " + ("; ".join(paused) if paused else "none"), highlight=False)
    table = Table(title="consumer lag")
    for column in ("group", "topic", "committed", "end", "lag"):
        table.add_column(column)
    for entry in lag:
        table.add_row(entry.group, entry.topic, str(entry.committed), str(entry.end), str(entry.lag))
    console.print(table)
