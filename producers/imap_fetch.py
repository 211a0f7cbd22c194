"""One IMAP pass: per folder, fetch UIDs above the cursor, publish, then apply the after-fetch action.

A UIDVALIDITY change (the server renumbered the folder, e.g. after a restore) is detected by
comparing with the cursor in the fetch state. The folder is then read again in full, but a
message whose SHA-256 is already known from the old numbering is not published again: only
its state moves to the new numbering. Nothing is refetched into the pipeline silently.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from mailferry.config.sources import ImapSource
from mailferry.producers.access import classify
from mailferry.producers.context import FetchContext, PassResult
from mailferry.producers.imap_session import ImapSession, uid_set
from mailferry.producers.ingest import prepare, publish
from mailferry.producers.publish import Batch
from mailferry.producers.state import CURSOR, MailboxState, cursor_key, imap_key, state_record
from mailferry.rawrecord import RawSource
from mailferry.schemas.records import FetchState

log = logging.getLogger(__name__)
GROUP_BYTES = 8 * 1024 * 1024
MISSING = "missing"
SIZE_MISMATCH = "size-mismatch"


@dataclass(frozen=True)
class Step:
    uid: int
    size: int | None  # RFC822.SIZE as announced; None when the server announced none
    action: str  # fetch | stream | headers | skip


def plan_folder(
    uids: list[int], sizes: dict[int, int], source: ImapSource, inline_threshold: int
) -> list[Step]:
    """The new messages of a folder in UID order: how to take each, within the per-pass cap."""
    steps: list[Step] = []
    for uid in sorted(uids):
        if source.max_messages_per_pass is not None and len(steps) >= source.max_messages_per_pass:
            break
        size = sizes.get(uid)
        if source.max_message_size is not None and (size or 0) > source.max_message_size:
            action = "headers" if source.oversize_action == "headers-notice" else "skip"
        else:
            action = "stream" if (size or 0) > inline_threshold else "fetch"
        steps.append(Step(uid, size, action))
    return steps


def imap_pass(source: ImapSource, tenant: str, state: MailboxState, ctx: FetchContext) -> PassResult:
    """Run one pass over every folder; raises a classified ``MailferryError`` on failure."""
    try:
        session = ImapSession(source, ctx.tokens)
    except Exception as exc:
        raise classify(exc, source.id) from exc
    try:
        result = PassResult()
        for folder in source.folders:
            result.add(FolderPass(session, folder, tenant, state, ctx).run())
        session.logout()
        return result
    except Exception as exc:
        session.close()
        raise classify(exc, source.id) from exc


@dataclass
class FolderPass:
    session: ImapSession
    folder: str
    tenant: str
    state: MailboxState
    ctx: FetchContext
    result: PassResult = field(default_factory=PassResult)
    known_sha: set[str] = field(default_factory=set)
    fetched: list[int] = field(default_factory=list)
    handled_upto: int = 0
    uidvalidity: int = 0

    @property
    def source(self) -> ImapSource:
        return self.session.source

    def run(self) -> PassResult:
        # after_fetch = "none" must leave the folder exactly as it was, \Recent flags included
        uidvalidity, exists = self.session.select(self.folder, readonly=self.source.after_fetch == "none")
        self.uidvalidity = uidvalidity
        now = self.ctx.now()
        cursor = self.state.cursor(self.folder)
        known = self.state.imap(self.folder)
        batch = self.ctx.publisher.batch(self.state)
        stale = {k: r for k, r in known.items() if k[0] != uidvalidity}
        if (cursor is not None and cursor["uidvalidity"] != uidvalidity) or stale:
            old = cursor["uidvalidity"] if cursor is not None else None
            note = f"{self.folder}: UIDVALIDITY changed from {old} to {uidvalidity}; rereading by content"
            log.warning("source %s: %s", self.source.id, note)
            self.result.notes.append(note)
            self.known_sha = {r["sha256"] for r in stale.values() if r["sha256"]}
            for v, uid in stale:
                batch.state(imap_key(self.tenant, self.source.id, self.folder, v, uid), None)
            new_uids = self.session.search_uids("ALL")
        else:
            last = (cursor["uid"] if cursor is not None else None) or 0
            self.handled_upto = last
            new_uids = [u for u in self.session.search_uids(f"UID {last + 1}:*") if u > last]
            self._forget_vanished(batch, [uid for v, uid in known if v == uidvalidity], exists)
        pending = [uid for (v, uid), r in known.items() if v == uidvalidity and r["status"] == "fetched"]
        wanted = sorted(set(new_uids) | set(self._missing_to_retry(batch, known)))
        steps = plan_folder(wanted, self.session.sizes(wanted), self.source, self.ctx.inline_threshold)
        try:
            self._take(batch, steps, now)
        finally:
            if steps or stale or cursor is None:
                batch.state(
                    cursor_key(self.tenant, self.source.id, self.folder),
                    state_record(
                        self.tenant,
                        self.source.id,
                        CURSOR,
                        first_seen_at=cursor["first_seen_at"] if cursor else now,
                        folder=self.folder,
                        uidvalidity=uidvalidity,
                        uid=self.handled_upto,
                    ),
                )
            batch.confirm(self.ctx.confirm_timeout)
        due = sorted(set(pending + self.fetched))
        if self.source.delete_when == "delivered" and self.source.after_fetch in ("delete", "move"):
            # only what an earlier pass fetched can be delivered by now
            entries = {uid: known[(uidvalidity, uid)] for uid in pending}
            due = sorted(self.ctx.delivered(self.tenant, self.source.id, entries))
        self._after_fetch(due, now)
        return self.result

    def _forget_vanished(self, batch: Batch, remembered: list[int], exists: int) -> None:
        """Drop the state of messages someone else removed, so the compacted topic stays the
        size of the folder. Only looked for when the folder holds fewer messages than we
        remember (a cheap test; a removal hidden by an arrival is found on a later pass)."""
        if len(remembered) <= exists:
            return
        present = set(self.session.search_uids("ALL"))
        for uid in remembered:
            if uid not in present:
                batch.state(self._key(uid), None)

    def _missing_to_retry(self, batch: Batch, known: dict[tuple[int, int], FetchState]) -> list[int]:
        """UIDs an earlier FETCH answer left out, still in the folder (the others are forgotten)."""
        missing = [uid for (v, uid), r in known.items() if v == self.uidvalidity and r["status"] == MISSING]
        if not missing:
            return []
        present = set(self.session.search_uids(f"UID {uid_set(missing)}"))
        for uid in missing:
            if uid not in present:
                batch.state(self._key(uid), None)
        return [uid for uid in missing if uid in present]

    def _raw_source(self, uid: int) -> RawSource:
        return RawSource(self.tenant, self.source.id, "imap", self.folder, f"{self.uidvalidity}/{uid}")

    def _take(self, batch: Batch, steps: list[Step], now: datetime) -> None:
        group: list[Step] = []
        for index, step in enumerate(steps):
            if step.action == "fetch":
                group.append(step)
                following = steps[index + 1] if index + 1 < len(steps) else None
                if (
                    following is None
                    or following.action != "fetch"
                    or sum(s.size or 0 for s in group) + (following.size or 0) > GROUP_BYTES
                ):
                    bodies = self.session.bodies([s.uid for s in group])
                    for item in group:
                        body = bodies.get(item.uid)
                        if body is None:
                            self._missing(batch, item, now)
                        else:
                            self._one(batch, item, body, now)
                        self._handled(item.uid)
                    group = []
            elif step.action == "stream":
                chunks = self.session.stream(step.uid)
                if chunks is None:
                    self._missing(batch, step, now)
                else:
                    self._one(batch, step, chunks, now)
                self._handled(step.uid)
            elif step.action == "headers":
                self._headers_notice(batch, step, now)
                self._handled(step.uid)
            else:
                self._skip(batch, step, now, "oversize")
                self._handled(step.uid)

    def _handled(self, uid: int) -> None:
        # retried UIDs lie below the cursor: it never moves back
        self.handled_upto = max(self.handled_upto, uid)

    def _key(self, uid: int) -> str:
        return imap_key(self.tenant, self.source.id, self.folder, self.uidvalidity, uid)

    def _one(self, batch: Batch, step: Step, message: bytes | Iterable[bytes], now: datetime) -> None:
        uid = step.uid
        raw = self._raw_source(uid)
        done = prepare(raw, message, blobs=self.ctx.blobs, inline_threshold=self.ctx.inline_threshold)
        sha = done.record["sha256"]
        status = "fetched"
        if done.record["size"] != step.size:
            # published as read (to the literal's real end), but the server's own account of
            # the message disagrees: it is left on the server for a person to look at
            status = SIZE_MISMATCH
            batch.audit(
                "size-mismatch",
                message_id=done.message_id,
                sha256=sha,
                details={
                    "uid": raw.source_uid or "",
                    "folder": self.folder,
                    "announced": "none" if step.size is None else str(step.size),
                    "fetched": str(done.record["size"]),
                    "action": "left on the server",
                },
            )
            self.result.errors += 1
        if sha in self.known_sha:
            batch.audit(
                "skipped",
                message_id=done.message_id,
                sha256=sha,
                details={"reason": "already-fetched-before-uidvalidity-change", "uid": raw.source_uid or ""},
            )
            self.result.skipped += 1
        else:
            publish(batch, raw, done)
            self.result.fetched += 1
            self.result.bytes += done.record["size"]
        batch.state(
            self._key(uid),
            state_record(
                self.tenant,
                self.source.id,
                status,
                first_seen_at=now,
                folder=self.folder,
                uidvalidity=self.uidvalidity,
                uid=uid,
                sha256=sha,
                detail=done.message_id,
            ),
        )
        if status == "fetched":
            self.fetched.append(uid)

    def _missing(self, batch: Batch, step: Step, now: datetime) -> None:
        """The server listed ``step.uid`` but its FETCH answer had no body for it: remembered
        as ``missing`` and asked for again on every later pass while the UID exists."""
        previous = self.state.imap(self.folder).get((self.uidvalidity, step.uid))
        attempt = 1
        detail = previous["detail"] if previous is not None and previous["status"] == MISSING else None
        if detail is not None and detail.isdigit():
            attempt = int(detail) + 1
        batch.audit(
            "error",
            details={
                "reason": "no-body-in-fetch",
                "uid": f"{self.uidvalidity}/{step.uid}",
                "folder": self.folder,
                "attempt": str(attempt),
                "action": "retried on the next pass",
            },
        )
        batch.state(
            self._key(step.uid),
            state_record(
                self.tenant,
                self.source.id,
                MISSING,
                first_seen_at=previous["first_seen_at"] if previous is not None else now,
                folder=self.folder,
                uidvalidity=self.uidvalidity,
                uid=step.uid,
                detail=str(attempt),
            ),
        )
        self.result.errors += 1

    def _headers_notice(self, batch: Batch, step: Step, now: datetime) -> None:
        raw = self._raw_source(step.uid)
        head = self.session.headers(step.uid)
        done = prepare(
            raw, head, blobs=self.ctx.blobs, inline_threshold=self.ctx.inline_threshold, headers_only=True
        )
        publish(batch, raw, done)
        self._skip(batch, step, now, "oversize-headers-notice", message_id=done.message_id)

    def _skip(
        self, batch: Batch, step: Step, now: datetime, reason: str, message_id: str | None = None
    ) -> None:
        batch.audit(
            "skipped",
            message_id=message_id,
            details={"reason": reason, "uid": f"{self.uidvalidity}/{step.uid}", "size": str(step.size or 0)},
        )
        batch.state(
            self._key(step.uid),
            state_record(
                self.tenant,
                self.source.id,
                "skipped",
                first_seen_at=now,
                folder=self.folder,
                uidvalidity=self.uidvalidity,
                uid=step.uid,
                detail=reason,
            ),
        )
        self.result.skipped += 1

    def _after_fetch(self, uids: list[int], now: datetime) -> None:
        """Apply the configured action to messages Kafka already holds, then record it."""
        action = self.source.after_fetch
        if not uids or action == "none":
            return
        if action == "delete":
            self.session.store(uids, r"(\Deleted)")
            self.session.expunge(uids)
        elif action == "move":
            assert self.source.move_to is not None
            self.session.move(uids, self.source.move_to)
        else:
            self.session.store(uids, r"(\Seen)")
        batch = self.ctx.publisher.batch(self.state)
        known = self.state.imap(self.folder)
        for uid in uids:
            entry = known.get((self.uidvalidity, uid))
            if entry is None:
                continue
            if action == "seen":
                batch.state(self._key(uid), {**entry, "status": "seen", "updated_at": now})
                continue
            batch.state(self._key(uid), None)
            batch.audit(
                "source-deleted",
                message_id=entry["detail"],
                sha256=entry["sha256"],
                details={"uid": f"{self.uidvalidity}/{uid}", "folder": self.folder, "action": action},
            )
            if action == "move":
                self.result.moved += 1
            else:
                self.result.deleted += 1
        batch.confirm(self.ctx.confirm_timeout)
