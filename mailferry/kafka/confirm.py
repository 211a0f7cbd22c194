"""Send and confirm: the one way a writer learns whether Kafka kept what it sent.

kafka-python's ``flush()`` returns when every batch is finished, including the batches that
failed: a record over the topic's ``max.message.bytes`` or one that outlived the delivery
timeout against a stopped broker is only logged, and its failure sits on the record's
future. ``producer.send`` can also raise at once (a record over the client's request size,
no metadata within ``max_block_ms``). A writer that marks something done (a dead letter
requeued, an import checkpoint, a source message fetched) must see both kinds, so every such
writer sends through ``ConfirmedSends`` and acts only on what ``wait`` or ``confirm`` returned.
What it raises comes from the Kafka boundary's one mapper (``mailferry.kafka.errors``): an
outage is a ``TransientError``, a refused ACL or login an ``OperatorError``, a record the
topic will never take a ``PermanentError``.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.producer.future import FutureRecordMetadata

from mailferry.errors import MailferryError, OperatorError, PermanentError
from mailferry.kafka.errors import classify

Tag = TypeVar("Tag", bound=Hashable)
_WORST_FIRST: tuple[type[MailferryError], ...] = (OperatorError, PermanentError, MailferryError)


@dataclass(frozen=True)
class Outcome(Generic[Tag]):
    """What one ``wait`` saw: the tags whose every record was acknowledged, and the failures."""

    acknowledged: list[Tag]
    failed: list[tuple[Tag, Exception]]

    def raise_for_failures(self, what: str) -> None:
        """Raise the mapped error of the failure that needs the most: a person before a verdict
        on a record before an outage (an idempotent producer fails what follows a refused
        record too, for a lesser reason)."""
        if not self.failed:
            return
        failed_tags = list(dict.fromkeys(tag for tag, _ in self.failed))
        total = len(self.acknowledged) + len(failed_tags)
        action = f"Kafka did not acknowledge {len(failed_tags)} of {total} {what}"
        errors = [classify(exc, action) for _, exc in self.failed]
        raise next(e for kind in _WORST_FIRST for e in errors if isinstance(e, kind))


_Record = tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]] | None]


class ConfirmedSends(Generic[Tag]):
    """Records sent through one producer whose acknowledgement the caller will wait for.

    ``tag`` names what a record stands for (a dead letter, an imported message). Records
    given to ``then`` are the marks that say a tag is done (a state record, an audit event):
    they are sent only after every record of their tag was acknowledged, so a mark never
    reaches Kafka for work that did not. ``wait`` returns the tags whose records and marks
    were all acknowledged, and the failures.
    """

    def __init__(self, producer: KafkaProducer, timeout: float = 60.0) -> None:
        self.producer = producer
        self.timeout = timeout
        self._pending: list[tuple[Tag | None, FutureRecordMetadata]] = []
        self._failed_at_send: list[tuple[Tag | None, Exception]] = []
        self._marks: dict[Tag | None, list[_Record]] = {}

    def __len__(self) -> int:
        return len(self._pending) + len(self._failed_at_send)

    def send(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
        tag: Tag | None = None,
        tags: Sequence[Tag | None] | None = None,
    ) -> None:
        """``tags`` instead of ``tag``: the record stands for each of them (a pack of items),
        which are done together or failed together."""
        stands_for = list(tags) if tags else [tag]
        try:
            future = self.producer.send(topic, key=key, value=value, headers=headers, partition=partition)
        except KafkaError as exc:
            self._failed_at_send += [(t, exc) for t in stands_for]
            return
        self._pending += [(t, future) for t in stands_for]

    def then(
        self,
        tag: Tag | None,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Send this record at the next ``wait``, once every record of ``tag`` was acknowledged."""
        self._marks.setdefault(tag, []).append((topic, key, value, headers))

    def wait(self, timeout: float | None = None) -> Outcome[Tag | None]:
        """Flush and collect every send, then send and collect the marks of what succeeded."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        done, failed = self._collect(timeout, deadline)
        marks, self._marks = self._marks, {}
        failed_tags = {tag for tag, _ in failed}
        for tag in list(done) + [t for t in marks if t not in done and t not in failed_tags]:
            if tag in failed_tags:
                continue
            done.setdefault(tag, None)
            for topic, key, value, headers in marks.pop(tag, []):
                self.send(topic, key=key, value=value, headers=headers, tag=tag)
        _, mark_failures = self._collect(max(0.0, deadline - time.monotonic()), deadline)
        failed += mark_failures
        failed_tags |= {tag for tag, _ in mark_failures}
        return Outcome([tag for tag in done if tag not in failed_tags], failed)

    def confirm(self, what: str, timeout: float | None = None) -> int:
        """Wait for every send; raises the mapped error naming ``what`` if any failed."""
        outcome = self.wait(timeout)
        outcome.raise_for_failures(what)
        return len(outcome.acknowledged)

    def _collect(
        self, timeout: float, deadline: float
    ) -> tuple[dict[Tag | None, None], list[tuple[Tag | None, Exception]]]:
        pending, self._pending = self._pending, []
        failed, self._failed_at_send = list(self._failed_at_send), []
        done: dict[Tag | None, None] = {}
        if pending:
            try:
                self.producer.flush(timeout=timeout)
            except KafkaTimeoutError:
                pass  # the futures still unresolved say which records it concerns
        for tag, future in pending:
            try:
                future.get(timeout=max(0.0, deadline - time.monotonic()))
            except KafkaError as exc:
                failed.append((tag, exc))
            else:
                done[tag] = None
        return done, failed
