"""``mailferry check`` of an EWS target against the project's EWS EMULATOR (not Microsoft
Exchange), driven by the real exchangelib: login and impersonated access to one mailbox."""

from __future__ import annotations

import pytest

from mailferry.check.probe import check_target
from mailferry.config.secrets import SecretRef
from mailferry_testkit.ews_emulator.server import EwsEmulator
from tests.deliver_ews.conftest import make_tenant

pytestmark = pytest.mark.integration


def test_ews_target_check_passes_with_impersonation(emulator: EwsEmulator) -> None:
    tenant, _ = make_tenant(emulator)
    report = check_target(tenant, "exchange")
    assert report.ok, report.error
    assert report.authenticated and report.verdict == "OK"
    assert report.steps == ["authenticated and opened postmaster@contoso.example's mailbox"]


def test_ews_target_check_fails_on_a_wrong_password(emulator: EwsEmulator) -> None:
    tenant, _ = make_tenant(emulator, password=SecretRef.plaintext("wrong"))
    report = check_target(tenant, "exchange")
    assert not report.ok and not report.authenticated
    assert report.verdict.startswith("FAILED: ")


def test_ews_target_check_fails_without_the_impersonation_role(emulator: EwsEmulator) -> None:
    emulator.add_account("svc-noimp", "pw", impersonation=False)
    tenant, _ = make_tenant(emulator, username="svc-noimp", password=SecretRef.plaintext("pw"))
    report = check_target(tenant, "exchange")
    assert not report.ok
    assert "impersonat" in report.verdict.lower()
