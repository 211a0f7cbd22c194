"""Avro schemas, the contract between the pipeline's stages, and their codec."""

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
    SCHEMA_NAMES,
    Codec,
    UnknownSchemaError,
    codec,
)

__all__ = [
    "AUDIT_BATCH",
    "AUDIT_EVENT",
    "DEAD_LETTER",
    "DELIVERY",
    "DELIVERY_BATCH",
    "FETCH_STATE",
    "MAILBOX_CONFIG",
    "RAW_BATCH",
    "RAW_MESSAGE",
    "SCHEMA_NAMES",
    "Codec",
    "UnknownSchemaError",
    "codec",
]
