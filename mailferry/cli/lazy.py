"""Commands whose module is imported only when that command runs (or help lists them).

Every command of ``mailferry`` lives in its own module, and several of them pull in heavy
libraries (the Kafka admin client, YAML, the console's web stack, the stages' Faust and
exchangelib code). Importing them all before parsing the command line costs a second of
start-up on a loaded machine: ``mailferry audit trace`` has to answer in under one second
*including* its start-up, so the top-level group resolves a command name to its module on
demand. Typer builds each command from its module exactly as an eager ``add_typer`` /
``command`` would, so options, help and ``ctx.obj`` behave the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any, ClassVar

import typer
from typer.core import TyperGroup
from typer.main import get_group


@dataclass(frozen=True)
class Lazy:
    """Where a command lives: ``module:attribute``, and what the attribute is.

    ``group``: a ``typer.Typer`` of subcommands (``add_typer``); ``command``: one function
    (``app.command(name)``); ``register``: a stage's ``register(app)`` that adds this name.
    """

    module: str
    attribute: str
    kind: str = "group"

    def load(self, name: str) -> Any:
        found = getattr(import_module(self.module), self.attribute)
        if self.kind == "group":
            group = get_group(found)
            group.name = name
            return group
        holder = typer.Typer()
        if self.kind == "command":
            holder.command(name)(found)
        else:
            found(holder)
        return get_group(holder).commands[name]


class LazyGroup(TyperGroup):
    """A ``TyperGroup`` that adds the commands in ``LAZY`` when they are first asked for."""

    LAZY: ClassVar[dict[str, Lazy]] = {}

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *(n for n in self.LAZY if n not in self.commands)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in self.LAZY:
            self.add_command(self.LAZY[cmd_name].load(cmd_name), cmd_name)
        return super().get_command(ctx, cmd_name)


def lazy_group(commands: dict[str, Lazy]) -> type[LazyGroup]:
    """A ``LazyGroup`` class for ``typer.Typer(cls=...)`` that knows ``commands``."""
    return type("MailferryGroup", (LazyGroup,), {"LAZY": commands})
