"""Records in the Confluent schema-registry wire format, against a real registry (Apicurio
Registry's Confluent-compatible API, started by the tests): the ids are the registry's, a
reader that is not mailferry's decodes them (packs too, whose schema has a subject of its
own), mailferry's readers take both encodings, and a trace finds a story written half in
each."""

from __future__ import annotations

import io
import json
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import avro.io
import avro.schema
import pytest
from fastavro.schema import parse_schema, to_parsing_canonical_form
from typer.testing import CliRunner

from mailferry.cli.context import CliContext
from mailferry.cli.main import app
from mailferry.config.kafka import KafkaConfig
from mailferry.kafka.topics import AUDIT, full_name
from mailferry.packing import AUDIT_PACK, DELIVERY_PACK
from mailferry.schemas import AUDIT_EVENT, DELIVERY, UnknownSchemaError, codec, confluent
from mailferry.schemas.codec import AUDIT_BATCH, DELIVERY_BATCH
from mailferry.schemas.registry import expanded
from mailferry_testkit.schema_registry import SchemaRegistry
from tests.deliver.conftest import delivery_record
from tests.ops.test_audit_index import build, send, story, topics  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchemaRegistry]:
    with SchemaRegistry(tmp_path_factory.mktemp("registry")) as server:
        yield server


@pytest.fixture
def wire(registry: SchemaRegistry) -> Iterator[confluent.WireFormat]:
    run = uuid.uuid4().hex[:8]
    subjects = {
        AUDIT_EVENT: f"t{run}.audit-value",
        DELIVERY: f"t{run}.deliver-value",
        AUDIT_BATCH: f"t{run}.audit-io.mailferry.AuditBatch",
        DELIVERY_BATCH: f"t{run}.deliver-io.mailferry.DeliveryBatch",
    }
    format_ = confluent.WireFormat(confluent.RegistryClient(registry.url), subjects)
    confluent.use(format_)
    yield format_
    confluent.use(None)


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def canonical(schema: Any) -> str:
    return str(to_parsing_canonical_form(parse_schema(schema, _write_hint=False)))


def an_audit_event() -> tuple[dict[str, Any], bytes]:
    event = codec(AUDIT_EVENT).decode(story(7)[1][1])
    return event, codec(AUDIT_EVENT).encode(event)


def test_audit_and_deliver_records_carry_the_id_the_registry_gave_their_schema(
    registry: SchemaRegistry, wire: confluent.WireFormat
) -> None:
    _, audit_bytes = an_audit_event()
    delivery_bytes = codec(DELIVERY).encode(delivery_record("bob@acme.example", b"hello"))
    for name, data in ((AUDIT_EVENT, audit_bytes), (DELIVERY, delivery_bytes)):
        assert data[:1] == b"\x00"
        schema_id = int.from_bytes(data[1:5], "big")
        latest = get(f"{registry.url}/subjects/{wire.subjects[name]}/versions/latest")
        assert latest["id"] == schema_id
        kept = json.loads(get(f"{registry.url}/schemas/ids/{schema_id}")["schema"])
        assert canonical(kept) == canonical(expanded(name))
    assert codec(AUDIT_EVENT).encode(an_audit_event()[0])[1:5] == audit_bytes[1:5]  # registered once


def test_a_reader_that_is_not_mailferrys_decodes_them(
    registry: SchemaRegistry, wire: confluent.WireFormat
) -> None:
    """What a Confluent deserializer does: id from the header, schema from the registry by id,
    then plain Avro binary (Apache Avro's own reader here, not fastavro)."""
    event, data = an_audit_event()
    schema_id = int.from_bytes(data[1:5], "big")
    schema = avro.schema.parse(get(f"{registry.url}/schemas/ids/{schema_id}")["schema"])
    decoded = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(data[5:])))
    assert decoded["event_id"] == event["event_id"] and decoded["message_id"] == event["message_id"]
    assert decoded["tenant"] == event["tenant"] and decoded["event"] == event["event"]


def apache_avro(registry: SchemaRegistry, data: bytes) -> Any:
    """A Confluent deserializer's reading: the schema by the header's id, Apache Avro's reader."""
    schema = avro.schema.parse(
        get(f"{registry.url}/schemas/ids/{int.from_bytes(data[1:5], 'big')}")["schema"]
    )
    return avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(data[5:])))


def test_packs_go_under_their_own_subject_and_a_reader_that_is_not_mailferrys_decodes_them(
    registry: SchemaRegistry, wire: confluent.WireFormat
) -> None:
    events = [codec(AUDIT_EVENT).decode(value) for _key, value in story(8)]
    deliveries = [
        codec(DELIVERY).decode(codec(DELIVERY).encode(delivery_record(who, b"hello")))
        for who in ("bob@acme.example", "eve@acme.example")
    ]
    cases = [(AUDIT_PACK, events, "events"), (DELIVERY_PACK, deliveries, "deliveries")]
    written = []
    for pack, items, field in cases:
        packed = pack.pack([codec(pack.single).encode(item) for item in items])
        assert packed[:1] == b"\x00"
        latest = get(f"{registry.url}/subjects/{wire.subjects[pack.batch]}/versions/latest")
        assert latest["id"] == int.from_bytes(packed[1:5], "big")
        assert json.loads(latest["schema"])["name"] == expanded(pack.batch)["name"]
        decoded = apache_avro(registry, packed)[field]
        assert [list(d.items())[:3] for d in decoded] == [list(i.items())[:3] for i in items]
        assert pack.unpack(packed) == items
        written.append((packed, codec(pack.single).encode(items[0])))
    # a reader that registered nothing fetches both ids and tells the pack from the plain record
    confluent.use(confluent.WireFormat(confluent.RegistryClient(registry.url), wire.subjects))
    for (pack, items, _field), (packed, single) in zip(cases, written, strict=True):
        assert pack.unpack(packed) == items
        assert pack.unpack(single) == items[:1]


def test_readers_take_both_encodings_and_fetch_an_id_they_have_not_seen(
    registry: SchemaRegistry, wire: confluent.WireFormat
) -> None:
    event, registry_bytes = an_audit_event()
    confluent.use(None)
    single_object = codec(AUDIT_EVENT).encode(event)
    assert single_object[:2] == b"\xc3\x01"
    with pytest.raises(UnknownSchemaError, match=f"schema id {int.from_bytes(registry_bytes[1:5], 'big')}"):
        codec(AUDIT_EVENT).decode(registry_bytes)

    fresh = confluent.WireFormat(confluent.RegistryClient(registry.url), wire.subjects)  # nothing cached
    confluent.use(fresh)
    assert codec(AUDIT_EVENT).decode(registry_bytes) == event
    assert codec(AUDIT_EVENT).decode(single_object) == event

    bad = b"\x00" + (2**31 - 1).to_bytes(4, "big") + registry_bytes[5:]
    with pytest.raises(UnknownSchemaError, match=r"schema registry .*/schemas/ids/2147483647"):
        codec(AUDIT_EVENT).decode(bad)


@pytest.mark.integration
def test_a_trace_finds_a_story_written_half_before_and_half_after_the_switch(
    registry: SchemaRegistry,
    topics: KafkaConfig,  # noqa: F811
    tmp_path: Path,
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        + topics.connection_toml()
        + f'[audit_index]\npath = "{tmp_path / "index"}"\n'
        + f'[schema_registry]\nurl = "{registry.url}"\n',
        encoding="utf-8",
    )
    events = story(1)
    send(topics, events[:2])  # single-object, before the deployment turned the registry on
    runner = CliRunner()
    try:
        CliContext(config).config  # noqa: B018  (loading the config turns the wire format on)
        rewritten = [
            (key, codec(AUDIT_EVENT).encode(codec(AUDIT_EVENT).decode(value))) for key, value in events[2:]
        ]
        rewritten[1:] = [(rewritten[1][0], AUDIT_PACK.pack([value for _key, value in rewritten[1:]]))]
        assert all(value[:1] == b"\x00" for _, value in rewritten)
        send(topics, rewritten)
        for (_key, value), subject in zip(rewritten, ("value", "io.mailferry.AuditBatch"), strict=True):
            latest = get(f"{registry.url}/subjects/{full_name(topics, AUDIT)}-{subject}/versions/latest")
            assert latest["id"] == int.from_bytes(value[1:5], "big")
        build(topics, tmp_path / "index").close()
        result = runner.invoke(app, ["-c", str(config), "audit", "trace", "--json", "<msg-1@example.org>"])
        assert result.exit_code == 0, result.output
        traced = json.loads(result.output)
        assert traced["via"] == "index"
        assert sorted(e["event"] for e in traced["events"]) == [
            "delivered",
            "delivered",
            "fetched",
            "routed",
            "routed",
        ]
    finally:
        confluent.use(None)
