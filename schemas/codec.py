"""Avro single-object encoding with fastavro.

Every record on a mailferry topic starts with the two marker bytes ``C3 01`` and the
8-byte CRC-64-AVRO fingerprint of its writer schema, so a reader can pick the right writer
schema (the current one or any released version from ``history/``) and resolve it to its
own. That is what lets stages be upgraded one at a time.

A deployment with a schema registry writes ``audit`` and ``deliver`` records in the
registry's wire format instead (``mailferry.schemas.confluent``); every reader accepts both.
"""

from __future__ import annotations

import io
from functools import cache
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from mailferry.errors import PermanentError
from mailferry.schemas import confluent
from mailferry.schemas.registry import SCHEMA_FILES, expanded, history

MAILBOX_CONFIG = "mailbox_config"
FETCH_STATE = "fetch_state"
RAW_MESSAGE = "raw_message"
RAW_BATCH = "raw_batch"
DELIVERY = "delivery"
DELIVERY_BATCH = "delivery_batch"
AUDIT_EVENT = "audit_event"
AUDIT_BATCH = "audit_batch"
DEAD_LETTER = "dead_letter"
SCHEMA_NAMES = SCHEMA_FILES

MARKER = b"\xc3\x01"
HEADER_SIZE = len(MARKER) + 8

Record = dict[str, Any]


class UnknownSchemaError(PermanentError):
    """A record whose writer schema this reader does not know (or that is not Avro at all)."""

    reason_code = "unknown-schema"


def schema_fingerprint(schema: Any) -> bytes:
    parsed = fastavro.parse_schema(schema, _write_hint=False)
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


class Codec:
    """Encoder/decoder for one schema; cheap to share between threads."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.declared = expanded(name)
        self.schema: Any = fastavro.parse_schema(self.declared)
        self.fingerprint = schema_fingerprint(expanded(name))
        self._header = MARKER + self.fingerprint
        self._writers: dict[bytes, Any] = {self.fingerprint: self.schema}
        for _label, old in history(name):
            self._writers.setdefault(schema_fingerprint(old), fastavro.parse_schema(old))

    def header(self) -> bytes:
        """What ``encode`` writes before the Avro body: the registry's wire-format header when
        this schema goes through a registry, else the single-object header."""
        wire = confluent.active()
        if wire is not None and wire.writes(self.name):
            return wire.header(self.name, self.declared)
        return self._header

    def encode(self, record: Record) -> bytes:
        buffer = io.BytesIO()
        buffer.write(self.header())
        fastavro.schemaless_writer(buffer, self.schema, record)
        return buffer.getvalue()

    def decode(self, data: bytes) -> Record:
        if data[:1] == confluent.MAGIC and len(data) >= confluent.HEADER_SIZE:
            writer, start = self._registry_writer(data), confluent.HEADER_SIZE
        elif len(data) >= HEADER_SIZE and data[:2] == MARKER:
            writer, start = self._writers.get(bytes(data[2:HEADER_SIZE])), HEADER_SIZE
            if writer is None:
                raise UnknownSchemaError(
                    f"{self.name}: unknown writer schema fingerprint {bytes(data[2:HEADER_SIZE]).hex()}"
                )
        else:
            raise UnknownSchemaError(
                f"{self.name}: not an Avro single-object record (nor a schema-registry one)"
            )
        reader = None if writer is self.schema else self.schema
        # read in place: a slice would copy the whole record (a raw pack is megabytes) first
        source = io.BytesIO(data)
        source.seek(start)
        result = fastavro.schemaless_reader(source, writer, reader)
        if not isinstance(result, dict):
            raise UnknownSchemaError(f"{self.name}: decoded to {type(result).__name__}, not a record")
        return result

    def _registry_writer(self, data: bytes) -> Any:
        schema_id = confluent.schema_id(data)
        wire = confluent.active()
        if wire is None:
            raise UnknownSchemaError(
                f"{self.name}: a schema-registry record (schema id {schema_id}) "
                "and no [schema_registry] url is configured"
            )
        if wire.registered(self.name) == schema_id:
            return self.schema
        try:
            writer = wire.writer(schema_id)
        except confluent.RegistryRefusedError as exc:
            raise UnknownSchemaError(f"{self.name}: {exc}") from exc
        if writer.get("name") != self.schema["name"]:  # e.g. a pack: another record on one topic
            raise UnknownSchemaError(f"{self.name}: schema id {schema_id} is {writer.get('name')}")
        return writer


def avro_body(data: bytes) -> memoryview:
    """The Avro body of an encoded record, without whichever of the two headers it carries."""
    size = confluent.HEADER_SIZE if data[:1] == confluent.MAGIC else HEADER_SIZE
    return memoryview(data)[size:]


@cache
def codec(name: str) -> Codec:
    """The shared codec for one of ``SCHEMA_NAMES``."""
    return Codec(name)
