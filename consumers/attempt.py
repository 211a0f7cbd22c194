"""One batch of delivery attempts, run in a target's thread pool: ledger, target, decision, outcome.

A batch is records of one partition for one target (``consumers.batching``); a target that
writes batches (``BatchTarget``) gets all the batch's writes in one call, the others one by
one. Every delivery of the batch keeps its own verdict, error, decision and outcome.

Write-ahead (docs/reliability.md): the ledger's state for the delivery decides skip, ask or
write; the attempt is recorded (and acknowledged) when the target reaches the point after
which the message may exist there (``DeliveryItem.committing``); an attempt found without an
outcome is checked at the target before anything is written again.

Returns the Kafka sends that record the outcome; the worker commits the offset once they
are acknowledged (``OutcomeNotRecordedError``, or a failed send, means it must not be).
A tenant-wide error is returned, not recorded: the worker keeps the record and pauses
the tenant.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cache, partial
from io import BytesIO
from typing import BinaryIO, cast

from mailferry.blobs import BlobStore
from mailferry.blobs.once import BlobOpener, ReadOnce
from mailferry.consumers import crashpoints
from mailferry.consumers.batching import rounds
from mailferry.consumers.ledger import Entry, ledger_key
from mailferry.consumers.ledger_state import Verdict, verdict
from mailferry.consumers.outcomes import ACK_TIMEOUT_S, Job, OutcomeBatch, OutcomeWriter, Pending
from mailferry.consumers.retry_policy import DeadLetter, History, Retry, decide
from mailferry.consumers.target import BatchTarget, DeliveryItem, DeliveryTarget, deliver_each
from mailferry.delivery_flags import BYPASS_DEDUP
from mailferry.errors import AmbiguousOutcomeError, OperatorError, PermanentError, TransientError
from mailferry.observe import metrics
from mailferry.schemas.records import Delivery

log = logging.getLogger(__name__)


class OutcomeNotRecordedError(TransientError):
    """The attempt's outcome could not be made durable; its offset must stay uncommitted.

    The worker stops on it (the supervisor restarts it): the record is read again and the
    ledger or the target's own check keeps the second pass from writing twice.
    """

    reason_code = "outcome-not-recorded"


@dataclass(frozen=True)
class Settled:
    """The outcome is recorded once ``pending`` (Kafka send futures) are acknowledged."""

    pending: Pending


@dataclass(frozen=True)
class Paused:
    target: str
    error: OperatorError


@dataclass(frozen=True)
class Abandoned:
    """Not attempted: its partition was being given up; the new owner reads it again."""


Result = Settled | Paused | Abandoned


@dataclass(frozen=True)
class Policy:
    tiers: list[timedelta]
    horizon: timedelta


def idempotency_key(delivery: Delivery) -> str:
    """What makes two deliveries "the same" for the ledger and the targets: the dedup key,
    or for a bypass-dedup replay that key plus the replayed delivery."""
    if BYPASS_DEDUP in delivery["flags"]:
        return f"{delivery['dedup_key']}#replay:{delivery['delivery_id']}"
    return delivery["dedup_key"]


def delivery_item(
    delivery: Delivery, blobs: BlobOpener, before_commit: Callable[[], None] | None = None
) -> DeliveryItem:
    inline = delivery["inline"]
    blob_ref = delivery["blob_ref"]

    def open_message() -> BinaryIO:
        if isinstance(inline, bytes):
            return BytesIO(inline)
        if isinstance(blob_ref, str):
            return blobs.open(blob_ref)
        raise PermanentError(
            "delivery carries neither inline bytes nor a blob reference", reason_code="empty"
        )

    return DeliveryItem(
        tenant=delivery["tenant"],
        mailbox=delivery["recipient"],
        dedup_key=idempotency_key(delivery),
        message_id=delivery["message_id"],
        size=delivery["size"],
        sha256=delivery["sha256"],
        open_message=open_message,
        add_headers=tuple((h["name"], h["value"]) for h in delivery["add_headers"]),
        before_commit=before_commit,
    )


class WriteAheadError(TransientError):
    """The attempt could not be recorded before the target write; nothing was written."""

    reason_code = "write-ahead-not-recorded"


def attempt(
    jobs: Sequence[Job],
    target: DeliveryTarget,
    target_name: str,
    *,
    writer: OutcomeWriter,
    blobs: BlobStore,
    policy: Policy,
) -> list[Result]:
    """Attempt one batch (records of one partition for one target); a result per job."""
    keys = [
        ledger_key(
            str(j.delivery["tenant"]), target_name, str(j.delivery["recipient"]), idempotency_key(j.delivery)
        )
        for j in jobs
    ]
    results: list[Result] = [Abandoned()] * len(jobs)
    for indexes in rounds(keys):
        with writer.ledger.claim(keys[i] for i in indexes):
            done = _attempt(
                [(jobs[i], keys[i]) for i in indexes],
                target,
                target_name,
                writer=writer,
                blobs=blobs,
                policy=policy,
            )
        for i, result in zip(indexes, done, strict=True):
            results[i] = result
    return results


@dataclass
class _Try:
    """One delivery of a batch on its way through the attempt."""

    job: Job
    key: bytes
    history: History
    item: DeliveryItem | None = None
    asked: bool = False
    found: bool | None = False
    error: BaseException | None = None
    result: Result | None = None


def _attempt(
    entries: list[tuple[Job, bytes]],
    target: DeliveryTarget,
    target_name: str,
    *,
    writer: OutcomeWriter,
    blobs: BlobStore,
    policy: Policy,
) -> list[Result]:
    started = time.monotonic()
    tries = [_Try(job, key, job.history) for job, key in entries]
    reads = ReadOnce(blobs)  # the target's opens share one fetched, verified copy (one blob per batch)
    outcomes = writer.batch()  # the delivered entries and events: a record or two for the batch
    try:
        try:
            writing = [t for t in tries if _check(t, target, target_name, writer, reads, outcomes)]
            _write(writing, target, target_name, writer)
        finally:
            reads.close()
        for t in tries:
            if t.result is None:
                t.result = _record(t, target_name, writer, policy, started, outcomes)
        outcomes.send()
        return [t.result for t in tries if t.result is not None]
    except Exception as exc:
        log.exception(
            "deliveries %s: outcome not recorded", [t.job.delivery.get("delivery_id") for t in tries]
        )
        raise OutcomeNotRecordedError(str(exc)) from exc


def _check(
    t: _Try,
    target: DeliveryTarget,
    target_name: str,
    writer: OutcomeWriter,
    reads: ReadOnce,
    outcomes: OutcomeBatch,
) -> bool:
    """Skip, ask or write: True when ``t`` is to be written."""
    job = t.job
    seen = verdict(writer.ledger.state(t.key), job.history.attempts)
    if seen in (Verdict.SKIP_DELIVERED, Verdict.SKIP_SUPERSEDED):
        t.result = Settled(writer.skipped(job, target_name, _SKIP_REASONS[seen], batch=outcomes))
        metrics.outcome(str(job.delivery["tenant"]), target_name, "skipped")
        return False
    t.asked = seen is Verdict.ASK or job.history.ambiguous
    try:
        t.item = delivery_item(job.delivery, reads, partial(_write_ahead, writer, [t]))
        if t.asked:
            t.history = replace(job.history, ambiguous=True)  # until the target has answered
            t.found = target.already_delivered(t.item)
            t.history = job.history
    except AmbiguousOutcomeError as exc:
        t.error = exc
        if t.item is not None and _safe_check(target, t.item):
            t.found, t.error = True, None
    except OperatorError as exc:
        t.result = Paused(target_name, exc)
    except Exception as exc:
        t.error = exc
    return t.result is None and t.error is None and t.found is not True


def _write(writing: list[_Try], target: DeliveryTarget, target_name: str, writer: OutcomeWriter) -> None:
    if not writing:
        return
    items = [t.item for t in writing if t.item is not None]
    if _writes_batches(type(target)):
        target = cast(BatchTarget, target)
        by_item = {id(t.item): t for t in writing}
        outcomes = target.deliver_batch(
            items, lambda some: _write_ahead(writer, [by_item[id(i)] for i in some])
        )
    else:
        outcomes = deliver_each(target, items)
    for outcome in outcomes:
        if isinstance(outcome, WriteAheadError):
            raise outcome
    if any(outcome is None for outcome in outcomes):
        crashpoints.reach(crashpoints.AFTER_TARGET_WRITE)
    for t, outcome in zip(writing, outcomes, strict=True):
        if isinstance(outcome, AmbiguousOutcomeError):
            t.error = outcome
            if t.item is not None and _safe_check(target, t.item):
                t.found, t.error = True, None
        elif isinstance(outcome, OperatorError):
            t.result = Paused(target_name, outcome)
        else:
            t.error = outcome


def _record(
    t: _Try, target_name: str, writer: OutcomeWriter, policy: Policy, started: float, outcomes: OutcomeBatch
) -> Result:
    """Send the outcome of ``t`` (delivered, retry or dead letter); acknowledged later."""
    job = t.job
    tenant = str(job.delivery["tenant"])
    if t.error is None:
        pending = writer.delivered(
            job, t.key, target_name, checked=t.found is True, note=_note(t.asked, t.found), batch=outcomes
        )
        metrics.outcome(tenant, target_name, "delivered", time.monotonic() - started)
        return Settled(pending)
    decision = decide(
        t.error,
        t.history,
        now=datetime.now(UTC),
        tiers=policy.tiers,
        horizon=policy.horizon,
        origin=job.origin,
    )
    if isinstance(decision, Retry):
        pending = writer.retry(job, decision, t.error, ledger_key=t.key)
        metrics.outcome(tenant, target_name, "retried", time.monotonic() - started)
    elif isinstance(decision, DeadLetter):
        pending = writer.dead_letter(job, decision, t.error, ledger_key=t.key)
        metrics.outcome(tenant, target_name, "dead-lettered", time.monotonic() - started)
    else:  # pragma: no cover - OperatorError is handled before
        raise AssertionError(f"unexpected decision {decision}")
    return Settled(pending)


_SKIP_REASONS = {
    Verdict.SKIP_DELIVERED: "already in the ledger",
    Verdict.SKIP_SUPERSEDED: "superseded by a newer retry record of this delivery",
}


def _write_ahead(writer: OutcomeWriter, tries: list[_Try]) -> None:
    """Record the attempts and wait for Kafka's acknowledgement, before the target write
    (the attempts of one call in one pack)."""
    try:
        sent = writer.ledger.begin_many(
            [
                Entry(t.key, str(t.job.delivery["delivery_id"]), t.job.partition, t.job.history.attempts)
                for t in tries
            ]
        )
        for future in sent:
            future.get(timeout=ACK_TIMEOUT_S)
    except Exception as exc:
        raise WriteAheadError(f"the attempt was not recorded before the write: {exc}") from exc
    crashpoints.reach(crashpoints.AFTER_WRITE_AHEAD)


@cache
def _writes_batches(kind: type) -> bool:
    """What ``isinstance(target, BatchTarget)`` adds to a ``DeliveryTarget``, once per class
    (the protocol's own check walks every member on each call)."""
    return callable(getattr(kind, "deliver_batch", None))


def _note(asked: bool, found: bool | None) -> str | None:
    if found is True:
        return "already in the mailbox: an earlier attempt had written it"
    if asked and found is None:
        return "possible duplicate: an earlier attempt may have written it and this target cannot be asked"
    return None


def _safe_check(target: DeliveryTarget, item: DeliveryItem) -> bool:
    try:
        return target.already_delivered(item) is True
    except Exception as exc:
        log.warning("already_delivered check failed for %s: %s", item.mailbox, exc)
        return False
