"""One raw record in, its delivery candidates (or the reason it cannot go on) out. No Kafka.

This is the whole per-message decision of the stream app except deduplication, which needs
the table: header parsing, loop guard, recipient resolution, dedup keys and the delivery
records themselves. Keeping it free of Kafka lets the tests and the benchmark run it alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from mailferry.blobs import BlobStore
from mailferry.config.models import MailferryConfig, Tenant
from mailferry.config.sources import Source
from mailferry.delivery_flags import BYPASS_DEDUP
from mailferry.directory import Directory
from mailferry.errors import MalformedMessageError, PermanentError
from mailferry.mail.block import READ_CHUNK, header_block
from mailferry.mail.headers import MessageHeaders, field_defects, parse_headers
from mailferry.mail.message_id import normalise_message_id
from mailferry.schemas.records import Delivery, RawMessage
from mailferry.streams.dedup import dedup_key
from mailferry.streams.fanout import cap_recipients
from mailferry.streams.loopguard import TRACE_HEADER, check_loop, trace_value
from mailferry.streams.resolver import Resolution, resolve

HEADERS_ONLY = "headers-only"
PARSE_DEFECT = "parse-defect:"  # flag prefix: a field that could not be parsed counted as absent
MAX_DEFECT_FLAGS = 20


@dataclass(frozen=True)
class Candidate:
    """One delivery before deduplication."""

    dedup_key: str
    delivery: Delivery
    bypass_dedup: bool


@dataclass(frozen=True)
class Routed:
    candidates: tuple[Candidate, ...]
    resolution: Resolution
    message_id: str | None
    over_cap: tuple[str, ...] = ()  # recipients past the tenant's cap: their copy went to ``fallback``
    fallback: str = ""


@dataclass(frozen=True)
class Rejected:
    """A message that goes to the dead-letter topic instead of any mailbox."""

    error_class: str  # malformed-message | loop | tenant
    reason_code: str
    message: str


DirectoryFor = Callable[[Tenant], Directory | None]


def no_directory(tenant: Tenant) -> Directory | None:
    return None


def _source(tenant: Tenant, mailbox_id: str) -> Source | None:
    for source in tenant.sources:
        if source.id == mailbox_id:
            return source
    return None


def read_headers(raw: RawMessage, blobs: BlobStore) -> MessageHeaders:
    """Headers of a raw record; a blob is read chunk by chunk only up to the blank line."""
    inline = raw["inline"]
    if inline is not None:
        return parse_headers(header_block(bytes(inline)))
    blob_ref = raw["blob_ref"]
    if not blob_ref:
        raise MalformedMessageError("raw record has neither inline bytes nor a blob reference")
    return parse_headers(header_block(blobs.iter_chunks(blob_ref, READ_CHUNK)))


def delivery_id(origin: str, recipient: str) -> str:
    """Stable per (raw record, recipient): reprocessing after a restart yields the same id."""
    return hashlib.sha256(f"{origin}|{recipient}".encode()).hexdigest()[:32]


def route_raw(
    raw: RawMessage,
    *,
    config: MailferryConfig,
    blobs: BlobStore,
    origin: str,
    now: datetime,
    trace_key: bytes,
    directory_for: DirectoryFor = no_directory,
) -> Routed | Rejected:
    """Route one decoded raw record; never raises for a bad message, only for outages.

    ``trace_key`` signs the trace header of each delivery and checks the ones the message
    already carries (``loopguard``)."""
    try:
        tenant = config.tenant(raw["tenant"])
    except KeyError:
        return Rejected("tenant", "unknown-tenant", f"tenant {raw['tenant']!r} is not configured")
    try:
        headers = read_headers(raw, blobs)
    except PermanentError as exc:
        return Rejected("malformed-message", exc.reason_code, exc.message)
    if not headers.fields:
        return Rejected("malformed-message", "no-headers", "no header could be parsed from the message")
    message_id = normalise_message_id(headers.first("Message-ID"))
    loop = check_loop(
        headers, tenant.id, config.stream.max_received_hops, message_id=message_id, key=trace_key
    )
    if loop is not None:
        return Rejected("loop", loop.reason_code, loop.message)
    source = _source(tenant, raw["mailbox_id"])
    resolution = resolve(
        tenant=tenant,
        source=source,
        headers=headers,
        size=raw["size"],
        envelope_recipients=raw["envelope_recipients"],
        directory=directory_for(tenant),
    )
    flags = list(resolution.flags) + ([HEADERS_ONLY] if raw["headers_only"] else [])
    flags += [PARSE_DEFECT + defect for defect in field_defects(headers)[:MAX_DEFECT_FLAGS]]
    if raw["bypass_dedup"]:
        flags.append(BYPASS_DEDUP)
    capped = cap_recipients(
        resolution.recipients, cap=tenant.max_recipients_per_message, default_mailbox=tenant.default_mailbox
    )
    candidates = []
    for recipient in capped.recipients:
        key = dedup_key(tenant.id, recipient.address, message_id, raw["sha256"])
        trace = trace_value(
            tenant=tenant.id,
            mailbox_id=raw["mailbox_id"],
            dedup_key=key,
            routed_at=now,
            message_id=message_id,
            key=trace_key,
        )
        delivery: Delivery = {
            "delivery_id": delivery_id(origin, recipient.address),
            "tenant": tenant.id,
            "recipient": recipient.address,
            "target": raw["target_override"] or recipient.target or tenant.default_target,
            "dedup_key": key,
            "message_id": message_id,
            "mailbox_id": raw["mailbox_id"],
            "size": raw["size"],
            "sha256": raw["sha256"],
            "inline": raw["inline"],
            "blob_ref": raw["blob_ref"],
            "reasons": [{"kind": r.kind, "detail": r.detail} for r in recipient.reasons],
            "flags": flags,
            "add_headers": [
                {"name": name, "value": value}
                for name, value in ((TRACE_HEADER, trace), *resolution.add_headers)
            ],
            "raw_origin": origin,
            "routed_at": now,
        }
        candidates.append(Candidate(key, delivery, raw["bypass_dedup"]))
    return Routed(tuple(candidates), resolution, message_id, capped.over_cap, capped.fallback)
