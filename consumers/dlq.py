"""The dead-letter topic as a person works with it: list, show, requeue, discard.

The DLT itself is append-only; what happened to each dead letter since (requeued to
which target, discarded) is a record keyed by its id in the compacted
``deliver.dlt.state`` topic, so every operator's ``dlq list`` agrees and a dead letter
is never requeued twice by accident. Requeue puts the original delivery back on the
deliver topic (optionally for another target of the tenant) with no retry history: it
starts fresh. A dead letter of the stream stage (a raw message) goes back to the raw topic.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from kafka import KafkaProducer

from mailferry.audit import audit_event
from mailferry.blobs import BlobStore, open_blob_store
from mailferry.config import MailferryConfig
from mailferry.consumers.outcomes import delivery_key
from mailferry.consumers.retry_policy import Origin
from mailferry.errors import ConfigError
from mailferry.kafka.clients import new_producer
from mailferry.kafka.confirm import ConfirmedSends
from mailferry.kafka.scan import scan_topic
from mailferry.kafka.topics import AUDIT, DELIVER, DLT, DLT_STATE, RAW, full_name
from mailferry.rawrecord import encode_raw
from mailferry.schemas.codec import UnknownSchemaError
from mailferry.schemas.records import DEAD_LETTERS, DELIVERIES, DeadLetter
from mailferry.shard import shard_of_record


@dataclass(frozen=True)
class Filter:
    ids: frozenset[str] = frozenset()
    tenant: str | None = None
    error_class: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    include_done: bool = False  # also dead letters already requeued or discarded

    @property
    def narrowed(self) -> bool:
        return bool(self.ids or self.tenant or self.error_class or self.since or self.until)


@dataclass
class DeadLetterEntry:
    record: DeadLetter
    partition: int
    offset: int
    status: str = "dead"  # dead | requeued | discarded
    status_detail: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.record["dead_letter_id"]

    def summary(self) -> dict[str, Any]:
        delivery = self.record["delivery"]
        return {
            "id": self.id,
            "failed_at": self.record["failed_at"].isoformat(),
            "tenant": self.record["tenant"],
            "recipient": delivery["recipient"] if delivery else None,
            "target": delivery["target"] if delivery else None,
            "error_class": self.record["error_class"],
            "reason": self.record["reason_code"],
            "attempts": self.record["attempts"],
            "status": self.status,
        }

    def shown(self) -> dict[str, Any]:
        """Everything about this dead letter for a person to read; the message bytes only as a size."""
        record = cast(dict[str, Any], dict(self.record))
        delivery = dict(record.get("delivery") or {})
        if delivery.get("inline") is not None:
            delivery["inline"] = f"<{len(delivery['inline'])} bytes inline>"
        record["delivery"] = delivery or None
        if record.get("raw") is not None:
            raw = dict(record["raw"])
            raw["inline"] = f"<{len(raw['inline'] or b'')} bytes inline>"
            record["raw"] = raw
        record["status"] = self.status
        record["status_detail"] = self.status_detail
        record["dlt_position"] = f"{self.partition}/{self.offset}"
        origin = Origin(
            str(record["origin_topic"]),
            int(record["origin_partition"]),
            int(record["origin_offset"]),
            record.get("origin_index"),
        )
        record["origin"] = origin.address
        return record


class DeadLetterQueue:
    def __init__(self, config: MailferryConfig, servers: list[str], *, actor: str | None = None) -> None:
        """``actor`` names who acts (audited with every requeue or discard): the OS user of
        the command by default."""
        self.config = config
        self.servers = servers
        self.actor = actor or getpass.getuser()
        self.dlt_topic = full_name(config.kafka, DLT)
        self.state_topic = full_name(config.kafka, DLT_STATE)

    def states(self) -> dict[str, dict[str, str]]:
        """The latest state record of every dead letter that has one."""
        states: dict[str, dict[str, str]] = {}
        for message in scan_topic(self.config.kafka, self.servers, self.state_topic):
            if message.key is None:
                continue
            key = message.key.decode()
            if message.value is None:
                states.pop(key, None)
                continue
            try:
                states[key] = json.loads(message.value)
            except ValueError:
                continue
        return states

    def find(self, wanted: Filter) -> list[DeadLetterEntry]:
        states = self.states()
        found = []
        for message in scan_topic(
            self.config.kafka, self.servers, self.dlt_topic, since=wanted.since, until=wanted.until
        ):
            try:
                record = DEAD_LETTERS.decode(message.value)
            except UnknownSchemaError:
                continue
            entry = DeadLetterEntry(record, message.partition, message.offset)
            state = states.get(entry.id)
            if state is not None:
                entry.status = state.get("status", "dead")
                entry.status_detail = state
            if _matches(entry, wanted):
                found.append(entry)
        found.sort(key=lambda e: e.record["failed_at"])
        return found

    def requeue(self, entries: Iterable[DeadLetterEntry], *, target: str | None = None) -> int:
        """Put each dead letter's message back into the pipeline; returns how many.

        A dead letter is marked requeued only after Kafka acknowledged its requeued record;
        the Kafka mapper's error (after the others were marked) when any record was refused.
        """
        entries = list(entries)
        if target is not None:
            for entry in entries:
                _check_target(self.config, entry.record["tenant"], target)
        deliver_topic, raw_topic = full_name(self.config.kafka, DELIVER), full_name(self.config.kafka, RAW)
        producer = self._producer()
        blobs: BlobStore | None = None
        try:
            sends: ConfirmedSends[str] = ConfirmedSends(producer)
            for entry in entries:
                acted_at = datetime.now(UTC)  # before the requeued copy can be delivered: the story's order
                delivery, raw = entry.record["delivery"], entry.record["raw"]
                if delivery is not None:
                    if target is not None:
                        delivery = {**delivery, "target": target}
                    value = DELIVERIES.encode(delivery)  # a plain record, never a pack
                    sends.send(deliver_topic, key=delivery_key(delivery), value=value, tag=entry.id)
                elif raw is not None:
                    if target is not None:
                        raw = {**raw, "target_override": target}
                    if blobs is None and raw["blob_ref"]:
                        blobs = open_blob_store(self.config, self.servers)
                    key = shard_of_record(raw, blobs)  # to the partition of its dedup shard
                    sends.send(raw_topic, key=key, value=encode_raw(raw), tag=entry.id)
                else:
                    continue
                self._mark(sends, entry, "requeued", {"target": target or ""}, at=acted_at)
            outcome = sends.wait()
        finally:
            producer.close()
            if blobs is not None:
                blobs.close()
        outcome.raise_for_failures(f"dead letters to requeue ({len(outcome.acknowledged)} requeued)")
        return len(outcome.acknowledged)

    def discard(self, entries: Iterable[DeadLetterEntry], *, note: str = "") -> int:
        producer = self._producer()
        try:
            sends: ConfirmedSends[str] = ConfirmedSends(producer)
            for entry in entries:
                self._mark(sends, entry, "discarded", {"note": note})
            outcome = sends.wait()
        finally:
            producer.close()
        outcome.raise_for_failures(f"dead letters to discard ({len(outcome.acknowledged)} discarded)")
        return len(outcome.acknowledged)

    def _mark(
        self,
        sends: ConfirmedSends[str],
        entry: DeadLetterEntry,
        status: str,
        extra: dict[str, str],
        *,
        at: datetime | None = None,
    ) -> None:
        """The state record and audit event saying what became of ``entry``, sent once its work was kept."""
        at = at or datetime.now(UTC)
        value = {
            "status": status,
            "at": at.isoformat(),
            **{k: v for k, v in extra.items() if v},
        }
        sends.then(entry.id, self.state_topic, key=entry.id.encode(), value=json.dumps(value).encode())
        delivery = entry.record["delivery"]
        key, event = audit_event(
            "retried" if status == "requeued" else "skipped",
            stage="dlq",
            tenant=entry.record["tenant"],
            message_id=delivery["message_id"] if delivery else None,
            sha256=delivery["sha256"] if delivery else None,
            dedup_key=delivery["dedup_key"] if delivery else None,
            recipient=delivery["recipient"] if delivery else None,
            details={"dead_letter_id": entry.id, "action": status, "actor": self.actor, **extra},
            at=at,
        )
        sends.then(entry.id, full_name(self.config.kafka, AUDIT), key=key, value=event)

    def _producer(self) -> KafkaProducer:
        return new_producer(self.config.kafka, self.servers)


def _matches(entry: DeadLetterEntry, wanted: Filter) -> bool:
    if wanted.ids and entry.id not in wanted.ids:
        return False
    if not wanted.include_done and not wanted.ids and entry.status != "dead":
        return False
    if wanted.tenant and entry.record["tenant"] != wanted.tenant:
        return False
    return not (wanted.error_class and entry.record["error_class"] != wanted.error_class)


def _check_target(config: MailferryConfig, tenant_id: str, target: str) -> None:
    try:
        config.tenant(tenant_id).target(target)
    except KeyError:
        raise ConfigError(f"tenant {tenant_id!r} has no target {target!r}") from None
