"""Fixtures: the project's EWS EMULATOR (not Microsoft Exchange) and an EWS target pointing at it;
for the delivery-worker tests, EWS and GRAPH EMULATORS of the acme tenant and worker threads."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import timedelta
from typing import Any, BinaryIO

import httpx
import pytest

from mailferry.config.models import Tenant
from mailferry.config.targets import EwsTarget, GraphTarget
from mailferry.config.types import SecretRef
from mailferry.consumers.target import DeliveryItem
from mailferry_testkit.ews_emulator.server import EwsEmulator
from mailferry_testkit.graph_emulator import GraphEmulator

from ..deliver.conftest import start_worker as start_worker  # the delivery tests' fixture, here too
from .workers import exchange_with, graph_with

SERVICE_USER = "svc-mailferry"
SERVICE_PASSWORD = "correct horse"
GRAPH_TENANT, GRAPH_APP, GRAPH_SECRET = "contoso-tenant", "mailferry-app", "app secret"


@pytest.fixture
def emulator() -> Iterator[EwsEmulator]:
    emu = EwsEmulator().start()
    emu.add_account(SERVICE_USER, SERVICE_PASSWORD)
    emu.add_mailbox("postmaster@contoso.example")
    emu.add_mailbox("alice@contoso.example", aliases=("a.smith@contoso.example", "sales@contoso.example"))
    emu.add_mailbox("alice.jones@contoso.example")
    emu.add_mailbox("bob@contoso.example")
    try:
        yield emu
    finally:
        emu.stop()


def make_tenant(emulator: EwsEmulator, **target_fields: Any) -> tuple[Tenant, EwsTarget]:
    fields: dict[str, Any] = {
        "name": "exchange",
        "kind": "ews",
        "endpoint": emulator.url,
        "version": "Exchange2016",
        "auth": "basic",
        "username": SERVICE_USER,
        "password": SecretRef.plaintext(SERVICE_PASSWORD),
        "timeout": timedelta(seconds=5),
    }
    fields.update(target_fields)
    target = EwsTarget(**fields)
    return _contoso(target, aliases={"info@contoso.example": "bob@contoso.example"}), target


def make_graph_tenant(emulator: GraphEmulator, **target_fields: Any) -> tuple[Tenant, GraphTarget]:
    """Tenant contoso delivering through a Graph target: the EMULATOR's app ``mailferry-app``."""
    fields: dict[str, Any] = {
        "name": "graph",
        "kind": "graph",
        "mode": "import-mime",
        "base_url": emulator.base_url,
        "authority": emulator.authority(GRAPH_TENANT),
        "ca_file": emulator.identity_ca_file,
        "tenant_id": GRAPH_TENANT,
        "client_id": GRAPH_APP,
        "client_secret": SecretRef.plaintext(GRAPH_SECRET),
        "timeout": timedelta(seconds=5),
    }
    fields.update(target_fields)
    target = GraphTarget(**fields)
    return _contoso(target), target


def _contoso(target: EwsTarget | GraphTarget, **fields: Any) -> Tenant:
    return Tenant(
        id="contoso",
        accepted_domains=["contoso.example"],
        default_mailbox="postmaster@contoso.example",
        default_target=target.name,
        targets=[target],
        **fields,
    )


def graph_token(emulator: GraphEmulator) -> str:
    """An app-only access token of ``mailferry-app`` from the EMULATOR's token endpoint."""
    reply = httpx.post(
        emulator.token_url(GRAPH_TENANT),
        data={
            "grant_type": "client_credentials",
            "client_id": GRAPH_APP,
            "client_secret": GRAPH_SECRET,
            "scope": "https://graph.microsoft.com/.default",
        },
    )
    return str(reply.json()["access_token"])


def message(
    message_id: str | None = None, *, received: str | None = None, body: bytes = b"Hello.\r\n"
) -> bytes:
    mid = message_id or f"<{uuid.uuid4().hex}@sender.example>"
    lines = [
        f"Received: from mx.isp.example by pop.isp.example; {received or 'Tue, 03 Mar 2026 10:20:30 +0100'}",
        "From: Carol <carol@sender.example>",
        "To: alice@contoso.example",
        "Subject: quarterly figures",
        "Date: Tue, 03 Mar 2026 10:19:00 +0100",
        f"Message-ID: {mid}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def make_item(
    mailbox: str,
    data: bytes | None = None,
    *,
    open_message: Callable[[], BinaryIO] | None = None,
    **kwargs: Any,
) -> DeliveryItem:
    """A delivery of ``data`` (a sample message by default) for tenant contoso."""
    raw = data if data is not None else message()
    return DeliveryItem(
        tenant="contoso",
        mailbox=mailbox,
        dedup_key=uuid.uuid4().hex,
        message_id=None,
        size=len(raw),
        sha256="0" * 64,
        open_message=open_message or (lambda: io.BytesIO(raw)),
        **kwargs,
    )


@pytest.fixture
def item_for() -> Callable[..., DeliveryItem]:
    return make_item


@pytest.fixture
def start_exchange() -> Iterator[Callable[..., EwsEmulator]]:
    """Starts EWS EMULATORS for the worker tests (arguments of ``workers.exchange_with``);
    each is stopped when the test ends."""
    with ExitStack() as running:
        yield lambda *args, **options: running.enter_context(exchange_with(*args, **options))


@pytest.fixture
def start_graph() -> Iterator[Callable[..., GraphEmulator]]:
    """Starts GRAPH EMULATORS for the worker tests (arguments of ``workers.graph_with``);
    each is stopped when the test ends."""
    with ExitStack() as running:
        yield lambda *args: running.enter_context(graph_with(*args))
