"""The ``mailferry`` commands of this stage, registered on the main app."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this stage's commands (the ``fetch`` role and its tools) to ``app``."""
