"""Fetch state: what each mailbox has already handed to Kafka, kept in ``mailferry.fetch-state``.

FetchStates of one mailbox all go to the partition its ``tenant/mailbox`` key hashes to (the
same rule Kafka uses for the mailboxes topic), so a worker that takes a mailbox over reads
one partition, not the whole topic.

One record per pass, not per message (issue 14): a pass writes one *set* record (key
``tenant/mailbox/set/<id>``) whose entries are its per-message words, each under the key
it stands for; a forgotten message is an entry with status ``forgotten``. A later set's
entry for a key wins over an earlier one (one partition: offset order). The topic is
compacted per record key, so a set stays until it is not needed, then it is removed with
a tombstone: when no entry in it is the last word about its message, and none of its
``forgotten`` entries still hides an older set's entry. Tombstones are sent with a later
pass, once the sets that made them unneeded are acknowledged. FetchStates written per message
before (one key per message) are read as sets of one, so old state keeps working.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kafka import TopicPartition
from kafka.partitioner import murmur2

from mailferry.config.kafka import KafkaConfig
from mailferry.errors import TransientError
from mailferry.kafka.clients import new_consumer
from mailferry.kafka.topics import FETCH_STATE, full_name
from mailferry.rawrecord import raw_key
from mailferry.schemas.records import FETCH_STATES, FetchState

CURSOR = "cursor"
SET = "set"
FORGOTTEN = "forgotten"
SET_ENTRIES = 1000  # entries per set record: ~200 bytes each, well below a topic's 1 MB


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
    size: int | None = None,
    key: str | None = None,
    entries: list[FetchState] | None = None,
) -> FetchState:
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
        "size": size,
        "key": key,
        "entries": entries or [],
    }


@dataclass
class MailboxState:
    """The fetch state of one mailbox, as last written (entries by the key they stand for)."""

    tenant: str
    mailbox: str
    entries: dict[str, FetchState] = field(default_factory=dict)
    _holder: dict[str, str] = field(default_factory=dict)  # entry key -> set with its last word
    _sets: dict[str, set[str]] = field(default_factory=dict)  # set key -> entry keys in it
    _carried: dict[str, set[str]] = field(default_factory=dict)  # entry key -> sets carrying it
    _suspects: set[str] = field(default_factory=set)  # sets that may have become unneeded

    def apply(self, key: str, record: FetchState | None) -> None:
        """A record as read from (or acknowledged by) the topic under ``key``."""
        if record is None:
            self._drop(key)
        elif record["status"] == SET:
            self.apply_set(
                key,
                [
                    (e["key"], None if e["status"] == FORGOTTEN else e)
                    for e in record["entries"]
                    if e["key"] is not None
                ],
            )
        else:
            self.apply_set(key, [(key, record)])

    def apply_set(self, set_key: str, items: list[tuple[str, FetchState | None]]) -> None:
        """The words of one set (``None``: the message is forgotten)."""
        if set_key in self._sets:
            self._drop(set_key)
        self._sets[set_key] = {k for k, _ in items}
        for key, record in items:
            before = self._holder.get(key)
            if before is not None and before != set_key:
                self._suspects.add(before)
            self._holder[key] = set_key
            self._carried.setdefault(key, set()).add(set_key)
            if record is None:
                self.entries.pop(key, None)
            else:
                self.entries[key] = record
        self._suspects.add(set_key)

    def _drop(self, set_key: str) -> None:
        for key in self._sets.pop(set_key, set()):
            carriers = self._carried.get(key, set())
            carriers.discard(set_key)
            if carriers:
                self._suspects |= carriers  # a "forgotten" entry there may hide nothing now
            else:
                self._carried.pop(key, None)
            if self._holder.get(key) == set_key:
                del self._holder[key]
                self.entries.pop(key, None)
        self._suspects.discard(set_key)

    def unneeded(self) -> list[str]:
        """Sets whose tombstone loses nothing: no entry in them is a last word, except
        ``forgotten`` ones that no longer hide an older set's entry."""
        out = []
        for set_key in sorted(self._suspects):
            keys = self._sets.get(set_key)
            if keys is None:
                continue
            if not any(self._needs(set_key, key) for key in keys):
                out.append(set_key)
        self._suspects = set(out)  # kept until their tombstones are acknowledged
        return out

    def _needs(self, set_key: str, key: str) -> bool:
        if self._holder.get(key) != set_key:
            return False
        return key in self.entries or len(self._carried.get(key, ())) > 1

    def sets(self) -> int:
        return len(self._sets)

    def pop3(self) -> dict[str, FetchState]:
        """``{uidl: record}``."""
        return {r["uidl"]: r for r in self.entries.values() if r["uidl"] is not None}

    def cursor(self, folder: str) -> FetchState | None:
        return self.entries.get(cursor_key(self.tenant, self.mailbox, folder))

    def imap(self, folder: str) -> dict[tuple[int, int], FetchState]:
        """``{(uidvalidity, uid): record}`` of the messages (not the cursor) of ``folder``."""
        return {
            (r["uidvalidity"], r["uid"]): r
            for r in self.entries.values()
            if r["folder"] == folder
            and r["uidvalidity"] is not None
            and r["uid"] is not None
            and r["status"] != CURSOR
        }


def set_records(
    tenant: str, mailbox: str, updates: list[tuple[str, FetchState | None]]
) -> list[tuple[str, FetchState, list[tuple[str, FetchState | None]]]]:
    """The set records of one pass's ``updates``: (set key, record, its items)."""
    latest = dict(updates)  # one word per key: the last one of the pass
    items = list(latest.items())
    now = datetime.now(UTC)
    out = []
    for start in range(0, len(items), SET_ENTRIES):
        chunk = items[start : start + SET_ENTRIES]
        entries = [_entry(tenant, mailbox, key, record, now) for key, record in chunk]
        record = state_record(tenant, mailbox, SET, first_seen_at=now, entries=entries)
        out.append((f"{tenant}/{mailbox}/set/{uuid.uuid4().hex}", record, chunk))
    return out


def _entry(tenant: str, mailbox: str, key: str, record: FetchState | None, now: datetime) -> FetchState:
    if record is None:
        return state_record(tenant, mailbox, FORGOTTEN, first_seen_at=now, key=key)
    return {**record, "key": key, "entries": []}


def decode_state(value: bytes) -> FetchState:
    return FETCH_STATES.decode(value)


def encode_state(record: FetchState) -> bytes:
    return FETCH_STATES.encode(record)


def _read(
    kafka: KafkaConfig,
    servers: list[str],
    partitions: Callable[[int], set[int]],
    states: dict[tuple[str, str], MailboxState],
    *,
    accept_new: bool,
    timeout: float,
) -> None:
    topic = full_name(kafka, FETCH_STATE)
    consumer = new_consumer(kafka, servers)
    try:
        available = consumer.partitions_for_topic(topic)
        if not available:
            return
        wanted = [TopicPartition(topic, p) for p in sorted(partitions(len(available)))]
        consumer.assign(wanted)
        consumer.seek_to_beginning(*wanted)
        ends = consumer.end_offsets(wanted)
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                raise TransientError(f"reading {topic} took longer than {timeout:.0f} s")
            for records in consumer.poll(timeout_ms=500).values():
                for rec in records:
                    key = rec.key.decode()
                    tenant, _, rest = key.partition("/")
                    mailbox = (tenant, rest.split("/", 1)[0])
                    state = states.get(mailbox)
                    if state is None and accept_new:
                        state = states[mailbox] = MailboxState(*mailbox)
                    if state is not None:
                        state.apply(key, decode_state(rec.value) if rec.value is not None else None)
    finally:
        consumer.close()


def load_states(
    kafka: KafkaConfig, servers: list[str], mailboxes: list[tuple[str, str]], timeout: float = 60.0
) -> dict[tuple[str, str], MailboxState]:
    """Read the fetch state of ``mailboxes`` ((tenant, mailbox) pairs) up to the current end."""
    states = {m: MailboxState(*m) for m in mailboxes}
    if mailboxes:
        _read(
            kafka,
            servers,
            lambda n: {partition_of(raw_key(t, m), n) for t, m in mailboxes},
            states,
            accept_new=False,
            timeout=timeout,
        )
    return states


class StateCache:
    """Fetch state for a worker: a whole partition is read the first time one of its mailboxes
    needs it, so taking over many mailboxes costs one read per partition, not per mailbox."""

    def __init__(self, kafka: KafkaConfig, servers: list[str], timeout: float = 120.0) -> None:
        self._kafka = kafka
        self._servers = servers
        self._timeout = timeout
        self._lock = threading.Lock()
        self._states: dict[tuple[str, str], MailboxState] = {}
        self._loaded: set[int] = set()
        self._partitions = 0

    def get(self, tenant: str, mailbox: str) -> MailboxState:
        with self._lock:
            state = self._states.get((tenant, mailbox))
            if state is not None:
                return state
            if not self._partitions:
                self._partitions = _partition_count(self._kafka, self._servers)
            partition = partition_of(raw_key(tenant, mailbox), self._partitions)
            if partition not in self._loaded:
                _read(
                    self._kafka,
                    self._servers,
                    lambda _n: {partition},
                    self._states,
                    accept_new=True,
                    timeout=self._timeout,
                )
                self._loaded.add(partition)
            return self._states.setdefault((tenant, mailbox), MailboxState(tenant, mailbox))

    def forget(self, mailboxes: list[tuple[str, str]]) -> None:
        """Drop what another worker may now change (after a rebalance took these away)."""
        with self._lock:
            for mailbox in mailboxes:
                self._states.pop(mailbox, None)
                if self._partitions:
                    self._loaded.discard(partition_of(raw_key(*mailbox), self._partitions))


def _partition_count(kafka: KafkaConfig, servers: list[str]) -> int:
    consumer = new_consumer(kafka, servers)
    try:
        partitions = consumer.partitions_for_topic(full_name(kafka, FETCH_STATE))
    finally:
        consumer.close()
    if not partitions:
        raise TransientError(f"topic {full_name(kafka, FETCH_STATE)} does not exist (yet)")
    return len(partitions)
