"""The interface every delivery target implements.

Small on purpose: deliver one message into one mailbox, say whether it is already there,
check credentials once at start-up. A target that can be asked calls ``item.committing()``
right before the step after which the message may exist at the target (the request that
creates it, SMTP's final dot): the worker records the attempt there (write-ahead) and, when
an attempt is found without an outcome, asks the target before writing again
(docs/reliability.md). Each target translates its own library's errors into
``TransientError`` / ``AmbiguousOutcomeError`` / ``PermanentError`` / ``OperatorError`` in one
table of its own; the worker decides retry, dead letter or pause from the type alone.
Targets are synchronous (exchangelib is); the worker runs them in bounded thread pools.

A target that can write several messages at once (one fsync of a Maildir folder, one EWS
``CreateItem`` with a list of items) also implements ``BatchTarget``; the worker then hands
it the records of one poll, per partition, in batches (``consumers.batching``). Targets that
cannot be asked and write one by one (SMTP) get batches of one: a batch would widen the
window between their write and the ledger entry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO, Protocol, runtime_checkable

from mailferry.errors import OperatorError
from mailferry.mail import added_headers


@dataclass(frozen=True)
class DeliveryItem:
    """One message for one mailbox, as the worker hands it to a target."""

    tenant: str
    mailbox: str  # the resolved recipient, primary SMTP address
    dedup_key: str
    message_id: str | None
    size: int
    sha256: str
    open_message: Callable[[], BinaryIO]  # the raw RFC 5322 bytes, streamed
    received_at: datetime | None = None  # delivery time to show in the mailbox
    add_headers: tuple[tuple[str, str], ...] = field(default=())  # prepended, trace header first
    before_commit: Callable[[], None] | None = None  # the write-ahead record, set by the worker

    def committing(self) -> None:
        """The target is about to make the message exist: record the attempt first."""
        if self.before_commit is not None:
            self.before_commit()

    @property
    def marker(self) -> str:
        """Unique to this delivery (tenant, mailbox, dedup key): stored with the item so that
        ``already_delivered`` finds mailferry's own copy, not a same-Message-ID other one."""
        text = f"{self.tenant}\n{self.mailbox.lower()}\n{self.dedup_key}"
        return "mf1-" + hashlib.sha256(text.encode()).hexdigest()[:40]

    def message_bytes(self) -> bytes:
        """The whole message with ``add_headers`` prepended (for APIs that take it whole)."""
        with self.open_message() as handle:
            body = handle.read()
        return added_headers.prefix(self.add_headers) + body


class DeliveryTarget(Protocol):
    name: str
    max_message_size: int | None

    def check_credentials(self) -> None:
        """Fail fast at start-up; raises an ``OperatorError`` (``CredentialsError``, ``TenantError``)
        when the account cannot log in."""
        ...

    def deliver(self, item: DeliveryItem) -> None:
        """Write the message into ``item.mailbox``; raises a classified MailferryError."""
        ...

    def already_delivered(self, item: DeliveryItem) -> bool | None:
        """After an ambiguous failure or an attempt without an outcome: is it there already?
        None when the target cannot tell (SMTP)."""
        ...

    def close(self) -> None: ...


Outcome = BaseException | None  # of one item of a batch: None when written
Committing = Callable[[Sequence[DeliveryItem]], None]


@runtime_checkable
class BatchTarget(DeliveryTarget, Protocol):
    def deliver_batch(self, items: Sequence[DeliveryItem], committing: Committing) -> list[Outcome]:
        """Write ``items``; one outcome per item, in order, each a classified error or None.

        Before the request after which some items may exist at the target, call
        ``committing`` with those items (the write-ahead entries of all of them, one wait),
        not ``item.committing()`` one by one.
        """
        ...


def deliver_each(target: DeliveryTarget, items: Sequence[DeliveryItem]) -> list[Outcome]:
    """A batch through a target that writes one message at a time.

    An operator error (bad credentials, an unusable config) stops the batch: the items not
    tried yet get the same error, so they are parked with the tenant rather than tried against
    a server that refuses it.
    """
    outcomes: list[Outcome] = []
    for index, item in enumerate(items):
        try:
            target.deliver(item)
        except Exception as exc:
            outcomes.append(exc)
            if isinstance(exc, OperatorError):
                outcomes.extend([exc] * (len(items) - index - 1))
                break
        else:
            outcomes.append(None)
    return outcomes
