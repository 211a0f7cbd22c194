"""TLS settings belong to one target and its exact endpoint, never to the process (issue 11 item 5).

Two tenants on one host, against the project's EWS EMULATOR (not Exchange) serving HTTPS
with a throwaway CA, driven by the real exchangelib: the strict tenant must refuse the
untrusted certificate whatever the other tenant allows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests.adapters
from exchangelib.protocol import BaseProtocol

from mailferry.config.targets import GraphTarget
from mailferry.config.types import SecretRef
from mailferry.consumers.target import DeliveryItem
from mailferry.consumers.targets.ews import target as ews
from mailferry.errors import ConfigError, MailferryError
from mailferry.exchange.ews.exchangelib_patches import same_endpoint
from mailferry.exchange.graph.client import GraphClient
from mailferry_testkit import certs
from mailferry_testkit.ews_emulator.server import EwsEmulator

from .conftest import SERVICE_PASSWORD, SERVICE_USER, make_tenant

ItemFor = Callable[..., DeliveryItem]
LAX_USER = "svc-lax"
MAILBOX = "alice@contoso.example"


def _emulator(pki: certs.TestPki) -> EwsEmulator:
    emu = EwsEmulator(tls=pki).start()
    emu.add_account(SERVICE_USER, SERVICE_PASSWORD)
    emu.add_account(LAX_USER, SERVICE_PASSWORD)
    emu.add_mailbox(MAILBOX)
    return emu


@pytest.fixture
def pki(tmp_path: Path) -> certs.TestPki:
    return certs.make_test_pki(tmp_path / "pki-one", ca_name="first test CA")


@pytest.fixture
def first(pki: certs.TestPki) -> Iterator[EwsEmulator]:
    emu = _emulator(pki)
    yield emu
    emu.stop()


@pytest.fixture
def second(tmp_path: Path) -> Iterator[EwsEmulator]:
    emu = _emulator(certs.make_test_pki(tmp_path / "pki-two", ca_name="second test CA"))
    yield emu
    emu.stop()


def _target(emulator: EwsEmulator, user: str = SERVICE_USER, **fields: Any) -> ews.EwsDeliveryTarget:
    return ews.create(*make_tenant(emulator, username=user, **fields))


def _refused(target: ews.EwsDeliveryTarget, item: DeliveryItem) -> str:
    """Deliver, expecting the certificate to be refused; the text of the error chain."""
    with pytest.raises(MailferryError) as info:
        target.deliver(item)
    chain: list[str] = []
    error: BaseException | None = info.value
    while error is not None:
        chain.append(f"{type(error).__name__}: {error}")
        error = error.__cause__ or error.__context__
    return " | ".join(chain)


def test_verify_tls_false_of_one_tenant_does_not_loosen_another_on_the_same_endpoint(
    first: EwsEmulator, item_for: ItemFor
) -> None:
    lax = _target(first, LAX_USER, verify_tls=False)
    strict = _target(first)  # the same URL, another service account: its own Protocol
    lax.deliver(item_for(MAILBOX))
    assert "CERTIFICATE_VERIFY_FAILED" in _refused(strict, item_for(MAILBOX))
    lax.deliver(item_for(MAILBOX))  # and the strict one did not tighten the lax one either
    assert [i.written_by for i in first.items(MAILBOX)] == [LAX_USER, LAX_USER]
    assert BaseProtocol.HTTP_ADAPTER_CLS is requests.adapters.HTTPAdapter  # nothing process-global


def test_a_private_ca_is_trusted_by_its_own_target_only(
    first: EwsEmulator, second: EwsEmulator, pki: certs.TestPki, item_for: ItemFor
) -> None:
    with_ca = _target(first, LAX_USER, ca_file=pki.ca_file)
    strict_same_url = _target(first)
    wrong_ca = _target(second, LAX_USER, ca_file=pki.ca_file)  # same host, another port and CA
    with_ca.deliver(item_for(MAILBOX))
    assert "CERTIFICATE_VERIFY_FAILED" in _refused(strict_same_url, item_for(MAILBOX))
    assert "CERTIFICATE_VERIFY_FAILED" in _refused(wrong_ca, item_for(MAILBOX))
    assert len(first.items(MAILBOX)) == 1 and second.items(MAILBOX) == []


def test_two_ports_of_one_host_keep_their_own_settings(
    first: EwsEmulator, second: EwsEmulator, item_for: ItemFor
) -> None:
    lax = _target(first, verify_tls=False)
    strict = _target(second)
    lax.deliver(item_for(MAILBOX))
    assert "CERTIFICATE_VERIFY_FAILED" in _refused(strict, item_for(MAILBOX))
    assert second.items(MAILBOX) == []


def test_targets_sharing_endpoint_and_credentials_must_agree_on_tls(
    first: EwsEmulator, pki: certs.TestPki, item_for: ItemFor
) -> None:
    """exchangelib keeps one session pool per (endpoint, credentials): refuse, don't let one decide."""
    _target(first, ca_file=pki.ca_file).deliver(item_for(MAILBOX))
    with pytest.raises(ConfigError, match="different TLS settings"):
        _target(first, verify_tls=False).deliver(item_for(MAILBOX))


def test_graph_verifies_strictly_next_to_a_lax_ews_target_on_the_same_host_and_port(
    first: EwsEmulator, item_for: ItemFor
) -> None:
    """The Graph client has no TLS switch; an EWS target's verify_tls = false never reaches it."""
    _target(first, LAX_USER, verify_tls=False).deliver(item_for(MAILBOX))
    first.add_app("graph-app", "app-secret", "contoso-tenant", SERVICE_USER)
    graph = GraphClient(
        GraphTarget(
            kind="graph",
            name="graph",
            base_url=first.url.rsplit("/EWS", 1)[0],
            token_url=first.token_url("contoso-tenant"),  # https on the emulator's port
            tenant_id="contoso-tenant",
            client_id="graph-app",
            client_secret=SecretRef.plaintext("app-secret"),
        )
    )
    try:
        with pytest.raises(MailferryError) as info:
            graph.token()
        assert "CERTIFICATE_VERIFY_FAILED" in str(info.value) or "CERTIFICATE_VERIFY_FAILED" in str(
            info.value.__cause__
        )
    finally:
        graph.close()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://127.0.0.1:8443/EWS/Exchange.asmx", True),
        ("HTTPS://127.0.0.1:8443/EWS/Exchange.asmx?x=1", True),
        ("https://127.0.0.1:8443/EWS/Exchange.asmx2", False),  # a prefix match would say yes
        ("https://127.0.0.1:8443/EWS/Exchange.asmx/more", False),
        ("https://127.0.0.1:8444/EWS/Exchange.asmx", False),
        ("http://127.0.0.1:8443/EWS/Exchange.asmx", False),
        ("https://127.0.0.1.evil.example:8443/EWS/Exchange.asmx", False),
    ],
)
def test_the_endpoint_match_is_exact(url: str, expected: bool) -> None:
    assert same_endpoint(url, "https://127.0.0.1:8443/EWS/Exchange.asmx") is expected
