"""Directory look-up through ResolveNames against the EWS EMULATOR (not Microsoft Exchange)."""

from __future__ import annotations

import pytest

from mailferry.consumers.targets.ews import target as ews
from mailferry.consumers.targets.ews.target import EwsDeliveryTarget
from mailferry.errors import TransientError
from mailferry.exchange.directory import CachedDirectory, directory_for, exact_match
from mailferry_testkit.ews_emulator.faults import Fault
from mailferry_testkit.ews_emulator.server import EwsEmulator

from .conftest import make_tenant


def directory_of(emulator: EwsEmulator) -> CachedDirectory:
    target = ews.create(*make_tenant(emulator))
    assert isinstance(target, EwsDeliveryTarget)
    return target.directory


def test_primary_and_alias_resolve_to_the_primary(emulator: EwsEmulator) -> None:
    directory = directory_of(emulator)
    assert directory.lookup("alice@contoso.example") == "alice@contoso.example"
    assert directory.lookup("A.Smith@Contoso.Example") == "alice@contoso.example"
    assert directory.lookup("sales@contoso.example") == "alice@contoso.example"


def test_partial_matches_are_not_taken(emulator: EwsEmulator) -> None:
    directory = directory_of(emulator)
    # "smtp:alice" matches alice@ and alice.jones@ by prefix; neither is exactly it.
    assert directory.lookup("alice") is None
    assert directory.lookup("alice@contoso") is None
    assert directory.lookup("nobody@contoso.example") is None


def test_answers_are_cached_including_misses(emulator: EwsEmulator) -> None:
    directory = directory_of(emulator)
    for _ in range(3):
        directory.lookup("bob@contoso.example")
        directory.lookup("ghost@contoso.example")
    assert emulator.requests["ResolveNames"] == 2
    assert directory.lookups == 2


def test_expired_entries_are_asked_again() -> None:
    now = [0.0]
    answers = iter([[], [("bob@x.example", None)]])
    calls: list[str] = []

    class _Mailbox:
        def __init__(self, address: str) -> None:
            self.email_address = address
            self.routing_type = "SMTP"

    def ask(address: str) -> str | None:
        calls.append(address)
        return exact_match(address, [(_Mailbox(a), c) for a, c in next(answers)])

    directory = CachedDirectory(ask, ttl=100, negative_ttl=10, clock=lambda: now[0])
    assert directory.lookup("bob@x.example") is None
    now[0] = 5
    assert directory.lookup("bob@x.example") is None
    now[0] = 11
    assert directory.lookup("bob@x.example") == "bob@x.example"
    assert calls == ["bob@x.example", "bob@x.example"]


def test_busy_directory_is_transient(emulator: EwsEmulator) -> None:
    directory = directory_of(emulator)
    emulator.inject(Fault.SERVER_BUSY, operation="ResolveNames", back_off_ms=1500)
    with pytest.raises(TransientError) as caught:
        directory.lookup("bob@contoso.example")
    assert caught.value.retry_after == 1.5
    assert directory.lookup("bob@contoso.example") == "bob@contoso.example"


def test_directory_for_a_tenant_uses_its_default_target(emulator: EwsEmulator) -> None:
    tenant, _ = make_tenant(emulator)
    directory = directory_for(tenant)
    assert directory is not None
    assert directory.lookup("a.smith@contoso.example") == "alice@contoso.example"
