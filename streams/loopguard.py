"""Loop guard: mail mailferry already delivered must not come round again.

On delivery mailferry prepends its trace header
(``X-Mailferry-Trace: tenant=<id>; mailbox=<id>; key=<dedup key>; at=<time>; mac=<hex>``).
If a message carrying the trace of the same tenant is fetched again (a forwarding rule in
Exchange that points back at a fetched mailbox), delivering it would start a loop. A cap on
``Received`` hops catches loops that do not pass through mailferry itself.

The header arrives from the outside like any other, so it is obeyed only when its MAC
verifies: HMAC-SHA256 under the deployment's trace key (``trace_key``) over the header's
fields and the message's normalised Message-ID. Without the key a sender cannot make one;
binding the Message-ID means a genuine header copied from a delivered message (a forward
with full headers) suppresses only copies of that same message, which dedup would drop
anyway. An unsigned or wrongly signed header is ignored: the message is routed as usual.
Fields are compared after collapsing white space, since MTAs refold long headers.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime

from mailferry.mail.headers import MessageHeaders

TRACE_HEADER = "X-Mailferry-Trace"
_MAC = "mac="


def _canonical(fields: str) -> str:
    return ";".join(" ".join(part.split()) for part in fields.split(";"))


def _mac(key: bytes, fields: str, message_id: str | None) -> str:
    data = f"{_canonical(fields)}\n{message_id or ''}".encode("utf-8", "replace")
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def trace_value(
    *,
    tenant: str,
    mailbox_id: str,
    dedup_key: str,
    routed_at: datetime,
    message_id: str | None,
    key: bytes,
) -> str:
    """The value of the trace header added to each delivered copy, signed with ``key``."""
    fields = f"tenant={tenant}; mailbox={mailbox_id}; key={dedup_key}; at={routed_at.isoformat()}"
    return f"{fields}; {_MAC}{_mac(key, fields, message_id)}"


def _field(fields: str, name: str) -> str | None:
    for part in fields.split(";"):
        label, sep, value = part.strip().partition("=")
        if sep and label.lower() == name:
            return value.strip() or None
    return None


def signed_tenant(value: str, message_id: str | None, key: bytes) -> str | None:
    """The tenant a trace header names when its MAC verifies for this message, else None."""
    fields, sep, mac = value.rpartition(";")
    mac = mac.strip()
    if not sep or not mac.lower().startswith(_MAC):
        return None
    given = mac[len(_MAC) :].strip().lower()
    if not hmac.compare_digest(given.encode("ascii", "replace"), _mac(key, fields, message_id).encode()):
        return None
    return _field(fields, "tenant")


def traced_tenants(headers: MessageHeaders, message_id: str | None, key: bytes) -> set[str]:
    """Tenants named by the validly signed trace headers of a message."""
    found = (signed_tenant(value, message_id, key) for value in headers.get_all(TRACE_HEADER))
    return {tenant for tenant in found if tenant}


@dataclass(frozen=True)
class LoopVerdict:
    reason_code: str  # loop-trace | too-many-hops
    message: str


def check_loop(
    headers: MessageHeaders,
    tenant: str,
    max_received_hops: int,
    *,
    message_id: str | None,
    key: bytes,
) -> LoopVerdict | None:
    """Why this message must not be delivered again, or None when it may."""
    if tenant in traced_tenants(headers, message_id, key):
        return LoopVerdict("loop-trace", f"already carries a signed {TRACE_HEADER} for tenant {tenant}")
    hops = headers.count("Received")
    if hops > max_received_hops:
        return LoopVerdict("too-many-hops", f"{hops} Received headers, more than {max_received_hops}")
    return None
