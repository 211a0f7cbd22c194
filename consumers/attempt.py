"""One delivery attempt, run in a target's thread pool: ledger, target, decision, outcome.

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
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from io import BytesIO
from typing import BinaryIO

from mailferry.consumers import crashpoints
from mailferry.consumers.ledger import ledger_key
from mailferry.consumers.ledger_state import Verdict, verdict
from mailferry.consumers.outcomes import ACK_TIMEOUT_S, Job, OutcomeWriter, Pending
from mailferry.consumers.retry_policy import DeadLetter, Retry, decide
from mailferry.consumers.target import DeliveryItem, DeliveryTarget

from mailferry.blobs import BlobStore
from mailferry.blobs.once import BlobOpener, ReadOnce
from mailferry.delivery_flags import BYPASS_DEDUP
from mailferry.errors import AmbiguousOutcomeError, OperatorError, PermanentError, TransientError
from mailferry.observe import metrics

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


def idempotency_key(delivery: dict[str, object]) -> str:
    """What makes two deliveries "the same" for the ledger and the targets: the dedup key,
    or for a bypass-dedup replay that key plus the replayed delivery."""
    flags = delivery.get("flags") or []
    assert isinstance(flags, list)
    if BYPASS_DEDUP in flags:
        return f"{delivery['dedup_key']}#replay:{delivery['delivery_id']}"
    return str(delivery["dedup_key"])


def delivery_item(delivery: dict[str, object], blobs: BlobOpener) -> DeliveryItem:
    inline = delivery.get("inline")
    blob_ref = delivery.get("blob_ref")

    def open_message() -> BinaryIO:
        if isinstance(inline, bytes):
            return BytesIO(inline)
        if isinstance(blob_ref, str):
            return blobs.open(blob_ref)
        raise PermanentError(
            "delivery carries neither inline bytes nor a blob reference", reason_code="empty"
        )

    headers = delivery.get("add_headers") or []
    assert isinstance(headers, list)
    return DeliveryItem(
        tenant=str(delivery["tenant"]),
        mailbox=str(delivery["recipient"]),
        dedup_key=idempotency_key(delivery),
        message_id=delivery.get("message_id") if isinstance(delivery.get("message_id"), str) else None,  # type: ignore[arg-type]
        size=int(delivery["size"]),  # type: ignore[call-overload]
        sha256=str(delivery["sha256"]),
        open_message=open_message,
        add_headers=tuple((str(h["name"]), str(h["value"])) for h in headers),
    )


class WriteAheadError(TransientError):
    """The attempt could not be recorded before the target write; nothing was written."""

    reason_code = "write-ahead-not-recorded"


def attempt(
    job: Job,
    target: DeliveryTarget,
    target_name: str,
    *,
    writer: OutcomeWriter,
    blobs: BlobStore,
    policy: Policy,
) -> Result:
    delivery = job.delivery
    key = ledger_key(
        str(delivery["tenant"]), target_name, str(delivery["recipient"]), idempotency_key(delivery)
    )
    with writer.ledger.claim(key):
        return _attempt(job, key, target, target_name, writer=writer, blobs=blobs, policy=policy)


def _attempt(
    job: Job,
    key: bytes,
    target: DeliveryTarget,
    target_name: str,
    *,
    writer: OutcomeWriter,
    blobs: BlobStore,
    policy: Policy,
) -> Result:
    delivery = job.delivery
    tenant = str(delivery["tenant"])
    started = time.monotonic()
    try:
        seen = verdict(writer.ledger.state(key), job.history.attempts)
        if seen in (Verdict.SKIP_DELIVERED, Verdict.SKIP_SUPERSEDED):
            pending = writer.skipped(job, target_name, _SKIP_REASONS[seen])
            metrics.outcome(tenant, target_name, "skipped")
            return Settled(pending)
        ask = seen is Verdict.ASK or job.history.ambiguous
        error: BaseException | None = None
        found: bool | None = False
        history = job.history
        reads = ReadOnce(blobs)  # the target's opens share one fetched, verified copy
        try:
            item = replace(
                delivery_item(delivery, reads), before_commit=partial(_write_ahead, writer, job, key)
            )
            if ask:
                history = replace(history, ambiguous=True)  # until the target has answered
                found = target.already_delivered(item)
                history = job.history
            if found is not True:
                target.deliver(item)
                crashpoints.reach(crashpoints.AFTER_TARGET_WRITE)
        except WriteAheadError:
            raise
        except AmbiguousOutcomeError as exc:
            error = exc
            if _safe_check(target, item):
                found, error = True, None
        except OperatorError as exc:
            return Paused(target_name, exc)
        except Exception as exc:
            error = exc
        finally:
            reads.close()
        if error is None:
            note = _note(ask, found)
            pending = writer.delivered(job, key, target_name, checked=found is True, note=note)
            metrics.outcome(tenant, target_name, "delivered", time.monotonic() - started)
            return Settled(pending)
        decision = decide(
            error,
            history,
            now=datetime.now(UTC),
            tiers=policy.tiers,
            horizon=policy.horizon,
            origin=job.origin,
        )
        if isinstance(decision, Retry):
            pending = writer.retry(job, decision, error, ledger_key=key)
            metrics.outcome(tenant, target_name, "retried", time.monotonic() - started)
        elif isinstance(decision, DeadLetter):
            pending = writer.dead_letter(job, decision, error, ledger_key=key)
            metrics.outcome(tenant, target_name, "dead-lettered", time.monotonic() - started)
        else:  # pragma: no cover - OperatorError is caught above
            raise AssertionError(f"unexpected decision {decision}")
        return Settled(pending)
    except OperatorError as exc:
        return Paused(target_name, exc)
    except Exception as exc:
        log.exception("delivery %s: outcome not recorded", delivery.get("delivery_id"))
        raise OutcomeNotRecordedError(str(exc)) from exc


_SKIP_REASONS = {
    Verdict.SKIP_DELIVERED: "already in the ledger",
    Verdict.SKIP_SUPERSEDED: "superseded by a newer retry record of this delivery",
}


def _write_ahead(writer: OutcomeWriter, job: Job, key: bytes) -> None:
    """Record the attempt and wait for Kafka's acknowledgement, before the target write."""
    try:
        writer.ledger.begin(key, job.history.attempts, str(job.delivery["delivery_id"]), job.partition).get(
            timeout=ACK_TIMEOUT_S
        )
    except Exception as exc:
        raise WriteAheadError(f"the attempt was not recorded before the write: {exc}") from exc
    crashpoints.reach(crashpoints.AFTER_WRITE_AHEAD)


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
