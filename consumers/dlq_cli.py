"""``mailferry dlq list|show|requeue|discard``."""

from __future__ import annotations

import json
from datetime import datetime

import typer
from rich.table import Table

from mailferry.cli.context import CliContext
from mailferry.cli.output import cli_errors, console, print_json
from mailferry.cli.times import as_utc
from mailferry.consumers.dlq import DeadLetterEntry, DeadLetterQueue, Filter
from mailferry.errors import ConfigError, NotFoundError

dlq_app = typer.Typer(
    help="Work with the dead-letter topic: list, show, requeue, discard.", no_args_is_help=True
)

TENANT = typer.Option(None, "--tenant", "-t", help="only this tenant")
ERROR_CLASSES = ("permanent", "transient-expired", "tenant", "malformed-message", "loop")


def _known_class(value: str | None) -> str | None:
    if value is not None and value not in ERROR_CLASSES:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(ERROR_CLASSES)}")
    return value


ERROR_CLASS = typer.Option(None, "--error-class", "-e", help=" | ".join(ERROR_CLASSES), callback=_known_class)
SINCE = typer.Option(None, "--from", help="failed at or after (ISO time, UTC if no zone)")
UNTIL = typer.Option(None, "--to", help="failed before (exclusive)")


def _filter(
    ids: list[str] | None,
    tenant: str | None,
    error_class: str | None,
    since: datetime | None,
    until: datetime | None,
    include_done: bool = False,
) -> Filter:
    return Filter(
        ids=frozenset(ids or ()),
        tenant=tenant,
        error_class=error_class,
        since=as_utc(since) if since else None,
        until=as_utc(until) if until else None,
        include_done=include_done,
    )


def _queue(ctx: typer.Context) -> DeadLetterQueue:
    cli: CliContext = ctx.obj
    return DeadLetterQueue(cli.config, cli.bootstrap_servers())


def _table(entries: list[DeadLetterEntry]) -> Table:
    table = Table("id", "failed at", "tenant", "recipient", "class", "reason", "tries", "status")
    for entry in entries:
        row = entry.summary()
        table.add_row(
            row["id"],
            row["failed_at"][:19],
            row["tenant"],
            str(row["recipient"] or "-"),
            row["error_class"],
            row["reason"],
            str(row["attempts"]),
            row["status"],
        )
    return table


@dlq_app.command("list")
@cli_errors
def list_cmd(
    ctx: typer.Context,
    tenant: str | None = TENANT,
    error_class: str | None = ERROR_CLASS,
    since: datetime | None = SINCE,
    until: datetime | None = UNTIL,
    all_states: bool = typer.Option(False, "--all", help="also requeued and discarded ones"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object: {dead_letters: [...]}"),
) -> None:
    """Dead letters (still dead, unless --all), oldest first."""
    entries = _queue(ctx).find(_filter(None, tenant, error_class, since, until, all_states))
    if as_json:
        print_json({"dead_letters": [entry.summary() for entry in entries]})
        return
    if not entries:
        console.print("no dead letters match", highlight=False)
        return
    console.print(_table(entries))
    console.print(f"{len(entries)} dead letters", highlight=False)


@dlq_app.command("show")
@cli_errors
def show_cmd(
    ctx: typer.Context, dead_letter_id: str = typer.Argument(..., help="the id from `dlq list`")
) -> None:
    """Everything about one dead letter (the message bytes only as a size)."""
    entries = _queue(ctx).find(_filter([dead_letter_id], None, None, None, None, True))
    if not entries:
        raise NotFoundError(f"no dead letter with id {dead_letter_id}")
    print(json.dumps(entries[0].shown(), default=str, indent=2))


def _select(
    ctx: typer.Context,
    ids: list[str] | None,
    tenant: str | None,
    error_class: str | None,
    since: datetime | None,
    until: datetime | None,
) -> tuple[DeadLetterQueue, list[DeadLetterEntry]]:
    wanted = _filter(ids, tenant, error_class, since, until)
    if not wanted.narrowed:
        raise ConfigError("name dead letters by id, or narrow with --tenant, --error-class, --from or --to")
    queue = _queue(ctx)
    entries = queue.find(wanted)
    missing = wanted.ids - {e.id for e in entries}
    if missing:
        raise NotFoundError(f"no dead letter with id {', '.join(sorted(missing))}")
    return queue, entries


@dlq_app.command("requeue")
@cli_errors
def requeue_cmd(
    ctx: typer.Context,
    ids: list[str] | None = typer.Argument(None, help="dead letter ids (or use the filters)"),
    tenant: str | None = TENANT,
    error_class: str | None = ERROR_CLASS,
    since: datetime | None = SINCE,
    until: datetime | None = UNTIL,
    target: str | None = typer.Option(None, "--target", help="deliver to this target of the tenant instead"),
    dry_run: bool = typer.Option(False, "--dry-run", help="show what would be requeued"),
) -> None:
    """Put dead letters back on the deliver topic; they start again with fresh attempts."""
    queue, entries = _select(ctx, ids, tenant, error_class, since, until)
    if dry_run:
        console.print(_table(entries))
        console.print(f"would requeue {len(entries)} dead letters", highlight=False)
        return
    count = queue.requeue(entries, target=target)
    console.print(
        f"requeued {count} dead letters" + (f" to target {target}" if target else ""), highlight=False
    )


@dlq_app.command("discard")
@cli_errors
def discard_cmd(
    ctx: typer.Context,
    ids: list[str] | None = typer.Argument(None, help="dead letter ids (or use the filters)"),
    tenant: str | None = TENANT,
    error_class: str | None = ERROR_CLASS,
    since: datetime | None = SINCE,
    until: datetime | None = UNTIL,
    note: str = typer.Option("", "--note", help="why (kept with the state and in the audit)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="show what would be discarded"),
) -> None:
    """Mark dead letters as dealt with; they stay in the DLT but leave `dlq list`."""
    queue, entries = _select(ctx, ids, tenant, error_class, since, until)
    if dry_run:
        console.print(_table(entries))
        console.print(f"would discard {len(entries)} dead letters", highlight=False)
        return
    console.print(f"discarded {queue.discard(entries, note=note)} dead letters", highlight=False)
