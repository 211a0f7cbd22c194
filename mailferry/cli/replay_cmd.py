"""``mailferry replay``."""

from __future__ import annotations

from datetime import datetime

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn

from mailferry.cli.context import CliContext
from mailferry.cli.output import cli_errors, console
from mailferry.cli.times import as_utc
from mailferry.replay import replay


@cli_errors
def replay_cmd(
    ctx: typer.Context,
    tenant: str = typer.Option(..., "--tenant", "-t"),
    since: datetime = typer.Option(..., "--from", help="start of the range (ISO time, UTC if no zone)"),
    until: datetime = typer.Option(..., "--to", help="end of the range, exclusive"),
    mailbox: str | None = typer.Option(None, "--mailbox", "-m"),
    bypass_dedup: bool = typer.Option(False, "--bypass-dedup", help="deliver even where delivered before"),
    target: str | None = typer.Option(None, "--target", help="deliver to this target of the tenant"),
    dry_run: bool = typer.Option(False, "--dry-run", help="count what would be replayed, change nothing"),
) -> None:
    """Re-run raw records of a time range through the pipeline (offsets by timestamp)."""
    cli: CliContext = ctx.obj
    since, until = as_utc(since), as_utc(until)
    with Progress(
        SpinnerColumn(), TextColumn("{task.completed} records"), console=console, transient=True
    ) as progress:
        task = progress.add_task("replay", total=None)
        report = replay(
            cli.config,
            cli.bootstrap_servers(),
            tenant=tenant,
            since=since,
            until=until,
            mailbox=mailbox,
            bypass_dedup=bypass_dedup,
            target=target,
            dry_run=dry_run,
            on_record=lambda: progress.advance(task),
        )
    verb = "would replay" if dry_run else "replayed"
    if report.matched == 0:
        console.print(
            f"nothing to replay: no raw records of tenant {tenant}"
            + (f", mailbox {mailbox}" if mailbox else "")
            + f" between {since.isoformat()} and {until.isoformat()}",
            highlight=False,
        )
        return
    console.print(f"{verb} {report.matched} messages ({report.bytes / 1e6:.1f} MB)", highlight=False)
    for name, count in sorted(report.mailboxes.items()):
        console.print(f"  {name}: {count}", highlight=False)
    if report.undecodable:
        console.print(f"skipped {report.undecodable} records that are not raw messages", highlight=False)
