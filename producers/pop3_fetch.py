"""One POP3 pass: list, fetch what is new, publish, and only then delete at the source.

``plan_pop3`` is the pure decision (what to fetch, skip, delete, forget); ``pop3_pass`` does
the I/O. POP3 applies deletions only when the server acknowledges QUIT, so a dropped
connection after DELE deletes nothing and the next pass simply deletes again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from mailferry.config.sources import OAuth2ClientCredentials, OAuth2Command, PasswordAuth, Pop3Source
from mailferry.errors import CredentialsError
from mailferry.mail.message_id import normalise_message_id
from mailferry.producers.access import (
    TokenProvider,
    check_plaintext,
    classify,
    sasl_response,
    tls_context,
)
from mailferry.producers.context import FetchContext, PassResult
from mailferry.producers.ingest import ingest, message_id
from mailferry.producers.pop3_client import Pop3Client
from mailferry.producers.pop3_wire import Pop3ErrorReply, parse_list, parse_uidl
from mailferry.producers.publish import Batch
from mailferry.producers.state import MailboxState, pop3_key, state_record
from mailferry.rawrecord import RawSource
from mailferry.schemas.records import FetchState

DEFAULT_PORTS = {"implicit": 995, "starttls": 110, "none": 110}
_TEMPORARY_CODES = {"SYS/TEMP", "IN-USE", "LOGIN-DELAY"}


@dataclass(frozen=True)
class Listed:
    number: int
    uidl: str
    size: int
    listed_size: bool = True  # False: LIST gave no size for this message


@dataclass
class Pop3Plan:
    fetch: list[Listed] = field(default_factory=list)
    headers_only: list[Listed] = field(default_factory=list)
    oversize_skip: list[Listed] = field(default_factory=list)
    delete: list[Listed] = field(default_factory=list)
    forget: list[str] = field(default_factory=list)


def deletion_due(source: Pop3Source, first_seen_at: datetime, now: datetime) -> bool:
    """Whether a message already safe in Kafka should now be deleted at the source."""
    if not source.leave_on_server:
        return True
    return source.delete_after is not None and now - first_seen_at >= source.delete_after


def plan_pop3(
    listing: dict[int, str],
    sizes: dict[int, int],
    known: dict[str, FetchState],
    source: Pop3Source,
    now: datetime,
    *,
    listing_complete: bool = True,
) -> Pop3Plan:
    """Decide the pass from the server's UIDL/LIST and what the fetch state already knows."""
    plan = Pop3Plan()
    cap = source.max_messages_per_pass
    for number in sorted(listing):
        item = Listed(number, listing[number], sizes.get(number, 0), number in sizes)
        entry = known.get(item.uidl)
        if entry is not None and not same_message(entry, item):
            entry = None  # the server gave a known UIDL to another message: that one is new
        if entry is None:
            if cap is not None and len(plan.fetch) + len(plan.headers_only) >= cap:
                continue
            if source.max_message_size is not None and item.size > source.max_message_size:
                if source.oversize_action == "headers-notice":
                    plan.headers_only.append(item)
                else:
                    plan.oversize_skip.append(item)
            else:
                plan.fetch.append(item)
        elif entry["status"] in ("fetched", "deleted") and deletion_due(source, entry["first_seen_at"], now):
            plan.delete.append(item)
    if listing_complete:
        present = set(listing.values())
        plan.forget = [uidl for uidl in known if uidl not in present]
    return plan


def same_message(entry: FetchState, item: Listed) -> bool:
    """Whether the listed message is the one the fetch state knows under its UIDL.

    RFC 1939 forbids reusing a UIDL, yet servers that derive it from a counter or a file name
    do after a mailbox is rebuilt. A message is therefore known by its UIDL *and* its size as
    LIST gave it when fetched: a reused UIDL on a message of another size is fetched as new,
    never deleted or skipped unseen. State written before sizes were kept (``size`` null), or
    a LIST without this message, falls back to the UIDL alone; a reused UIDL on a message of
    exactly the same size is the case this cannot tell apart (deleting such a message unseen
    would need its content compared, a ``TOP`` per message on every pass).
    """
    return entry.get("size") is None or not item.listed_size or entry["size"] == item.size


def _connect(source: Pop3Source, ctx: FetchContext) -> Pop3Client:
    return open_session(source, ctx.tokens)


def open_session(source: Pop3Source, tokens: TokenProvider) -> Pop3Client:
    """Connected and logged in (``mailferry check`` opens the same session as a fetch)."""
    port = source.port or DEFAULT_PORTS[source.tls]
    client = Pop3Client.connect(
        source.host,
        port,
        tls=source.tls,
        context=tls_context(source),
        timeout=source.timeout.total_seconds(),
    )
    try:
        auth = source.auth
        if isinstance(auth, PasswordAuth):
            if auth.apop:
                client.login_apop(source.username, auth.password.reveal())
            else:
                check_plaintext(source, client.secure)
                client.login_user(source.username, auth.password.reveal())
        else:
            assert isinstance(auth, OAuth2ClientCredentials | OAuth2Command)
            mechanism, response = sasl_response(source, tokens, port)
            client.login_sasl(mechanism, response)
    except Pop3ErrorReply as exc:
        client.close()
        if exc.code in _TEMPORARY_CODES:
            raise classify(exc, source.id) from exc
        raise CredentialsError(f"source {source.id}: login refused: {exc}") from exc
    except BaseException:
        client.close()
        raise
    return client


def pop3_pass(source: Pop3Source, tenant: str, state: MailboxState, ctx: FetchContext) -> PassResult:
    """Run one pass; raises a ``MailferryError`` (classified) when the session fails."""
    try:
        return _pass(source, tenant, state, ctx)
    except Exception as exc:
        raise classify(exc, source.id) from exc


def _pass(source: Pop3Source, tenant: str, state: MailboxState, ctx: FetchContext) -> PassResult:
    result = PassResult()
    now = ctx.now()
    client = _connect(source, ctx)
    try:
        listing, problems = parse_uidl(client.uidl())
        sizes = parse_list(client.list())
        plan = plan_pop3(listing, sizes, state.pop3(), source, now, listing_complete=not problems)
        batch = ctx.publisher.batch(state)
        for problem in problems:
            batch.audit(
                "error", details={"reason": "malformed-uidl", "line": problem.line, "why": problem.reason}
            )
            result.errors += 1
        for item in plan.oversize_skip:
            _skip(batch, source, tenant, item, now, "oversize")
            result.skipped += 1
        try:
            _fetch(client, batch, source, tenant, plan, now, ctx, result)
        finally:
            batch.confirm(ctx.confirm_timeout)
        doomed, renamed = _still_the_same(client, _doomed(source, tenant, state, ctx, plan, now), plan, state)
        if doomed:
            client.delete(item.number for item in doomed)
        client.quit()
    except BaseException:
        client.close()
        raise
    after = ctx.publisher.batch(state)
    known = state.pop3()
    for item in doomed:
        entry = known.get(item.uidl)
        if entry is None:
            continue
        after.state(
            pop3_key(tenant, source.id, item.uidl),
            {**entry, "status": "deleted", "updated_at": now},
        )
        after.audit(
            "source-deleted", message_id=entry["detail"], sha256=entry["sha256"], details={"uid": item.uidl}
        )
        result.deleted += 1
    for item in renamed:
        after.audit(
            "error",
            details={"reason": "uidl-reused", "uid": item.uidl, "action": "fetched as new on the next pass"},
        )
        result.errors += 1
    for uidl in plan.forget + [item.uidl for item in renamed]:
        after.state(pop3_key(tenant, source.id, uidl), None)
    after.confirm(ctx.confirm_timeout)
    return result


def _still_the_same(
    client: Pop3Client, doomed: list[Listed], plan: Pop3Plan, state: MailboxState
) -> tuple[list[Listed], list[Listed]]:
    """(what may be deleted, what turned out to be another message under a reused UIDL).

    A message fetched in an earlier session is deleted only if its headers (``TOP n 0``)
    still carry the Message-ID it had when fetched: this catches a reused UIDL on a message of
    the same size, which the size check of the plan cannot. Messages fetched in this session,
    messages without a Message-ID and servers without ``TOP`` are taken as they are.
    """
    if "TOP" not in client.capabilities:
        return doomed, []
    earlier = {item.uidl for item in plan.delete}
    known = state.pop3()
    keep: list[Listed] = []
    renamed: list[Listed] = []
    for item in doomed:
        entry = known.get(item.uidl)
        if item.uidl not in earlier or entry is None or entry["detail"] is None:
            keep.append(item)
            continue
        found, _ = message_id(client.top(item.number, 0))
        same = found == normalise_message_id(entry["detail"])
        (keep if same else renamed).append(item)
    return keep, renamed


def _doomed(
    source: Pop3Source, tenant: str, state: MailboxState, ctx: FetchContext, plan: Pop3Plan, now: datetime
) -> list[Listed]:
    """What to delete at the end of the pass: by default whatever Kafka holds and is due; with
    ``delete_when = "delivered"`` only messages of earlier passes delivered to every recipient."""
    if source.delete_when != "delivered":
        return plan.delete + [item for item in plan.fetch if deletion_due(source, now, now)]
    known = state.pop3()
    entries = {item.uidl: known[item.uidl] for item in plan.delete if item.uidl in known}
    delivered = set(ctx.delivered(tenant, source.id, entries))
    return [item for item in plan.delete if item.uidl in delivered]


def _remember(
    batch: Batch,
    source: Pop3Source,
    tenant: str,
    item: Listed,
    now: datetime,
    status: str,
    *,
    detail: str | None,
    sha256: str | None = None,
) -> None:
    """The fetch-state record of a listed message, with the size that tells a reused UIDL apart."""
    batch.state(
        pop3_key(tenant, source.id, item.uidl),
        state_record(
            tenant,
            source.id,
            status,
            first_seen_at=now,
            uidl=item.uidl,
            sha256=sha256,
            detail=detail,
            size=item.size if item.listed_size else None,
        ),
    )


def _skip(batch: Batch, source: Pop3Source, tenant: str, item: Listed, now: datetime, reason: str) -> None:
    batch.audit("skipped", details={"reason": reason, "uid": item.uidl, "size": str(item.size)})
    _remember(batch, source, tenant, item, now, "skipped", detail=reason)


def _fetch(
    client: Pop3Client,
    batch: Batch,
    source: Pop3Source,
    tenant: str,
    plan: Pop3Plan,
    now: datetime,
    ctx: FetchContext,
    result: PassResult,
) -> None:
    by_number = {item.number: item for item in plan.fetch}
    for number, chunks in client.retrieve(by_number):
        item = by_number[number]
        raw = RawSource(tenant, source.id, "pop3", None, item.uidl)
        message = b"".join(chunks) if item.size <= ctx.inline_threshold else chunks
        done = ingest(batch, raw, message, blobs=ctx.blobs, inline_threshold=ctx.inline_threshold)
        _remember(
            batch, source, tenant, item, now, "fetched", detail=done.message_id, sha256=done.record["sha256"]
        )
        result.fetched += 1
        result.bytes += done.record["size"]
    for item in plan.headers_only:
        head = client.top(item.number, 0)
        raw = RawSource(tenant, source.id, "pop3", None, item.uidl)
        done = ingest(
            batch, raw, head, blobs=ctx.blobs, inline_threshold=ctx.inline_threshold, headers_only=True
        )
        batch.audit(
            "skipped",
            message_id=done.message_id,
            details={"reason": "oversize-headers-notice", "uid": item.uidl, "size": str(item.size)},
        )
        _remember(
            batch, source, tenant, item, now, "skipped", detail="headers-notice", sha256=done.record["sha256"]
        )
        result.skipped += 1
