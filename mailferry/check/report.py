"""What a check found, and its verdict; pure, so the CLI's table and ``--json`` say the same."""

from __future__ import annotations

import ssl
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

WANTED_CAPABILITIES = ("PIPELINING", "UIDL", "IDLE", "MOVE")


@dataclass
class TlsInfo:
    version: str
    subject: str
    issuer: str
    expires: str
    days_left: int


@dataclass
class CheckReport:
    name: str
    kind: str
    ok: bool = False
    steps: list[str] = field(default_factory=list)
    tls: TlsInfo | None = None
    authenticated: bool = False
    capabilities: dict[str, bool] = field(default_factory=dict)
    messages: int | None = None
    size: int | None = None
    error: str | None = None

    @property
    def verdict(self) -> str:
        return "OK" if self.ok else f"FAILED: {self.error or 'unknown'}"

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {"verdict": self.verdict}


def _name(parts: Any) -> str:
    """``(('commonName', 'x'),), ...`` as ``CN=x, O=y``: how administrators read certificates."""
    short = {"commonName": "CN", "organizationName": "O", "countryName": "C", "organizationalUnitName": "OU"}
    return ", ".join(f"{short.get(k, k)}={v}" for rdn in parts or () for k, v in rdn)


def tls_info(sock: object, now: datetime | None = None) -> TlsInfo | None:
    """TLS version and the verified peer certificate of ``sock``; None for a clear connection."""
    if not isinstance(sock, ssl.SSLSocket):
        return None
    cert = sock.getpeercert() or {}
    expires = datetime.fromtimestamp(ssl.cert_time_to_seconds(str(cert["notAfter"])), UTC)
    left = expires - (now or datetime.now(UTC))
    return TlsInfo(
        version=sock.version() or "?",
        subject=_name(cert.get("subject")),
        issuer=_name(cert.get("issuer")),
        expires=expires.isoformat(),
        days_left=left.days,
    )


def capability_flags(offered: set[str]) -> dict[str, bool]:
    upper = {c.upper().split("=")[0] for c in offered}
    return {name: name in upper for name in WANTED_CAPABILITIES}
