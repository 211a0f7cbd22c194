"""The ``mailferry.mailboxes`` topic: every configured source as one compacted record.

Kafka's consumer-group assignment on this topic decides which fetch worker polls which
mailbox. The record carries the source's settings with every secret as a reference, never a
value: ``env:…`` and ``file:…`` as written, a clear-text secret (allowed in demo configs) as
``config:<field>``. A worker polls a mailbox with the source of its *own* config file, and only
when that source's wire form equals the record: a topic writer can neither read a secret nor
point a worker's credentials at another host.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mailferry.config import MailferryConfig
from mailferry.config.sources import Source
from mailferry.config.types import SecretRef
from mailferry.errors import ConfigError
from mailferry.kafka.clients import new_producer
from mailferry.kafka.confirm import ConfirmedSends
from mailferry.kafka.scan import scan_topic
from mailferry.kafka.topics import MAILBOXES, full_name
from mailferry.rawrecord import raw_key
from mailferry.schemas.records import MailboxConfig, decode_mailbox_config, encode_mailbox_config


def _wire(value: Any, path: str) -> Any:
    if isinstance(value, SecretRef):
        return f"config:{path}" if value.is_plaintext else value.reference
    if isinstance(value, BaseModel):
        return {
            name: _wire(getattr(value, name), f"{path}.{name}".lstrip("."))
            for name in type(value).model_fields
        }
    if isinstance(value, timedelta):
        return f"{value.total_seconds():g}s"
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_wire(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _wire(v, f"{path}.{k}") for k, v in value.items()}
    return value


def source_json(source: Source) -> str:
    """The source as published: its settings, every secret as a reference (never a value)."""
    return json.dumps(_wire(source, ""), sort_keys=True, separators=(",", ":"))


def resolve_source(config: MailferryConfig, tenant: str, mailbox_id: str, config_json: str) -> Source:
    """The source a worker polls for a record: its own config file's, when the record matches it."""
    where = f"mailbox {tenant}/{mailbox_id}"
    try:
        own = next(s for s in config.tenant(tenant).sources if s.id == mailbox_id)
    except (KeyError, StopIteration):
        raise ConfigError(
            f"{where} is in Kafka but not in this worker's config file; not polled "
            "(run every fetch worker with the config that `mailboxes sync` published)"
        ) from None
    if source_json(own) != config_json:
        raise ConfigError(
            f"{where}: the config in Kafka differs from this worker's config file; not polled "
            "(restart the worker with the file that was synced)"
        )
    return own


def mailbox_record(tenant: str, source: Source) -> MailboxConfig:
    text = source_json(source)
    return {
        "tenant": tenant,
        "mailbox_id": source.id,
        "kind": source.kind,
        "mode": source.mode,
        "config_json": text,
        "config_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "updated_at": datetime.now(UTC),
    }


@dataclass
class SyncReport:
    published: list[str]
    unchanged: list[str]
    removed: list[str]

    def lines(self) -> list[str]:
        return [
            *(f"published {key}" for key in self.published),
            *(f"unchanged {key}" for key in self.unchanged),
            *(f"removed   {key} (tombstone)" for key in self.removed),
        ]


def current_mailboxes(config: MailferryConfig, servers: list[str]) -> dict[str, str]:
    """``{key: config_sha256}`` of what the topic says now (tombstoned keys left out)."""
    current: dict[str, str] = {}
    for rec in scan_topic(config.kafka, servers, full_name(config.kafka, MAILBOXES)):
        key = rec.key.decode()
        if rec.value is None:
            current.pop(key, None)
        else:
            current[key] = decode_mailbox_config(rec.value)["config_sha256"]
    return current


def sync_mailboxes(config: MailferryConfig, servers: list[str]) -> SyncReport:
    """Publish changed sources, tombstone removed ones; wait until Kafka acknowledged all."""
    topic = full_name(config.kafka, MAILBOXES)
    existing = current_mailboxes(config, servers)
    producer = new_producer(config.kafka, servers)
    report = SyncReport([], [], [])
    try:
        sends: ConfirmedSends[None] = ConfirmedSends(producer)
        wanted: set[str] = set()
        for tenant in config.tenants:
            for source in tenant.sources:
                record = mailbox_record(tenant.id, source)
                key = raw_key(tenant.id, source.id)
                wanted.add(key.decode())
                if existing.get(key.decode()) == record["config_sha256"]:
                    report.unchanged.append(key.decode())
                    continue
                sends.send(topic, key=key, value=encode_mailbox_config(record))
                report.published.append(key.decode())
        for key_text in sorted(set(existing) - wanted):
            sends.send(topic, key=key_text.encode(), value=None)
            report.removed.append(key_text)
        sends.confirm("mailbox configs")
    finally:
        producer.close(timeout=10)
    return report
