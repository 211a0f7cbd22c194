"""Recording what happened to a delivery, durably, before its offset may be committed.

The per-record methods return the send futures of every record they wrote (ledger entry,
retry record, dead letter, audit event); the worker commits an offset only after all of
them are acknowledged, which is what makes the pipeline at-least-once without losing a
message between stages. Waiting happens in the worker's main loop, not in the target's
threads, so a thread is free for the next message while Kafka acknowledges the last one.

The ``delivered`` and ``skipped`` events of one attempt batch go as one ``audit_batch``
record, and its delivered ledger entries as one ledger pack (``OutcomeBatch``): a Kafka
record per delivery was the worker's largest cost after the target itself
(docs/benchmarks/deliver.md). The rare outcomes (retried, dead-lettered) stay one event and
one ledger entry per record, sent at once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from kafka import KafkaProducer
from kafka.producer.future import FutureRecordMetadata

from mailferry.audit import EventName, EventPacks, audit_event, event_pack_limit
from mailferry.config import MailferryConfig
from mailferry.consumers import crashpoints
from mailferry.consumers.ledger import Entry, Ledger
from mailferry.consumers.retry_policy import DeadLetter, History, Origin, Retry
from mailferry.errors import TransientError
from mailferry.kafka.topics import AUDIT, DLT, full_name, retry_topic
from mailferry.schemas.records import DEAD_LETTERS, DELIVERIES, Delivery
from mailferry.schemas.records import DeadLetter as DeadLetterRecord

ACK_TIMEOUT_S = 60.0
Pending = list[FutureRecordMetadata]
PACK_AUDIT = True  # a batch's delivered/skipped events in one record; False: one record each, as before
PACK_LEDGER = True  # a batch's delivered ledger entries in one record; False: one record each, as before


@dataclass(frozen=True)
class Job:
    """One delivery of a consumed record and what the worker knows about it.

    A packed record (``mailferry.packing``) gives one job per delivery, ``index`` its place
    in the pack (None for a plain record); ``value`` is the record's whole value."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    delivery: Delivery
    history: History
    index: int | None = None

    @property
    def origin(self) -> Origin:
        return Origin(self.topic, self.partition, self.offset, self.index)

    @property
    def item_key(self) -> bytes | None:
        """The key of this delivery (a pack's record key is its first delivery's)."""
        return self.key if self.index is None else delivery_key(self.delivery)

    def single(self) -> tuple[bytes | None, bytes]:
        """Key and value of a record holding only this delivery (a retry record)."""
        if self.index is None:
            return self.key, self.value
        return self.item_key, DELIVERIES.encode(self.delivery)


def delivery_key(delivery: Delivery) -> bytes:
    """The key of a deliver record: its partition is the mailbox's."""
    return f"{delivery['tenant']}/{delivery['recipient']}".encode()


class OutcomeWriter:
    def __init__(self, config: MailferryConfig, producer: KafkaProducer, ledger: Ledger) -> None:
        self.producer = producer
        self.ledger = ledger
        self.audit_topic = full_name(config.kafka, AUDIT)
        self.dlt_topic = full_name(config.kafka, DLT)
        self._kafka = config.kafka
        self._audit_limit = event_pack_limit(config.kafka)

    def batch(self) -> OutcomeBatch:
        """Where one attempt batch's delivered entries and events gather until ``send``."""
        return OutcomeBatch(
            AuditBatch(self.producer, self.audit_topic, self._audit_limit if PACK_AUDIT else 0),
            self.ledger if PACK_LEDGER else None,
        )

    def delivered(
        self,
        job: Job,
        ledger_key: bytes,
        target: str,
        *,
        checked: bool = False,
        note: str | None = None,
        batch: OutcomeBatch | None = None,
    ) -> Pending:
        """The ledger entry and the ``delivered`` event (in ``batch`` when given: the futures
        of the records carrying them join the returned list when ``batch.send`` runs)."""
        pending: Pending = []
        entry = Entry(ledger_key, str(job.delivery["delivery_id"]), job.partition)
        if batch is not None and batch.ledger is not None:
            batch.delivered(entry, pending)
        else:
            pending.append(self.ledger.record(entry.key, entry.delivery_id, partition=entry.partition))
        details = {"target": target, "attempts": str(job.history.attempts + 1)}
        if checked:
            details["found"] = "already in the mailbox after an ambiguous outcome"
        if note:
            details["note"] = note
        self._audit("delivered", job, details, pending, batch)
        return pending

    def skipped(
        self,
        job: Job,
        target: str,
        reason: str = "already in the ledger",
        *,
        batch: OutcomeBatch | None = None,
    ) -> Pending:
        pending: Pending = []
        self._audit("skipped", job, {"target": target, "reason": reason}, pending, batch)
        return pending

    def retry(
        self, job: Job, decision: Retry, error: BaseException, *, ledger_key: bytes | None = None
    ) -> Pending:
        """The retry record, on the partition of the same number (its owner is this record's),
        then, once Kafka has it, the ledger entry that makes every older record of the
        delivery stale: never two records that may both deliver it."""
        topic = full_name(self._kafka, retry_topic(decision.tier))
        headers = decision.history.to_headers(decision.due_at, _reason(error))
        key, value = job.single()
        sent = self.producer.send(topic, key=key, value=value, headers=headers, partition=job.partition)
        futures = [sent]
        if ledger_key is not None:
            self.wait([sent])
            crashpoints.reach(crashpoints.AFTER_RETRY_RECORD)
            generation = decision.history.attempts
            futures.append(
                self.ledger.moved(ledger_key, generation, job.delivery["delivery_id"], job.partition)
            )
        self._audit(
            "retried",
            job,
            {
                "tier": str(decision.tier),
                "due_at": decision.due_at.isoformat(),
                "attempts": str(decision.history.attempts),
                "reason": _reason(error),
                "error": _text(error),
            },
            futures,
        )
        return futures

    def dead_letter(
        self, job: Job, decision: DeadLetter, error: BaseException, *, ledger_key: bytes | None = None
    ) -> Pending:
        history = decision.history
        origin = history.origin or job.origin
        now = datetime.now(UTC)
        record: DeadLetterRecord = {
            "dead_letter_id": uuid.uuid4().hex,
            "stage": "deliver",
            "tenant": job.delivery["tenant"],
            "error_class": decision.error_class,
            "reason_code": decision.reason_code,
            "error_message": _text(error),
            "attempts": history.attempts,
            "origin_topic": origin.topic,
            "origin_partition": origin.partition,
            "origin_offset": origin.offset,
            "origin_index": origin.item,
            "failed_at": now,
            "first_failed_at": history.first_failed_at,
            "delivery": job.delivery,
            "raw": None,
        }
        value = DEAD_LETTERS.encode(record)
        futures = [self.producer.send(self.dlt_topic, key=job.item_key, value=value)]
        if ledger_key is not None and self.ledger.state(ledger_key) is not None:
            futures.append(self.ledger.forget(ledger_key, job.partition))  # a requeue starts afresh
        self._audit(
            "dead-lettered",
            job,
            {
                "dead_letter_id": record["dead_letter_id"],
                "error_class": decision.error_class,
                "reason": decision.reason_code,
                "error": _text(error),
                "attempts": str(history.attempts),
            },
            futures,
        )
        return futures

    def undecodable(
        self, topic: str, partition: int, offset: int, key: bytes | None, error: BaseException
    ) -> None:
        """A record no codec can read: dead-lettered with its origin so a person can find it."""
        tenant = (key or b"").decode("utf-8", "replace").partition("/")[0] or "unknown"
        record: DeadLetterRecord = {
            "dead_letter_id": uuid.uuid4().hex,
            "stage": "deliver",
            "tenant": tenant,
            "error_class": "malformed-message",
            "reason_code": _reason(error),
            "error_message": _text(error),
            "attempts": 0,
            "origin_topic": topic,
            "origin_partition": partition,
            "origin_offset": offset,
            "origin_index": None,
            "failed_at": datetime.now(UTC),
            "first_failed_at": None,
            "delivery": None,
            "raw": None,
        }
        self.wait([self.producer.send(self.dlt_topic, key=key, value=DEAD_LETTERS.encode(record))])

    def tenant_event(self, event: EventName, tenant: str, details: dict[str, str]) -> None:
        key, value = audit_event(event, stage="deliver", tenant=tenant, details=details)
        self.wait([self.producer.send(self.audit_topic, key=key, value=value)])

    def _audit(
        self,
        event: EventName,
        job: Job,
        details: dict[str, str],
        pending: Pending,
        batch: OutcomeBatch | None = None,
    ) -> None:
        """The event of ``job``: sent now, its future added to ``pending``, or into ``batch``."""
        delivery = job.delivery
        key, value = audit_event(
            event,
            stage="deliver",
            tenant=delivery["tenant"],
            mailbox_id=delivery["mailbox_id"],
            message_id=delivery["message_id"],
            sha256=delivery["sha256"],
            dedup_key=delivery["dedup_key"],
            recipient=delivery["recipient"],
            details={"delivery_id": delivery["delivery_id"], "origin": job.origin.address, **details},
        )
        if batch is None:
            pending.append(self.producer.send(self.audit_topic, key=key, value=value))
        else:
            batch.audit.add(key, value, pending)

    @staticmethod
    def wait(futures: Pending) -> None:
        """Block until Kafka acknowledged ``futures`` (for the rare outcomes of the main loop)."""
        for future in futures:
            try:
                future.get(timeout=ACK_TIMEOUT_S)
            except Exception as exc:
                raise TransientError(
                    f"Kafka did not acknowledge an outcome: {exc}", reason_code="kafka"
                ) from exc


class AuditBatch:
    """Audit events gathered while a batch is attempted, sent by ``send`` as ``audit_batch``
    records (``mailferry.audit.EventPacks``: at most ``limit`` bytes, keyed like the first
    event; a limit of 0 sends every event as its own plain record). An event's outcome is
    durable only once the record carrying it is: ``send`` adds that record's future to the
    ``pending`` list the event came with."""

    def __init__(self, producer: KafkaProducer, topic: str, limit: int) -> None:
        self._producer = producer
        self._topic = topic
        self._limit = limit
        self._events: list[tuple[bytes, bytes, Pending]] = []

    def add(self, key: bytes, value: bytes, pending: Pending) -> None:
        self._events.append((key, value, pending))

    def send(self) -> None:
        packs = EventPacks(self._limit)
        waiting: list[Pending] = []  # of the events in the open pack
        for key, value, pending in self._events:
            for closed in packs.add(key, value):
                self._send(closed, waiting)
                waiting = []
            waiting.append(pending)
        for closed in packs.drain():
            self._send(closed, waiting)
        self._events = []

    def _send(self, pack: tuple[bytes, bytes], waiting: list[Pending]) -> None:
        key, value = pack
        future = self._producer.send(self._topic, key=key, value=value)
        for pending in waiting:
            pending.append(future)


class OutcomeBatch:
    """One attempt batch's delivered ledger entries (``Ledger.record_many``: one pack per
    partition) and its delivered/skipped events (``audit``), sent together by ``send``. Each
    delivery's outcome waits for the records that carry its entry and its event. Without a
    ``ledger`` the entries go one record each, at once."""

    def __init__(self, audit: AuditBatch, ledger: Ledger | None) -> None:
        self.audit = audit
        self.ledger = ledger
        self._entries: list[Entry] = []
        self._waiting: list[Pending] = []

    def delivered(self, entry: Entry, pending: Pending) -> None:
        self._entries.append(entry)
        self._waiting.append(pending)

    def send(self) -> None:
        if self._entries and self.ledger is not None:
            futures = self.ledger.record_many(self._entries)
            for pending, future in zip(self._waiting, futures, strict=True):
                pending.append(future)
        self._entries, self._waiting = [], []
        self.audit.send()


def _reason(error: BaseException) -> str:
    return str(getattr(error, "reason_code", None) or type(error).__name__)


def _text(error: BaseException) -> str:
    return (str(error) or type(error).__name__)[:2000]
