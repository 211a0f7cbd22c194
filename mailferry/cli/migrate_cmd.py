"""``mailferry migrate fetchmailrc|getmailrc``."""

from __future__ import annotations

from pathlib import Path

import typer

from mailferry.cli.output import cli_errors, err_console

app = typer.Typer(help="An existing fetchmail or getmail setup as a mailferry config.", no_args_is_help=True)


def _report(text: str, secrets: dict[str, str], not_carried: list[str]) -> None:
    print(text, end="")
    if secrets:
        err_console.print("set these environment variables (the passwords are not copied):", highlight=False)
        for name, what in sorted(secrets.items()):
            err_console.print(f"  {name}  ({what})", highlight=False, markup=False)
    err_console.print("  MAILFERRY_EWS_PASSWORD  (the target's service account)", highlight=False)
    if not_carried:
        err_console.print(f"{len(not_carried)} settings not carried over: see the comments at the top")


@app.command("fetchmailrc")
@cli_errors
def fetchmailrc_cmd(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, help="a fetchmailrc"),
    tenant: str = typer.Option("migrated", "--tenant", "-t", help="tenant id of the new config"),
    domain: str | None = typer.Option(None, "--domain", help="completes local names without a domain"),
) -> None:
    """Every poll entry as a source: `is user here` personal, multidrop (`to *`) global."""
    from mailferry.migrate.fetchmail_map import read_fetchmailrc
    from mailferry.migrate.render import render

    migration = read_fetchmailrc(path.read_text(encoding="utf-8", errors="replace"), str(path), domain=domain)
    _report(render(migration, tenant=tenant), migration.secrets, migration.not_carried)


@app.command("getmailrc")
@cli_errors
def getmailrc_cmd(
    paths: list[Path] = typer.Argument(
        ..., exists=True, dir_okay=False, help="getmailrc files, one account each"
    ),
    tenant: str = typer.Option("migrated", "--tenant", "-t"),
    domain: str | None = typer.Option(None, "--domain", help="completes user names without a domain"),
) -> None:
    """Every account as a source: Simple* retrievers personal, Multidrop* global."""
    from mailferry.migrate.getmailrc import read_getmailrc
    from mailferry.migrate.model import Migration
    from mailferry.migrate.render import render

    migration = Migration(", ".join(str(p) for p in paths))
    if domain:
        migration.add_domain(domain)
    for path in paths:
        read_getmailrc(
            path.read_text(encoding="utf-8", errors="replace"), str(path), migration, domain=domain
        )
    _report(render(migration, tenant=tenant), migration.secrets, migration.not_carried)
