"""Loop guard: mail mailferry already delivered must not come round again.

On delivery mailferry prepends its trace header (``X-Mailferry-Trace: tenant=<id>; ...``).
If a message carrying the trace of the same tenant is fetched again (a forwarding rule in
Exchange that points back at a fetched mailbox), delivering it would start a loop. A cap on
``Received`` hops catches loops that do not pass through mailferry itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from mailferry.mail.headers import MessageHeaders

TRACE_HEADER = "X-Mailferry-Trace"
_TENANT = re.compile(r"(?:^|;)\s*tenant=([^;\s]+)", re.IGNORECASE)


def trace_value(*, tenant: str, mailbox_id: str, dedup_key: str, routed_at: datetime) -> str:
    """The value of the trace header added to each delivered copy."""
    return f"tenant={tenant}; mailbox={mailbox_id}; key={dedup_key}; at={routed_at.isoformat()}"


def traced_tenants(headers: MessageHeaders) -> set[str]:
    tenants = set()
    for value in headers.get_all(TRACE_HEADER):
        match = _TENANT.search(value)
        if match:
            tenants.add(match.group(1))
    return tenants


@dataclass(frozen=True)
class LoopVerdict:
    reason_code: str  # loop-trace | too-many-hops
    message: str


def check_loop(headers: MessageHeaders, tenant: str, max_received_hops: int) -> LoopVerdict | None:
    """Why this message must not be delivered again, or None when it may."""
    if tenant in traced_tenants(headers):
        return LoopVerdict("loop-trace", f"already carries {TRACE_HEADER} for tenant {tenant}")
    hops = headers.count("Received")
    if hops > max_received_hops:
        return LoopVerdict("too-many-hops", f"{hops} Received headers, more than {max_received_hops}")
    return None
