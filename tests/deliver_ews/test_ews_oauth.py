"""App-only OAuth2 (Exchange Online style) against the EWS EMULATOR's token endpoint."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mailferry.config.types import SecretRef
from mailferry.consumers.target import DeliveryItem
from mailferry.consumers.targets.ews import target as ews
from mailferry.errors import TenantError
from mailferry_testkit.ews_emulator.server import EwsEmulator

from .conftest import make_tenant


@pytest.fixture(autouse=True)
def _plain_http_oauth(monkeypatch: pytest.MonkeyPatch) -> None:
    # oauthlib refuses tokens over http; the emulator is on loopback without TLS.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")


def oauth_fields(emulator: EwsEmulator, secret: str) -> dict[str, object]:
    return {
        "auth": "oauth2",
        "username": None,
        "password": None,
        "tenant_id": "contoso-tenant",
        "client_id": "mailferry-app",
        "client_secret": SecretRef.plaintext(secret),
        "token_url": emulator.token_url("contoso-tenant"),
    }


def test_app_only_token_impersonates_each_mailbox(
    emulator: EwsEmulator, item_for: Callable[..., DeliveryItem]
) -> None:
    emulator.add_account("exo-app", "unused-password")
    emulator.add_app("mailferry-app", "app secret", "contoso-tenant", "exo-app")
    target = ews.create(*make_tenant(emulator, **oauth_fields(emulator, "app secret")))
    target.check_credentials()
    target.deliver(item_for("sales@contoso.example"))
    target.deliver(item_for("bob@contoso.example"))
    [alice] = emulator.items("alice@contoso.example")
    [bob] = emulator.items("bob@contoso.example")
    assert (alice.written_by, alice.impersonated_as) == ("exo-app", "alice@contoso.example")
    assert bob.impersonated_as == "bob@contoso.example"
    assert emulator.oauth.issued == 1  # one token for every mailbox


def test_wrong_client_secret_is_tenant_wide(emulator: EwsEmulator) -> None:
    emulator.add_account("exo-app", "unused-password")
    emulator.add_app("mailferry-app", "app secret", "contoso-tenant", "exo-app")
    target = ews.create(*make_tenant(emulator, **oauth_fields(emulator, "stale secret")))
    with pytest.raises(TenantError) as caught:
        target.check_credentials()
    assert caught.value.reason_code == "bad-credentials"
