"""``mailferry import mbox|maildir|eml``: historical batches into the pipeline."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from mailferry.batch_sources import BatchProblem
from mailferry.cli.context import CliContext
from mailferry.cli.output import cli_errors, console
from mailferry.importer import BatchKind, ImportReport, import_batch

app = typer.Typer(help="Load historical mail into mailferry.raw (resumable).", no_args_is_help=True)

TENANT = typer.Option(..., "--tenant", "-t", help="the tenant the mail belongs to")
MAILBOX = typer.Option(..., "--mailbox", "-m", help="a configured source id: its mode decides routing")
ENVELOPE = typer.Option(None, "--envelope-to", help="known recipient(s); used before any header")
RESTART = typer.Option(False, "--restart", help="forget the checkpoint and import from the start")


def _total(kind: BatchKind, paths: list[Path]) -> int:
    if kind == "mbox":
        return sum(p.stat().st_size for p in paths if p.is_file())
    files = [f for p in paths for f in (p.rglob("*") if p.is_dir() else [p]) if f.is_file()]
    return sum(f.stat().st_size for f in files)


def _run(
    ctx: typer.Context,
    kind: BatchKind,
    paths: list[Path],
    tenant: str,
    mailbox: str,
    envelope_to: list[str] | None,
    restart: bool,
) -> None:
    cli: CliContext = ctx.obj
    servers = cli.bootstrap_servers()
    columns = (TextColumn("importing"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("import", total=_total(kind, paths))
        report = import_batch(
            kind,
            paths,
            tenant=tenant,
            mailbox=mailbox,
            config=cli.config,
            servers=servers,
            envelope_to=envelope_to,
            restart=restart,
            on_message=lambda size: progress.advance(task, size),
        )
    _print_report(report)
    if report.problems:
        raise typer.Exit(1)


def _print_report(report: ImportReport) -> None:
    if report.resumed_from is not None:
        console.print(f"resumed after {report.resumed_from} (a previous run's checkpoint)", highlight=False)
    console.print(
        f"imported {report.imported} messages, {report.bytes / 1e6:.1f} MB, in {report.records} raw records",
        highlight=False,
    )
    for warning in report.warnings:
        console.print(f"warning: {warning}", highlight=False)
    problem: BatchProblem
    for problem in report.problems:
        console.print(f"not imported: {problem.position}: {problem.reason}", highlight=False)


@app.command()
@cli_errors
def mbox(
    ctx: typer.Context,
    path: Path,
    tenant: str = TENANT,
    mailbox: str = MAILBOX,
    envelope_to: list[str] | None = ENVELOPE,
    restart: bool = RESTART,
) -> None:
    """An mbox file (mboxo/mboxrd; damaged files are read as far as they make sense)."""
    _run(ctx, "mbox", [path], tenant, mailbox, envelope_to, restart)


@app.command()
@cli_errors
def maildir(
    ctx: typer.Context,
    path: Path,
    tenant: str = TENANT,
    mailbox: str = MAILBOX,
    envelope_to: list[str] | None = ENVELOPE,
    restart: bool = RESTART,
) -> None:
    """A Maildir folder (cur/ and new/); unreadable files are listed, the rest imported."""
    _run(ctx, "maildir", [path], tenant, mailbox, envelope_to, restart)


@app.command()
@cli_errors
def eml(
    ctx: typer.Context,
    paths: list[Path],
    tenant: str = TENANT,
    mailbox: str = MAILBOX,
    envelope_to: list[str] | None = ENVELOPE,
    restart: bool = RESTART,
) -> None:
    """One or more .eml files, or folders of them."""
    _run(ctx, "eml", paths, tenant, mailbox, envelope_to, restart)
