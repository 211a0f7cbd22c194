"""``mailferry blobs prune``: delete the blobs no retained record refers to any more."""

from __future__ import annotations

from datetime import UTC, datetime

import typer
from pydantic_core import PydanticCustomError
from rich.table import Table

from mailferry.blob_prune import (
    IN_GRACE,
    ORPHAN,
    REFERENCED,
    REFRESHED,
    LocalSide,
    PruneReport,
    PruneSide,
    S3Side,
    prune,
)
from mailferry.blobs import open_blob_store
from mailferry.cli.context import CliContext
from mailferry.cli.output import cli_errors, console
from mailferry.config.types import parse_duration

app = typer.Typer(help="The blob store that holds messages above the inline threshold.", no_args_is_help=True)

SHOWN_DELETED = 20


@app.command("prune")
@cli_errors
def prune_cmd(
    ctx: typer.Context,
    dry_run: bool = typer.Option(False, "--dry-run", help="report what would go, delete nothing"),
    grace: str = typer.Option(
        "1d", "--grace", help="keep unreferenced blobs touched more recently than this (e.g. 12h, 1d)"
    ),
    show: bool = typer.Option(False, "--show", help="list every deleted blob, not only the first few"),
) -> None:
    """Delete blobs that no record on raw, deliver, deliver.retry.* or deliver.dlt refers to.

    Kinds local and s3; with kind kafka the blobs topic's retention does it.

    Run it daily (cron or a systemd timer): blob lifetime then follows topic retention.
    """
    try:
        grace_period = parse_duration(grace)
    except PydanticCustomError as exc:
        raise typer.BadParameter(str(exc), param_hint="--grace") from None
    if grace_period.total_seconds() < 0:
        raise typer.BadParameter("cannot be negative", param_hint="--grace")
    cli: CliContext = ctx.obj
    config = cli.config
    if config.blob_kind == "kafka":
        console.print(
            "blob store kind kafka: blobs leave the blobs topic with its retention "
            "(longer than raw's and deliver.dlt's); "
            "nothing to prune",
            highlight=False,
        )
        return
    side: PruneSide = LocalSide(config.blob_dir)
    store = None
    if config.blob_kind == "s3":
        from mailferry.blobs.s3 import S3BlobStore

        store = open_blob_store(config)
        assert isinstance(store, S3BlobStore)
        side = S3Side(store)
    try:
        report = prune(
            config.kafka,
            cli.bootstrap_servers(),
            side,
            retry_tiers=len(config.retry.tiers),
            grace=grace_period,
            now=datetime.now(UTC),
            dry_run=dry_run,
        )
    finally:
        if store is not None:
            store.close()
    console.print(summary_table(report))
    console.print(scan_line(report), highlight=False, soft_wrap=True)
    if report.deleted:
        console.print(deleted_table(report, None if show else SHOWN_DELETED))


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


def scan_line(report: PruneReport) -> str:
    return (
        f"{report.records} records read from {len(report.topics)} topics "
        f"({report.unknown_records} of unknown schema skipped), {report.references} blobs referenced"
    )


def summary_table(report: PruneReport) -> Table:
    verb = "would delete" if report.dry_run else "deleted"
    table = Table(
        title=f"blobs prune{' (dry run)' if report.dry_run else ''}",
    )
    table.add_column("blobs")
    table.add_column("count", justify="right")
    table.add_column("bytes", justify="right")
    labels = {
        REFERENCED: "kept: referenced by a retained record",
        IN_GRACE: "kept: unreferenced, within the grace period",
        REFRESHED: "kept: re-put while pruning",
        ORPHAN: f"{verb}: unreferenced and older than the grace period",
    }
    for reason, label in labels.items():
        tally = report.by_reason.get(reason)
        if tally is None and reason == REFRESHED:
            continue
        count, size = (tally.count, tally.size) if tally else (0, 0)
        table.add_row(label, str(count), _size(size))
    table.add_row(f"bytes freed{' (would be)' if report.dry_run else ''}", "", _size(report.bytes_freed))
    return table


def deleted_table(report: PruneReport, limit: int | None) -> Table:
    shown = report.deleted if limit is None else report.deleted[:limit]
    more = len(report.deleted) - len(shown)
    table = Table(
        title="would delete" if report.dry_run else "deleted",
        caption=f"and {more} more (--show lists all)" if more else None,
    )
    table.add_column("blob", overflow="fold")
    table.add_column("size", justify="right")
    table.add_column("last touched (UTC)")
    for blob in shown:
        touched = datetime.fromtimestamp(blob.mtime, UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(blob.reference, _size(blob.size), touched)
    return table
