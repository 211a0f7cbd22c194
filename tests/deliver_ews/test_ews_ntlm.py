"""NTLM (on-premises) through the real exchangelib and requests-ntlm against the EWS EMULATOR.

NTLM authenticates the connection in three legs and requests-ntlm sends the request body on
each of them, rewinding it in between: the streamed CreateItem body must survive that.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import BinaryIO

import pytest

from mailferry.config.types import SecretRef
from mailferry.consumers.target import DeliveryItem
from mailferry.consumers.targets.ews import target as ews
from mailferry.errors import TenantError
from mailferry_testkit.ews_emulator.server import EwsEmulator

from .conftest import SERVICE_USER, make_tenant
from .test_ews_stream import big_message

NTLM_USER = f"CONTOSO\\{SERVICE_USER}"


@pytest.fixture
def ntlm_emulator(emulator: EwsEmulator) -> EwsEmulator:
    emulator.enable_ntlm("CONTOSO")
    return emulator


def ntlm_target(emulator: EwsEmulator, **fields: object) -> ews.EwsDeliveryTarget:
    tenant, target = make_tenant(emulator, auth="ntlm", username=NTLM_USER, **fields)
    return ews.EwsDeliveryTarget(tenant, target)


def test_ntlm_authenticates_the_connection_once(
    ntlm_emulator: EwsEmulator, item_for: Callable[..., DeliveryItem]
) -> None:
    target = ntlm_target(ntlm_emulator)
    target.check_credentials()
    for _ in range(3):
        target.deliver(item_for("bob@contoso.example"))
    assert [i.written_by for i in ntlm_emulator.items("bob@contoso.example")] == [SERVICE_USER] * 3
    assert "Authorization" not in ntlm_emulator.last_headers["CreateItem"]  # the connection is


def test_streamed_body_is_rewound_and_resent_on_each_handshake_leg(emulator: EwsEmulator) -> None:
    emulator.enable_ntlm("CONTOSO", per_request=True)  # IIS authPersistSingleRequest
    target = ntlm_target(emulator, stream_threshold=65536)
    target.check_credentials()
    data = big_message(1024 * 1024)
    opened: list[io.BytesIO] = []

    def open_message() -> BinaryIO:
        opened.append(io.BytesIO(data))
        return opened[-1]

    item = DeliveryItem(
        tenant="contoso",
        mailbox="bob@contoso.example",
        dedup_key="k",
        message_id=None,
        size=len(data),
        sha256="0" * 64,
        open_message=open_message,
    )
    target.deliver(item)
    [stored] = emulator.items("bob@contoso.example")
    assert stored.mime == data
    assert (stored.written_by, stored.impersonated_as) == (SERVICE_USER, "bob@contoso.example")
    assert emulator.last_headers["CreateItem"]["Authorization"].startswith("NTLM ")
    # head + size, then the body once per leg (anonymous, negotiate, authenticate)
    assert len(opened) == 2 + 3
    assert all(source.closed for source in opened)


def test_ntlm_with_a_wrong_password_is_tenant_wide(ntlm_emulator: EwsEmulator) -> None:
    target = ntlm_target(ntlm_emulator, password=SecretRef.plaintext("nope"))
    with pytest.raises(TenantError) as caught:
        target.check_credentials()
    assert caught.value.reason_code == "bad-credentials"
