"""Console output and the one place CLI errors turn into exit codes."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import IO, Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from mailferry.errors import ConfigError, MailferryError


def _width(stream: IO[str]) -> int | None:
    """Rich's width on a terminal; when piped, lines as long as they are (rich would hard-wrap at
    80 columns, breaking every table row a script greps)."""
    return None if stream.isatty() else 100_000


console = Console(width=_width(sys.stdout))
err_console = Console(stderr=True, width=_width(sys.stderr))

P = ParamSpec("P")
R = TypeVar("R")


@contextmanager
def reported_errors() -> Iterator[None]:
    """Print a mailferry error as a person would want to read it, then exit non-zero."""
    try:
        yield
    except ConfigError as exc:
        for problem in exc.problems:
            err_console.print(problem, markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except MailferryError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def print_json(document: dict[str, Any]) -> None:
    """The one ``--json`` shape of every command: exactly one JSON object on stdout, its lists
    under plural keys, times as ISO 8601 strings."""
    print(json.dumps(document, default=str, indent=2))


def cli_errors(func: Callable[P, R]) -> Callable[P, R]:
    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with reported_errors():
            return func(*args, **kwargs)

    return wrapper
