"""Console output and the one place CLI errors turn into exit codes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

from mailferry.errors import ConfigError, MailferryError

console = Console()
err_console = Console(stderr=True)

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


def cli_errors(func: Callable[P, R]) -> Callable[P, R]:
    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with reported_errors():
            return func(*args, **kwargs)

    return wrapper
