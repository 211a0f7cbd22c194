"""Typed views of every topic record, checked field for field against their ``.avsc``.

The codec decodes to ``dict[str, Any]``; a stage that reads or writes a record through one
of these ``TypedDict``s gets its field names and types checked by mypy, and
``tests/foundation/test_typed_records.py`` fails when a schema and its view drift apart (a
field added, removed or retyped on either side, in a nested record too). Every field is
required: a decoded record has them all (Avro fills defaults), and a writer names each one
rather than leaning on a default it cannot see.

``RECORD_CODECS`` gives a typed encode/decode per schema file; the ``unpack_*`` helpers read
a value that may be a pack (``mailferry.packing``) as the list of its typed items.
"""

from __future__ import annotations

from datetime import datetime
from typing import Generic, TypedDict, TypeVar, cast

from mailferry.packing import AUDIT_PACK, DELIVERY_PACK, RAW_PACK
from mailferry.schemas.codec import (
    AUDIT_BATCH,
    AUDIT_EVENT,
    DEAD_LETTER,
    DELIVERY,
    DELIVERY_BATCH,
    FETCH_STATE,
    MAILBOX_CONFIG,
    RAW_BATCH,
    RAW_MESSAGE,
    Record,
    codec,
)


class MailboxConfig(TypedDict):
    """Value of ``mailferry.mailboxes`` (compacted, keyed tenant/mailbox)."""

    tenant: str
    mailbox_id: str
    kind: str
    mode: str
    config_json: str
    config_sha256: str
    updated_at: datetime


class FetchState(TypedDict):
    """Value of ``mailferry.fetch-state``: one source message, or a set of them (``entries``)."""

    tenant: str
    mailbox_id: str
    folder: str | None
    uidvalidity: int | None
    uid: int | None
    uidl: str | None
    sha256: str | None
    status: str
    first_seen_at: datetime
    updated_at: datetime
    detail: str | None
    size: int | None
    key: str | None
    entries: list[FetchState]


class RawMessage(TypedDict):
    """One mail of ``mailferry.raw``: its bytes inline or a blob reference."""

    tenant: str
    mailbox_id: str
    source_kind: str
    folder: str | None
    source_uid: str | None
    size: int
    sha256: str
    fetched_at: datetime
    inline: bytes | None
    blob_ref: str | None
    envelope_recipients: list[str]
    headers_only: bool
    replay_of: str | None
    bypass_dedup: bool
    target_override: str | None


class RawBatch(TypedDict):
    messages: list[RawMessage]


class RoutingReason(TypedDict):
    """Why a recipient was chosen: ``kind`` (envelope, rule, fallback, ...) and its detail."""

    kind: str
    detail: str


class HeaderField(TypedDict):
    name: str
    value: str


class Delivery(TypedDict):
    """One message for one recipient (``mailferry.deliver`` and its retry tiers)."""

    delivery_id: str
    tenant: str
    recipient: str
    target: str
    dedup_key: str
    message_id: str | None
    mailbox_id: str
    size: int
    sha256: str
    inline: bytes | None
    blob_ref: str | None
    reasons: list[RoutingReason]
    flags: list[str]
    add_headers: list[HeaderField]
    raw_origin: str | None
    routed_at: datetime


class DeliveryBatch(TypedDict):
    deliveries: list[Delivery]


class AuditEvent(TypedDict):
    """What happened to a message, where and why (``mailferry.audit``)."""

    event_id: str
    event: str
    at: datetime
    stage: str
    tenant: str
    mailbox_id: str | None
    message_id: str | None
    sha256: str | None
    dedup_key: str | None
    recipient: str | None
    details: dict[str, str]


class AuditBatch(TypedDict):
    events: list[AuditEvent]


class DeadLetter(TypedDict):
    """What failed for good, why and where it came from (``mailferry.deliver.dlt``)."""

    dead_letter_id: str
    stage: str
    tenant: str
    error_class: str
    reason_code: str
    error_message: str
    attempts: int
    origin_topic: str
    origin_partition: int
    origin_offset: int
    origin_index: int | None
    failed_at: datetime
    first_failed_at: datetime | None
    delivery: Delivery | None
    raw: RawMessage | None


View = TypeVar("View")


class RecordCodec(Generic[View]):
    """The codec of one schema file, typed by its view (no conversion: the view is the dict)."""

    def __init__(self, schema: str) -> None:
        self.schema = schema

    def encode(self, record: View) -> bytes:
        return codec(self.schema).encode(cast(Record, record))

    def decode(self, data: bytes) -> View:
        return cast(View, codec(self.schema).decode(data))


MAILBOX_CONFIGS = RecordCodec[MailboxConfig](MAILBOX_CONFIG)
FETCH_STATES = RecordCodec[FetchState](FETCH_STATE)
RAW_MESSAGES = RecordCodec[RawMessage](RAW_MESSAGE)
RAW_BATCHES = RecordCodec[RawBatch](RAW_BATCH)
DELIVERIES = RecordCodec[Delivery](DELIVERY)
DELIVERY_BATCHES = RecordCodec[DeliveryBatch](DELIVERY_BATCH)
AUDIT_EVENTS = RecordCodec[AuditEvent](AUDIT_EVENT)
AUDIT_BATCHES = RecordCodec[AuditBatch](AUDIT_BATCH)
DEAD_LETTERS = RecordCodec[DeadLetter](DEAD_LETTER)

TYPED: dict[str, type] = {
    MAILBOX_CONFIG: MailboxConfig,
    FETCH_STATE: FetchState,
    RAW_MESSAGE: RawMessage,
    RAW_BATCH: RawBatch,
    DELIVERY: Delivery,
    DELIVERY_BATCH: DeliveryBatch,
    AUDIT_EVENT: AuditEvent,
    AUDIT_BATCH: AuditBatch,
    DEAD_LETTER: DeadLetter,
}
"""Schema file -> the view of its top record (what the test checks, nested records included)."""

NESTED: tuple[type, ...] = (RoutingReason, HeaderField)
"""Views of records declared inside another schema file."""


def unpack_raw_messages(value: bytes) -> list[RawMessage]:
    """The mails of one ``raw`` value, plain or packed."""
    return cast(list[RawMessage], RAW_PACK.unpack(value))


def unpack_deliveries(value: bytes) -> list[Delivery]:
    return cast(list[Delivery], DELIVERY_PACK.unpack(value))


def unpack_audit_events(value: bytes) -> list[AuditEvent]:
    return cast(list[AuditEvent], AUDIT_PACK.unpack(value))


def decode_mailbox_config(data: bytes) -> MailboxConfig:
    return MAILBOX_CONFIGS.decode(data)


def encode_mailbox_config(record: MailboxConfig) -> bytes:
    return MAILBOX_CONFIGS.encode(record)
