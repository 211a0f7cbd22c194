"""Avro schemas, the contract between the pipeline's stages, and their codec."""

from mailferry.schemas.codec import (
    AUDIT_EVENT,
    DEAD_LETTER,
    DELIVERY,
    FETCH_STATE,
    MAILBOX_CONFIG,
    RAW_MESSAGE,
    SCHEMA_NAMES,
    Codec,
    UnknownSchemaError,
    codec,
)

__all__ = [
    "AUDIT_EVENT",
    "DEAD_LETTER",
    "DELIVERY",
    "FETCH_STATE",
    "MAILBOX_CONFIG",
    "RAW_MESSAGE",
    "SCHEMA_NAMES",
    "Codec",
    "UnknownSchemaError",
    "codec",
]
