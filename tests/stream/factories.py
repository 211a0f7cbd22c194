"""Config and message builders shared by the stream tests."""

from __future__ import annotations

from typing import Any

from mailferry.config.models import MailferryConfig, Tenant
from mailferry.packing import AUDIT_PACK, DELIVERY_PACK
from mailferry.schemas.codec import AUDIT_EVENT, DELIVERY, Record, codec

DOMAIN = "acme.example"
TRACE_KEY = b"test trace key, 32 characters or more"
PACKS = {AUDIT_EVENT: AUDIT_PACK, DELIVERY: DELIVERY_PACK}


def decoded(schema: str, value: bytes) -> list[Record]:
    """The items of one record: every item of a pack on the packed topics (mailferry.packing)."""
    return PACKS[schema].unpack(value) if schema in PACKS else [codec(schema).decode(value)]


def tenant(**overrides: Any) -> Tenant:
    base: dict[str, Any] = {
        "id": "acme",
        "accepted_domains": [DOMAIN, "bücher.example"],
        "default_mailbox": f"postmaster@{DOMAIN}",
        "default_target": "box",
        "targets": [
            {"kind": "maildir", "name": "box", "path": "/tmp/mailferry-test-box"},
            {"kind": "maildir", "name": "archive", "path": "/tmp/mailferry-test-archive"},
        ],
        "sources": [
            {
                "kind": "pop3",
                "id": "catchall",
                "mode": "global",
                "host": "pop.isp.example",
                "username": "catchall",
                "auth": {"kind": "password", "password": "env:NOPE"},
            },
            {
                "kind": "imap",
                "id": "alice-private",
                "mode": "personal",
                "host": "imap.isp.example",
                "username": "alice",
                "deliver_to": f"Alice@{DOMAIN}",
                "auth": {"kind": "password", "password": "env:NOPE"},
            },
            {
                "kind": "pop3",
                "id": "guessing",
                "mode": "global",
                "host": "pop.isp.example",
                "username": "guess",
                "guess_from_headers": True,
                "auth": {"kind": "password", "password": "env:NOPE"},
            },
            {
                "kind": "pop3",
                "id": "last-trusted",
                "mode": "global",
                "host": "pop.isp.example",
                "username": "last",
                "trusted_occurrence": "last",
                "envelope_headers": ["X-Original-To", "Delivered-To"],
                "auth": {"kind": "password", "password": "env:NOPE"},
            },
        ],
    }
    base.update(overrides)
    return Tenant.model_validate(base)


def config(state_dir: str | None = None, **stream: Any) -> MailferryConfig:
    document: dict[str, Any] = {"tenants": [tenant().model_dump(mode="json")], "stream": stream}
    if state_dir is not None:
        document["state_dir"] = state_dir
    return MailferryConfig.model_validate(document)


def message(*headers: tuple[str, str], body: str = "Hello\r\n") -> bytes:
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return (lines + "\r\n" + body).encode("utf-8")
