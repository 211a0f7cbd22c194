"""Fetch state: what each mailbox has already handed to Kafka, kept in ``mailferry.fetch-state``.

The topic is compacted and keyed per source message, so it always holds the last word about
every message still relevant. Records of one mailbox all go to the partition its
``tenant/mailbox`` key hashes to (the same rule Kafka uses for the mailboxes topic), so a
worker that takes a mailbox over reads one partition, not the whole topic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.partitioner import murmur2
from mailferry.schemas.codec import FETCH_STATE as FETCH_STATE_SCHEMA
from mailferry.schemas.codec import Record, codec

from mailferry.config.kafka import KafkaConfig
from mailferry.kafka.clients import common_settings
from mailferry.kafka.topics import FETCH_STATE, full_name
from mailferry.rawrecord import raw_key

CURSOR = "cursor"


def partition_of(mailbox_key: bytes, partitions: int) -> int:
    """Kafka's default partitioner for a key: the same partition for the same mailbox."""
    return int(murmur2(mailbox_key) & 0x7FFFFFFF) % partitions


def pop3_key(tenant: str, mailbox: str, uidl: str) -> str:
    return f"{tenant}/{mailbox}/pop3/{uidl}"


def imap_key(tenant: str, mailbox: str, folder: str, uidvalidity: int, uid: int) -> str:
    return f"{tenant}/{mailbox}/imap/{uidvalidity}/{uid}/{folder}"


def cursor_key(tenant: str, mailbox: str, folder: str) -> str:
    return f"{tenant}/{mailbox}/cursor/{folder}"


def state_record(
    tenant: str,
    mailbox: str,
    status: str,
    *,
    first_seen_at: datetime,
    folder: str | None = None,
    uidvalidity: int | None = None,
    uid: int | None = None,
    uidl: str | None = None,
    sha256: str | None = None,
    detail: str | None = None,
) -> Record:
    return {
        "tenant": tenant,
        "mailbox_id": mailbox,
        "folder": folder,
        "uidvalidity": uidvalidity,
        "uid": uid,
        "uidl": uidl,
        "sha256": sha256,
        "status": status,
        "first_seen_at": first_seen_at,
        "updated_at": datetime.now(UTC),
        "detail": detail,
    }


@dataclass
class MailboxState:
    """The fetch state of one mailbox, as last written (records by their topic key)."""

    tenant: str
    mailbox: str
    entries: dict[str, Record] = field(default_factory=dict)

    def apply(self, key: str, record: Record | None) -> None:
        if record is None:
            self.entries.pop(key, None)
        else:
            self.entries[key] = record

    def pop3(self) -> dict[str, Record]:
        """``{uidl: record}``."""
        return {r["uidl"]: r for r in self.entries.values() if r["uidl"] is not None}

    def cursor(self, folder: str) -> Record | None:
        return self.entries.get(cursor_key(self.tenant, self.mailbox, folder))

    def imap(self, folder: str) -> dict[tuple[int, int], Record]:
        """``{(uidvalidity, uid): record}`` of the messages (not the cursor) of ``folder``."""
        return {
            (r["uidvalidity"], r["uid"]): r
            for r in self.entries.values()
            if r["folder"] == folder and r["uid"] is not None and r["status"] != CURSOR
        }


def decode_state(value: bytes) -> Record:
    decoded: dict[str, Any] = codec(FETCH_STATE_SCHEMA).decode(value)
    return decoded


def encode_state(record: Record) -> bytes:
    return codec(FETCH_STATE_SCHEMA).encode(record)


def load_states(
    kafka: KafkaConfig, servers: list[str], mailboxes: list[tuple[str, str]], timeout: float = 60.0
) -> dict[tuple[str, str], MailboxState]:
    """Read the fetch state of ``mailboxes`` ((tenant, mailbox) pairs) up to the current end."""
    states = {m: MailboxState(*m) for m in mailboxes}
    if not mailboxes:
        return states
    topic = full_name(kafka, FETCH_STATE)
    consumer = KafkaConsumer(**common_settings(kafka, servers), enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            return states
        wanted = {TopicPartition(topic, partition_of(raw_key(t, m), len(partitions))) for t, m in mailboxes}
        consumer.assign(list(wanted))
        consumer.seek_to_beginning(*wanted)
        ends = consumer.end_offsets(list(wanted))
        deadline = datetime.now(UTC).timestamp() + timeout
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            if datetime.now(UTC).timestamp() > deadline:
                raise TimeoutError(f"reading {topic} took longer than {timeout:.0f} s")
            for records in consumer.poll(timeout_ms=500).values():
                for rec in records:
                    key = rec.key.decode()
                    tenant, _, rest = key.partition("/")
                    mailbox = rest.split("/", 1)[0]
                    state = states.get((tenant, mailbox))
                    if state is not None:
                        state.apply(key, decode_state(rec.value) if rec.value is not None else None)
    finally:
        consumer.close()
    return states
