"""``mailferry check`` of a Graph target against the project's Graph EMULATOR (not Microsoft
Graph), over the real httpx: token, then the default mailbox's Inbox."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mailferry.check.probe import check_target
from mailferry.config.models import Tenant
from mailferry.config.secrets import SecretRef
from mailferry_testkit.graph_emulator import GraphEmulator

from .conftest import make_graph_tenant

pytestmark = pytest.mark.integration


@pytest.fixture
def emulator() -> Iterator[GraphEmulator]:
    with GraphEmulator() as emu:
        emu.add_app("mailferry-app", "app secret", "contoso-tenant")
        emu.add_mailbox("postmaster@contoso.example")
        yield emu


def _tenant(emulator: GraphEmulator, secret: str) -> Tenant:
    tenant, _ = make_graph_tenant(emulator, client_secret=SecretRef.plaintext(secret))
    return tenant


def test_graph_target_check(emulator: GraphEmulator) -> None:
    report = check_target(_tenant(emulator, "app secret"), "graph")
    assert report.ok and report.verdict == "OK", report.error
    wrong = check_target(_tenant(emulator, "not the secret"), "graph")
    assert not wrong.ok and wrong.verdict.startswith("FAILED: ")
