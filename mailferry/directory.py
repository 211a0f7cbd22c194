"""The directory interface recipient resolution asks: is this address a mailbox, and which?

The stream app depends only on this protocol; the EWS target provides one backed by
ResolveNames, Graph another. Both answer with the *primary* SMTP address, since
impersonating an alias fails.
"""

from __future__ import annotations

from typing import Protocol


class Directory(Protocol):
    def lookup(self, address: str) -> str | None:
        """Primary SMTP address of the mailbox ``address`` reaches, or None when none does.

        Raises ``TransientError`` when the directory cannot be asked right now.
        """
        ...


class StaticDirectory:
    """A directory from a fixed mapping (tests, and tenants without a live directory)."""

    def __init__(self, entries: dict[str, str]) -> None:
        self._entries = {k.lower(): v for k, v in entries.items()}

    def lookup(self, address: str) -> str | None:
        return self._entries.get(address.lower())
