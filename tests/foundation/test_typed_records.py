"""Each typed record view (``mailferry.schemas.records``) matches its ``.avsc`` field for field,
nested records included; the check itself is shown to catch drift on either side."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any, TypedDict, get_type_hints

import pytest

from mailferry.packing import AUDIT_PACK, DELIVERY_PACK, RAW_PACK
from mailferry.schemas.codec import SCHEMA_NAMES
from mailferry.schemas.records import (
    AUDIT_EVENTS,
    DEAD_LETTERS,
    DELIVERIES,
    FETCH_STATES,
    NESTED,
    RAW_MESSAGES,
    TYPED,
    AuditEvent,
    Delivery,
    FetchState,
    MailboxConfig,
    RawMessage,
    decode_mailbox_config,
    encode_mailbox_config,
    unpack_audit_events,
    unpack_deliveries,
    unpack_raw_messages,
)
from mailferry.schemas.registry import expanded

from ..factories import records

PRIMITIVES: dict[str, Any] = {
    "string": str,
    "long": int,
    "int": int,
    "boolean": bool,
    "bytes": bytes,
    "double": float,
    "float": float,
}
VIEWS: dict[str, type] = {view.__name__: view for view in [*TYPED.values(), *NESTED]}
T0 = datetime(2026, 12, 3, 14, 0, tzinfo=UTC)


def drift(schema: Any, views: dict[str, type]) -> tuple[list[str], set[str]]:
    """Every difference between the records of ``schema`` and their views (by record name),
    and the names of the records it checked."""
    problems: list[str] = []
    checked: set[str] = set()

    def python_type(avro: Any) -> Any:
        """The type fastavro decodes an Avro type to (a record: its view)."""
        if isinstance(avro, list):
            members = [python_type(t) for t in avro if t != "null"]
            union = members[0]
            for member in members[1:]:
                union = union | member
            return union | None if "null" in avro else union
        if isinstance(avro, dict):
            if avro.get("logicalType", "").startswith("timestamp"):
                return datetime
            if avro["type"] == "record":
                return record(avro)
            if avro["type"] == "map":
                return dict[str, python_type(avro["values"])]  # type: ignore[misc]
            if avro["type"] == "array":
                return list[python_type(avro["items"])]  # type: ignore[misc]
            return python_type(avro["type"])
        if avro in PRIMITIVES:
            return PRIMITIVES[avro]
        return views.get(avro.rpartition(".")[2], f"<no view named {avro}>")  # a named reference

    def record(node: dict[str, Any]) -> Any:
        name = node["name"].rpartition(".")[2]
        view = views.get(name)
        if view is None:
            problems.append(f"{name}: no view")
            return f"<no view named {name}>"
        checked.add(name)
        expected = {field["name"]: python_type(field["type"]) for field in node["fields"]}
        actual = get_type_hints(view)
        for field in sorted(expected.keys() | actual.keys()):
            if expected.get(field) != actual.get(field):
                problems.append(f"{name}.{field}: schema {expected.get(field)}, view {actual.get(field)}")
        return view

    record(schema)
    return problems, checked


def test_every_schema_file_has_a_view() -> None:
    assert sorted(TYPED) == sorted(SCHEMA_NAMES)


@pytest.mark.parametrize("schema", sorted(SCHEMA_NAMES))
def test_the_view_matches_the_schema_field_for_field_nested_records_included(schema: str) -> None:
    problems, _ = drift(expanded(schema), VIEWS)
    assert problems == []


def test_every_view_stands_for_a_record_of_some_schema() -> None:
    reached = set().union(*(drift(expanded(schema), VIEWS)[1] for schema in SCHEMA_NAMES))
    assert reached == set(VIEWS)


def _schema_changed(change: str) -> Any:
    schema = copy.deepcopy(expanded("delivery"))
    fields = schema["fields"]
    reasons = next(f for f in fields if f["name"] == "reasons")["type"]["items"]["fields"]
    if change == "field added":
        fields.append({"name": "priority", "type": "int", "default": 0})
    elif change == "field removed":
        fields[:] = [f for f in fields if f["name"] != "flags"]
    elif change == "field retyped":
        next(f for f in fields if f["name"] == "size")["type"] = "string"
    elif change == "made nullable":
        next(f for f in fields if f["name"] == "target")["type"] = ["null", "string"]
    elif change == "nested field added":
        reasons.append({"name": "position", "type": "int", "default": 0})
    elif change == "nested field retyped":
        reasons[1]["type"] = "long"
    return schema


@pytest.mark.parametrize(
    "change",
    [
        "field added",
        "field removed",
        "field retyped",
        "made nullable",
        "nested field added",
        "nested field retyped",
    ],
)
def test_the_check_catches_a_schema_that_drifted_from_its_view(change: str) -> None:
    problems, _ = drift(_schema_changed(change), VIEWS)
    assert len(problems) == 1, problems


class ReasonWithExtra(TypedDict):
    kind: str
    detail: str
    weight: int


class ReasonRetyped(TypedDict):
    kind: str
    detail: bytes


class ReasonMissing(TypedDict):
    kind: str


@pytest.mark.parametrize("view", [ReasonWithExtra, ReasonRetyped, ReasonMissing])
def test_the_check_catches_a_nested_view_that_drifted_from_its_schema(view: type) -> None:
    problems, _ = drift(expanded("dead_letter"), VIEWS | {"RoutingReason": view})
    assert [p for p in problems if p.startswith("RoutingReason.")] != []


def _delivery() -> Delivery:
    """Every nested and optional field of a delivery filled in."""
    return records.delivery(
        flags=["possible-lost-bcc"],
        add_headers=[{"name": "X-Mailferry-Trace", "value": "acme"}],
        raw_origin="t.raw/0/7",
    )


def _raw() -> RawMessage:
    return records.raw_message(envelope_recipients=["alice@acme.example"])


def _event(n: int) -> AuditEvent:
    return records.audit_event(event_id=f"e{n}", details={"reason": "envelope"})


def test_records_round_trip_through_their_typed_codecs_nested_ones_included() -> None:
    entry = FetchState(
        tenant="acme",
        mailbox_id="catchall",
        folder="INBOX",
        uidvalidity=7,
        uid=1,
        uidl=None,
        sha256=None,
        status="fetched",
        first_seen_at=T0,
        updated_at=T0,
        detail=None,
        size=None,
        key="acme/catchall/imap/INBOX/7/1",
        entries=[],
    )
    fetch_set = FetchState(**{**entry, "status": "set", "key": None, "entries": [entry]})  # type: ignore[typeddict-item]
    letter = records.dead_letter(delivery=_delivery(), raw=_raw())
    config = MailboxConfig(
        tenant="acme",
        mailbox_id="catchall",
        kind="imap",
        mode="global",
        config_json="{}",
        config_sha256="0" * 64,
        updated_at=T0,
    )
    assert FETCH_STATES.decode(FETCH_STATES.encode(fetch_set)) == fetch_set
    assert DEAD_LETTERS.decode(DEAD_LETTERS.encode(letter)) == letter
    assert decode_mailbox_config(encode_mailbox_config(config)) == config


def test_packed_and_plain_values_unpack_to_typed_items() -> None:
    deliveries = [_delivery(), {**_delivery(), "delivery_id": "d2"}]
    events = [_event(1), _event(2)]
    assert unpack_deliveries(DELIVERY_PACK.pack([DELIVERIES.encode(d) for d in deliveries])) == deliveries  # type: ignore[arg-type]
    assert unpack_deliveries(DELIVERIES.encode(_delivery())) == [_delivery()]
    assert unpack_audit_events(AUDIT_PACK.pack([AUDIT_EVENTS.encode(e) for e in events])) == events
    assert unpack_raw_messages(RAW_PACK.pack([RAW_MESSAGES.encode(_raw())] * 2)) == [_raw(), _raw()]
