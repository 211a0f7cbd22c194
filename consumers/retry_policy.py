"""What to do after a delivery attempt failed: retry tier, dead letter or pause the tenant.

Pure: the decision depends only on the error's *type*, the attempt history carried in the
record's headers and the configured tiers and horizon, so it is tested without Kafka or a
target. The worker carries the decision out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from mailferry.errors import (
    AmbiguousOutcomeError,
    MailferryError,
    MalformedMessageError,
    OperatorError,
    PermanentError,
    TransientError,
)

# Kafka header names of a record on a retry tier (values are ASCII)
H_ATTEMPTS = "mf-attempts"
H_FIRST_FAILED = "mf-first-failed-at"
H_DUE = "mf-due-at"
H_ORIGIN = "mf-origin"  # topic/partition/offset, as before packs (older readers parse it)
H_ORIGIN_INDEX = "mf-origin-index"  # the delivery's index in a packed record
H_LAST_ERROR = "mf-last-error"
H_AMBIGUOUS = "mf-ambiguous"


class Origin(NamedTuple):
    """Where a delivery was first read: a record, and its index when the record is a pack."""

    topic: str
    partition: int
    offset: int
    item: int | None = None  # index in a packed record (None: a plain record)

    @property
    def address(self) -> str:
        """``topic/partition/offset``, and ``/index`` for a delivery of a packed record."""
        base = f"{self.topic}/{self.partition}/{self.offset}"
        return base if self.item is None else f"{base}/{self.item}"


@dataclass(frozen=True)
class History:
    """What the headers of a record say about earlier attempts."""

    attempts: int = 0
    first_failed_at: datetime | None = None
    origin: Origin | None = None  # of the first record
    ambiguous: bool = False  # an earlier attempt may have written the message

    def to_headers(self, due_at: datetime, last_error: str) -> list[tuple[str, bytes]]:
        headers = [
            (H_ATTEMPTS, str(self.attempts).encode()),
            (H_DUE, str(_ms(due_at)).encode()),
            (H_LAST_ERROR, last_error.encode()[:200]),
        ]
        if self.first_failed_at is not None:
            headers.append((H_FIRST_FAILED, str(_ms(self.first_failed_at)).encode()))
        if self.origin is not None:
            topic, partition, offset, index = self.origin
            headers.append((H_ORIGIN, f"{topic}/{partition}/{offset}".encode()))
            if index is not None:
                headers.append((H_ORIGIN_INDEX, str(index).encode()))
        if self.ambiguous:
            headers.append((H_AMBIGUOUS, b"1"))
        return headers

    @classmethod
    def from_headers(cls, headers: list[tuple[str, bytes]] | None) -> History:
        values = {name: value.decode("ascii", "replace") for name, value in headers or []}
        origin = None
        if H_ORIGIN in values:
            topic, _, rest = values[H_ORIGIN].rpartition("/")
            topic, _, partition = topic.rpartition("/")
            index = values.get(H_ORIGIN_INDEX, "")
            if topic and partition.isdigit() and rest.isdigit():
                origin = Origin(topic, int(partition), int(rest), int(index) if index.isdigit() else None)
        return cls(
            attempts=int(values.get(H_ATTEMPTS, "0") or 0),
            first_failed_at=_from_ms(values.get(H_FIRST_FAILED)),
            origin=origin,
            ambiguous=values.get(H_AMBIGUOUS) == "1",
        )


def due_at(headers: list[tuple[str, bytes]] | None) -> datetime | None:
    """When a retry-tier record may be attempted (None: now)."""
    for name, value in headers or []:
        if name == H_DUE:
            return _from_ms(value.decode("ascii", "replace"))
    return None


@dataclass(frozen=True)
class Retry:
    tier: int
    due_at: datetime
    history: History


@dataclass(frozen=True)
class DeadLetter:
    error_class: str  # permanent | transient-expired | malformed-message
    reason_code: str
    history: History


@dataclass(frozen=True)
class PauseTenant:
    reason_code: str


Decision = Retry | DeadLetter | PauseTenant


def decide(
    error: BaseException,
    history: History,
    *,
    now: datetime,
    tiers: list[timedelta],
    horizon: timedelta,
    origin: Origin,
) -> Decision:
    """The next step for a record whose attempt ``history.attempts + 1`` failed with ``error``.

    Anything that is not a ``MailferryError`` is a bug in a target's error table; it is
    treated as transient so a message is never lost to a bug, and the horizon bounds it.
    """
    failed = History(
        attempts=history.attempts + 1,
        first_failed_at=history.first_failed_at or now,
        origin=history.origin or origin,
        ambiguous=history.ambiguous or isinstance(error, AmbiguousOutcomeError),
    )
    reason = error.reason_code if isinstance(error, MailferryError) else "unclassified"
    if isinstance(error, OperatorError):  # bad credentials or config: never a message's fault
        return PauseTenant(reason)
    if isinstance(error, MalformedMessageError):
        return DeadLetter("malformed-message", reason, failed)
    if isinstance(error, PermanentError):
        return DeadLetter("permanent", reason, failed)
    tier = min(failed.attempts - 1, len(tiers) - 1)
    delay = tiers[tier]
    hint = error.retry_after if isinstance(error, TransientError) else None
    if hint is not None and hint > delay.total_seconds():
        delay = timedelta(seconds=hint)
    first = failed.first_failed_at or now
    if now + delay > first + horizon:
        return DeadLetter("transient-expired", reason, failed)
    return Retry(tier, now + delay, failed)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _from_ms(value: str | None) -> datetime | None:
    if not value or not value.lstrip("-").isdigit():
        return None
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
