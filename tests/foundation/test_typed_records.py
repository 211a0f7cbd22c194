"""Each typed record view (``mailferry.schemas.records``) matches its ``.avsc`` field for field."""

from __future__ import annotations

import json
import typing
from datetime import datetime
from importlib import resources
from typing import Any, get_type_hints

import pytest

from mailferry.schemas.records import TYPED, MailboxConfig, decode_mailbox_config, encode_mailbox_config

PRIMITIVES: dict[str, Any] = {
    "string": str,
    "long": int,
    "int": int,
    "boolean": bool,
    "bytes": bytes,
    "double": float,
    "float": float,
}


def python_type(avro: Any) -> Any:
    """The type fastavro decodes an Avro field type to."""
    if isinstance(avro, list):
        members = [python_type(t) for t in avro if t != "null"]
        union = typing.Union[tuple(members)] if len(members) > 1 else members[0]  # noqa: UP007
        return union | None if "null" in avro else union
    if isinstance(avro, dict):
        if avro.get("logicalType", "").startswith("timestamp"):
            return datetime
        if avro["type"] == "map":
            return dict[str, python_type(avro["values"])]
        if avro["type"] == "array":
            return list[python_type(avro["items"])]
        return python_type(avro["type"])
    return PRIMITIVES[avro]


@pytest.mark.parametrize("schema", sorted(TYPED))
def test_the_typed_view_has_every_field_of_the_schema_with_its_type(schema: str) -> None:
    declared = json.loads(resources.files("mailferry.schemas").joinpath(f"{schema}.avsc").read_text())
    expected = {field["name"]: python_type(field["type"]) for field in declared["fields"]}
    assert get_type_hints(TYPED[schema]) == expected


def test_a_mailbox_config_round_trips_through_its_typed_view() -> None:
    record = MailboxConfig(
        tenant="acme",
        mailbox_id="catchall",
        kind="imap",
        mode="global",
        config_json="{}",
        config_sha256="0" * 64,
        updated_at=datetime(2026, 12, 3, 14, 0).astimezone(),
    )
    assert decode_mailbox_config(encode_mailbox_config(record)) == record
