"""Typed views of topic records, checked field for field against their ``.avsc``.

The codec decodes to ``dict[str, Any]``; a stage that reads a record through one of these
``TypedDict``s gets its field names and types checked by mypy, and
``tests/foundation/test_typed_records.py`` fails when a schema and its view drift apart (a
field added, removed or retyped on one side only). Records whose formats are being changed
elsewhere (raw, deliver) are not typed here yet.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypedDict, cast

from mailferry.schemas.codec import MAILBOX_CONFIG, codec


class MailboxConfig(TypedDict):
    """Value of ``mailferry.mailboxes`` (compacted, keyed tenant/mailbox)."""

    tenant: str
    mailbox_id: str
    kind: str
    mode: str
    config_json: str
    config_sha256: str
    updated_at: datetime


TYPED: dict[str, type] = {MAILBOX_CONFIG: MailboxConfig}
"""Schema name -> its typed view (what the test checks)."""


def decode_mailbox_config(data: bytes) -> MailboxConfig:
    return cast(MailboxConfig, codec(MAILBOX_CONFIG).decode(data))


def encode_mailbox_config(record: MailboxConfig) -> bytes:
    return codec(MAILBOX_CONFIG).encode(dict(record))
