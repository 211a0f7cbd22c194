"""App-only tokens through msal with a certificate credential, against the project's ENTRA ID
EMULATOR (not Entra ID) in front of the GRAPH and EWS EMULATORS, over verified TLS.

The emulator checks the client assertion as Entra ID does; the tests at the end prove that it
refuses what Entra ID refuses, so a passing delivery means msal's assertion is a valid one.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from mailferry.config.loader import parse_config
from mailferry.config.types import SecretRef
from mailferry.consumers.target import DeliveryItem
from mailferry.consumers.targets.ews import target as ews
from mailferry.consumers.targets.graph import target as graph
from mailferry.errors import ConfigError, MailferryError, TenantError
from mailferry_testkit.ews_emulator.oauth import ASSERTION_TYPE
from mailferry_testkit.ews_emulator.server import EwsEmulator
from mailferry_testkit.graph_emulator import GraphEmulator
from mailferry_testkit.identity_emulator import app_certificate

from .conftest import make_tenant
from .test_graph_target import make_target

ItemFor = Callable[..., DeliveryItem]
KEY, CERT, THUMBPRINT = app_certificate("mailferry-app")
OTHER_KEY, OTHER_CERT, _ = app_certificate("someone else")


@pytest.fixture
def api() -> Iterator[GraphEmulator]:
    with GraphEmulator() as emu:
        emu.add_app("mailferry-app", None, "contoso-tenant", certificate=CERT.encode())
        emu.add_mailbox("postmaster@contoso.example")
        emu.add_mailbox("alice@contoso.example")
        yield emu


def graph_target(api: GraphEmulator, **fields: Any) -> graph.GraphDeliveryTarget:
    """The Graph target of ``test_graph_target`` with a certificate instead of its secret."""
    return make_target(api, client_secret=None, **fields)


def pem_file(tmp_path: Path, text: str) -> SecretRef:
    path = tmp_path / f"{uuid.uuid4().hex}.pem"
    path.write_text(text)
    return SecretRef(f"file:{path}")


def test_key_and_certificate_in_one_pem_deliver(
    api: GraphEmulator, item_for: ItemFor, tmp_path: Path
) -> None:
    target = graph_target(api, client_certificate=pem_file(tmp_path, KEY + CERT))
    target.check_credentials()
    target.deliver(item_for("alice@contoso.example"))
    target.deliver(item_for("alice@contoso.example"))
    assert len(api.items("alice@contoso.example")) == 2
    assert api.oauth.issued == 1  # msal keeps the token
    assert api.identity.discoveries == 1  # the authority's OpenID configuration, read once


def test_key_with_the_portal_thumbprint_delivers(
    api: GraphEmulator, item_for: ItemFor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_KEY", KEY)
    thumbprint = ":".join(THUMBPRINT[i : i + 2] for i in range(0, 40, 2)).lower()  # as some tools show it
    target = graph_target(
        api, client_certificate=SecretRef("env:APP_KEY"), client_certificate_thumbprint=thumbprint
    )
    target.deliver(item_for("alice@contoso.example"))
    assert len(api.items("alice@contoso.example")) == 1


def test_a_certificate_the_app_does_not_have_is_tenant_wide(api: GraphEmulator, tmp_path: Path) -> None:
    target = graph_target(api, client_certificate=pem_file(tmp_path, OTHER_KEY + OTHER_CERT))
    with pytest.raises(TenantError) as caught:
        target.check_credentials()
    assert caught.value.reason_code == "bad-credentials"
    assert "AADSTS700027" in str(caught.value)


def test_a_thumbprint_that_is_not_the_certificates_names_the_field(
    api: GraphEmulator, tmp_path: Path
) -> None:
    target = graph_target(
        api, client_certificate=pem_file(tmp_path, KEY + CERT), client_certificate_thumbprint="AB" * 20
    )
    with pytest.raises(MailferryError, match="client_certificate_thumbprint is not the thumbprint"):
        target.check_credentials()


def test_a_pem_without_key_or_certificate_names_the_field(api: GraphEmulator, tmp_path: Path) -> None:
    with pytest.raises(MailferryError, match=r"client_certificate \(file:.*\) holds no PEM private key"):
        graph_target(api, client_certificate=pem_file(tmp_path, CERT)).check_credentials()
    with pytest.raises(MailferryError, match="holds no certificate"):
        graph_target(api, client_certificate=pem_file(tmp_path, KEY)).check_credentials()


def test_an_untrusted_authority_is_refused(api: GraphEmulator, tmp_path: Path) -> None:
    """No ca_file: the emulator's CA is not trusted, and msal must not fetch anything."""
    target = graph_target(api, client_certificate=pem_file(tmp_path, KEY + CERT), ca_file=None)
    with pytest.raises(TenantError, match="CERTIFICATE_VERIFY_FAILED"):
        target.check_credentials()
    assert api.identity.discoveries == 0


def test_the_private_key_is_never_logged(
    api: GraphEmulator, item_for: ItemFor, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    target = graph_target(api, client_certificate=pem_file(tmp_path, KEY + CERT))
    target.deliver(item_for("alice@contoso.example"))
    body = KEY.splitlines()[5]
    assert body not in caplog.text
    assert body not in repr(target.client.target)


def test_ews_app_only_with_a_certificate_impersonates(
    emulator: EwsEmulator, item_for: ItemFor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the EWS EMULATOR itself is plain http
    emulator.add_account("exo-app", "unused-password")
    emulator.add_app("mailferry-app", None, "contoso-tenant", "exo-app", certificate=CERT.encode())
    fields = {
        "auth": "oauth2",
        "username": None,
        "password": None,
        "tenant_id": "contoso-tenant",
        "client_id": "mailferry-app",
        "client_certificate": pem_file(tmp_path, KEY + CERT),
        "authority": emulator.authority("contoso-tenant"),
        "ca_file": emulator.identity_ca_file,
    }
    target = ews.create(*make_tenant(emulator, **fields))
    target.check_credentials()
    target.deliver(item_for("alice@contoso.example"))
    target.deliver(item_for("bob@contoso.example"))
    [alice] = emulator.items("alice@contoso.example")
    assert (alice.written_by, alice.impersonated_as) == ("exo-app", "alice@contoso.example")
    assert emulator.oauth.issued == 1


CONFIG = """
allow_plaintext_secrets = true
[[tenants]]
id = "contoso"
accepted_domains = ["contoso.example"]
default_mailbox = "postmaster@contoso.example"
default_target = "out"
[[tenants.targets]]
name = "out"
kind = "graph"
tenant_id = "t"
client_id = "c"
{credentials}
"""


@pytest.mark.parametrize(
    ("credentials", "expected"),
    [
        (
            'client_secret = "s"\nclient_certificate = "env:PEM"',
            r":14: tenants\[0\]\.targets\[0\]\.client_certificate: ",
        ),
        ("", r"needs client_secret or client_certificate"),
        (
            'client_certificate = "env:PEM"\nclient_certificate_thumbprint = "12ab"',
            r"client_certificate_thumbprint: ",
        ),
    ],
)
def test_config_names_the_credential_field(credentials: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        parse_config(CONFIG.format(credentials=credentials), source="cfg.toml", check_secrets=False)


# ---- the emulator refuses what Entra ID refuses -----------------------------------------------


def assertion(api: GraphEmulator, **changes: Any) -> str:
    now = int(time.time())
    claims = {
        "aud": api.identity.token_endpoint("contoso-tenant"),
        "iss": "mailferry-app",
        "sub": "mailferry-app",
        "jti": uuid.uuid4().hex,
        "nbf": now,
        "exp": now + 600,
    }
    key = changes.pop("key", KEY)
    headers = {"x5t": jwt.utils.base64url_encode(bytes.fromhex(THUMBPRINT)).decode()}
    claims.update(changes)
    return jwt.encode(
        {k: v for k, v in claims.items() if v is not None}, key, algorithm="RS256", headers=headers
    )


def ask(api: GraphEmulator, client_assertion: str) -> httpx.Response:
    return httpx.post(
        api.identity.token_endpoint("contoso-tenant"),
        data={
            "grant_type": "client_credentials",
            "client_id": "mailferry-app",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": client_assertion,
            "scope": "https://graph.microsoft.com/.default",
        },
        verify=str(api.identity_ca_file),
    )


def test_the_emulator_accepts_a_correct_assertion(api: GraphEmulator) -> None:
    assert ask(api, assertion(api)).status_code == 200


@pytest.mark.parametrize(
    "changes",
    [
        {"aud": "https://login.microsoftonline.com/contoso-tenant/oauth2/v2.0/token"},
        {"exp": int(time.time()) - 5},
        {"exp": None},
        {"nbf": int(time.time()) + 300},
        {"sub": "someone-else"},
        {"jti": None},
        {"key": OTHER_KEY},
    ],
    ids=["audience", "expired", "no-exp", "not-yet-valid", "subject", "no-jti", "signed-by-another-key"],
)
def test_the_emulator_refuses_a_bad_assertion(api: GraphEmulator, changes: dict[str, Any]) -> None:
    reply = ask(api, assertion(api, **changes))
    assert reply.status_code in (400, 401)
    assert reply.json()["error"] in ("invalid_client", "unauthorized_client")
