"""Avro schemas: single-object encoding, and every change stays backward compatible."""

from __future__ import annotations

import io
import itertools
import json
import sys
from datetime import UTC, datetime

import avro.schema
import fastavro
import pytest
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from mailferry.schemas import SCHEMA_NAMES, UnknownSchemaError, codec
from mailferry.schemas.codec import Codec, schema_fingerprint
from mailferry.schemas.registry import expanded, history

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)

SAMPLES = {
    "raw_message": {
        "tenant": "acme",
        "mailbox_id": "box",
        "source_kind": "pop3",
        "size": 3,
        "sha256": "ab",
        "fetched_at": NOW,
        "inline": b"abc",
    },
    "delivery": {
        "delivery_id": "d1",
        "tenant": "acme",
        "recipient": "a@acme.example",
        "target": "ews",
        "dedup_key": "k",
        "mailbox_id": "box",
        "size": 3,
        "sha256": "ab",
        "routed_at": NOW,
        "reasons": [{"kind": "envelope", "detail": "Delivered-To #1"}],
        "flags": ["possible-lost-bcc"],
    },
}


def compatible(reader: object, writer: object) -> bool:
    checker = ReaderWriterCompatibilityChecker()
    result = checker.get_compatibility(
        avro.schema.parse(json.dumps(reader)), avro.schema.parse(json.dumps(writer))
    )
    return bool(result.compatibility is SchemaCompatibilityType.compatible)


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_schema_has_a_released_version(name: str) -> None:
    assert history(name), f"schemas/history/{name}/ is empty: run python -m mailferry.schemas.snapshot"


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_current_schema_is_released(name: str) -> None:
    """A changed .avsc must be snapshotted, so the next change is checked against it."""
    assert schema_fingerprint(expanded(name)) == schema_fingerprint(history(name)[-1][1])


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_each_version_reads_its_predecessors(name: str) -> None:
    versions = [schema for _, schema in history(name)] + [expanded(name)]
    for older, newer in itertools.pairwise(versions):
        assert compatible(newer, older)


def test_checker_catches_an_incompatible_change() -> None:
    old = expanded("raw_message")
    new = json.loads(json.dumps(old))
    new["fields"].append({"name": "must_have", "type": "string"})  # no default: breaks old data
    assert not compatible(new, old)
    new["fields"][-1]["default"] = ""
    assert compatible(new, old)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_round_trip_with_single_object_header(name: str) -> None:
    c = codec(name)
    data = c.encode(SAMPLES[name])
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == c.fingerprint
    decoded = c.decode(data)
    for key, value in SAMPLES[name].items():
        assert decoded[key] == value


def test_dead_letter_embeds_a_delivery() -> None:
    record = {
        "dead_letter_id": "x",
        "stage": "deliver",
        "tenant": "acme",
        "error_class": "permanent",
        "reason_code": "no-such-mailbox",
        "error_message": "ErrorNonExistentMailbox",
        "origin_topic": "mailferry.deliver",
        "origin_partition": 2,
        "origin_offset": 41,
        "failed_at": NOW,
        "delivery": SAMPLES["delivery"],
    }
    decoded = codec("dead_letter").decode(codec("dead_letter").encode(record))
    assert decoded["delivery"]["recipient"] == "a@acme.example"
    assert decoded["raw"] is None


def test_reader_resolves_an_older_writer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A record written with a released older schema still decodes with the current one."""
    old = json.loads(json.dumps(expanded("audit_event")))
    old["fields"] = [f for f in old["fields"] if f["name"] != "details"]
    module = sys.modules["mailferry.schemas.codec"]  # the package re-exports a function named codec
    monkeypatch.setattr(module, "history", lambda name: [("v0", old)] if name == "audit_event" else [])
    current = Codec("audit_event")
    buffer = io.BytesIO()
    buffer.write(b"\xc3\x01" + schema_fingerprint(old))
    fastavro.schemaless_writer(
        buffer,
        fastavro.parse_schema(old),
        {"event_id": "e", "event": "fetched", "at": NOW, "stage": "fetch", "tenant": "acme"},
    )
    decoded = current.decode(buffer.getvalue())
    assert decoded["event"] == "fetched"
    assert decoded["details"] == {}


def test_unknown_fingerprint_and_garbage_are_refused() -> None:
    c = codec("raw_message")
    data = bytearray(c.encode(SAMPLES["raw_message"]))
    data[5] ^= 0xFF
    with pytest.raises(UnknownSchemaError, match="unknown writer schema"):
        c.decode(bytes(data))
    with pytest.raises(UnknownSchemaError, match="not an Avro single-object record"):
        c.decode(b"From: someone\r\n")
