"""``mailferry status``."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from mailferry.cli.context import CliContext
from mailferry.cli.output import cli_errors, console, print_json
from mailferry.config import MailferryConfig
from mailferry.status import consumer_lag, read_snapshots

NEVER_POLLED = "never polled"


def mailbox_rows(config: MailferryConfig, snapshots: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every configured mailbox, then what live fetch workers reported: a mailbox no worker has
    polled yet is exactly the one an operator needs to see, so it is listed as such."""
    rows: dict[str, dict[str, Any]] = {
        f"{tenant.id}/{source.id}": {"state": NEVER_POLLED}
        for tenant in config.tenants
        for source in tenant.sources
    }
    for snapshot in snapshots:
        if snapshot["alive"]:
            rows.update(snapshot.get("mailboxes", {}))
    return dict(sorted(rows.items()))


def paused_tenants(snapshots: list[dict[str, Any]]) -> dict[str, str]:
    paused: dict[str, str] = {}
    for snapshot in snapshots:
        if snapshot["alive"]:
            paused.update(snapshot.get("paused_tenants", {}))
    return dict(sorted(paused.items()))


@cli_errors
def status_cmd(
    ctx: typer.Context,
    as_json: bool = typer.Option(
        False, "--json", help="one JSON object: {mailboxes, paused_tenants, lag, roles}"
    ),
) -> None:
    """Per mailbox the last poll, counts and last error; paused tenants; consumer lag."""
    cli: CliContext = ctx.obj
    config = cli.config
    snapshots = read_snapshots(config.state_dir)
    lag = consumer_lag(config.kafka, cli.bootstrap_servers())
    boxes = mailbox_rows(config, snapshots)
    paused = paused_tenants(snapshots)
    if as_json:
        print_json(
            {
                "mailboxes": boxes,
                "paused_tenants": paused,
                "lag": [entry.__dict__ | {"lag": entry.lag} for entry in lag],
                "roles": snapshots,
            }
        )
        return
    mailboxes = Table(title="mailboxes")
    for column in ("tenant/mailbox", "last poll", "fetched", "deleted", "errors", "last error", "state"):
        mailboxes.add_column(column, overflow="fold")
    for name, box in boxes.items():
        mailboxes.add_row(
            name,
            str(box.get("last_poll") or "-"),
            str(box.get("fetched", 0)),
            str(box.get("deleted", 0)),
            str(box.get("errors", 0)),
            str(box.get("last_error") or "-"),
            str(box.get("state", "-")),
        )
    console.print(mailboxes)
    shown = "; ".join(f"{tenant}: {why}" for tenant, why in paused.items())
    console.print("paused tenants: " + (shown or "none"), highlight=False)
    table = Table(title="consumer lag")
    for column in ("group", "topic", "committed", "end", "lag"):
        table.add_column(column)
    for entry in lag:
        table.add_row(entry.group, entry.topic, str(entry.committed), str(entry.end), str(entry.lag))
    console.print(table)
