"""``mailferry config validate FILE``."""

from __future__ import annotations

from pathlib import Path

import typer

from mailferry.cli.output import cli_errors, console
from mailferry.config.loader import validate_file

app = typer.Typer(help="Configuration files.", no_args_is_help=True)


@app.command()
@cli_errors
def validate(
    file: Path = typer.Argument(..., help="the TOML file to check"),
    check_secrets: bool = typer.Option(True, help="also check that every env:/file: secret can be read here"),
) -> None:
    """Print every problem with file, line and field; exit non-zero when there is one."""
    config = validate_file(file, check_secrets=check_secrets)
    sources = sum(len(t.sources) for t in config.tenants)
    console.print(f"{file}: valid ({len(config.tenants)} tenants, {sources} sources)", highlight=False)
