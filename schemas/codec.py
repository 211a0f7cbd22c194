"""Avro single-object encoding with fastavro.

Every record on a mailferry topic starts with the two marker bytes ``C3 01`` and the
8-byte CRC-64-AVRO fingerprint of its writer schema, so a reader can pick the right writer
schema (the current one or any released version from ``history/``) and resolve it to its
own. That is what lets stages be upgraded one at a time.
"""

from __future__ import annotations

import io
from functools import cache
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form
from mailferry.schemas.registry import SCHEMA_FILES, expanded, history

from mailferry.errors import PermanentError

MAILBOX_CONFIG = "mailbox_config"
FETCH_STATE = "fetch_state"
RAW_MESSAGE = "raw_message"
DELIVERY = "delivery"
AUDIT_EVENT = "audit_event"
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
        self.schema = fastavro.parse_schema(expanded(name))
        self.fingerprint = schema_fingerprint(expanded(name))
        self._header = MARKER + self.fingerprint
        self._writers: dict[bytes, Any] = {self.fingerprint: self.schema}
        for _label, old in history(name):
            self._writers.setdefault(schema_fingerprint(old), fastavro.parse_schema(old))

    def encode(self, record: Record) -> bytes:
        buffer = io.BytesIO()
        buffer.write(self._header)
        fastavro.schemaless_writer(buffer, self.schema, record)
        return buffer.getvalue()

    def decode(self, data: bytes) -> Record:
        if len(data) < HEADER_SIZE or data[:2] != MARKER:
            raise UnknownSchemaError(f"{self.name}: not an Avro single-object record")
        writer = self._writers.get(bytes(data[2:HEADER_SIZE]))
        if writer is None:
            raise UnknownSchemaError(
                f"{self.name}: unknown writer schema fingerprint {bytes(data[2:HEADER_SIZE]).hex()}"
            )
        reader = None if writer is self.schema else self.schema
        result = fastavro.schemaless_reader(io.BytesIO(data[HEADER_SIZE:]), writer, reader)
        if not isinstance(result, dict):
            raise UnknownSchemaError(f"{self.name}: decoded to {type(result).__name__}, not a record")
        return result


@cache
def codec(name: str) -> Codec:
    """The shared codec for one of ``SCHEMA_NAMES``."""
    return Codec(name)
