"""What a migration found, independent of the format it came from."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_UNSAFE = re.compile(r"[^A-Za-z0-9]+")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]+")


@dataclass
class Migration:
    origin: str
    sources: list[dict[str, Any]] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)
    postmaster: str | None = None
    not_carried: list[str] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)  # variable -> what it holds

    def note(self, where: str, what: str) -> None:
        self.not_carried.append(f"{where}: {what}")

    def add_domain(self, domain: str) -> None:
        domain = domain.strip().lower().rstrip(".")
        if domain and domain not in self.domains:
            self.domains.append(domain)

    def secret(self, host: str, user: str, what: str = "password") -> str:
        """An ``env:`` reference in place of a password; the variable is listed for the operator."""
        name = _UNSAFE.sub("_", f"MAILFERRY_{host}_{user}_{what}").upper().strip("_")
        self.secrets[name] = f"{what} of {user} at {host}"
        return f"env:{name}"

    def source_id(self, host: str, user: str) -> str:
        base = _ID_UNSAFE.sub("-", f"{user}@{host}").strip("-") or "source"
        taken = {s["id"] for s in self.sources}
        candidate, n = base, 2
        while candidate in taken:
            candidate, n = f"{base}-{n}", n + 1
        return candidate
