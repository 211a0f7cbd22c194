"""How the CLI reads a time typed on the command line."""

from __future__ import annotations

from datetime import UTC, datetime


def as_utc(moment: datetime) -> datetime:
    """A time typed without a zone is UTC, as every help text says (not the machine's zone, which
    would make the same command select a different range on another host)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
