"""The EWS target with the real exchangelib against the project's EWS EMULATOR (not Exchange)."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from mailferry.config.types import SecretRef
from mailferry.consumers.target import DeliveryItem
from mailferry.consumers.targets.ews import target as ews
from mailferry.errors import (
    AmbiguousOutcomeError,
    CredentialsError,
    PermanentError,
    TenantError,
    TransientError,
)
from mailferry_testkit.ews_emulator.faults import Fault
from mailferry_testkit.ews_emulator.server import EwsEmulator

from .conftest import make_tenant, message

ItemFor = Callable[..., DeliveryItem]


def test_delivery_lands_as_received_unread_item(emulator: EwsEmulator, item_for: ItemFor) -> None:
    target = ews.create(*make_tenant(emulator))
    item = item_for("alice@contoso.example", add_headers=(("X-Mailferry-Trace", "contoso; abc"),))
    target.check_credentials()
    target.deliver(item)

    [stored] = emulator.items("alice@contoso.example")
    assert stored.mime == item.message_bytes()
    assert stored.mime.startswith(b"X-Mailferry-Trace: contoso; abc\r\nReceived: ")
    assert stored.folder == "inbox"
    assert stored.is_read is False
    assert stored.message_flags == 1
    assert stored.delivery_time == datetime(2026, 3, 3, 9, 20, 30, tzinfo=UTC)  # the Received header
    assert stored.impersonated_as == "alice@contoso.example"
    assert stored.written_by == "svc-mailferry"
    assert emulator.items("bob@contoso.example") == []


def test_delivery_time_prefers_the_item_then_falls_back_to_date(
    emulator: EwsEmulator, item_for: ItemFor
) -> None:
    target = ews.create(*make_tenant(emulator))
    when = datetime(2025, 12, 24, 18, 0, tzinfo=UTC)
    target.deliver(item_for("bob@contoso.example", received_at=when))
    no_received = b"\r\n".join(message().split(b"\r\n")[1:])
    target.deliver(item_for("bob@contoso.example", no_received))
    first, second = emulator.items("bob@contoso.example")
    assert first.delivery_time == when
    assert second.delivery_time == datetime(2026, 3, 3, 9, 19, tzinfo=UTC)  # the Date header


def test_aliases_are_resolved_before_impersonating(emulator: EwsEmulator, item_for: ItemFor) -> None:
    target = ews.create(*make_tenant(emulator))
    target.deliver(item_for("sales@contoso.example"))  # an alias the directory knows
    target.deliver(item_for("INFO@contoso.example"))  # an alias from the tenant's config
    [to_alice] = emulator.items("alice@contoso.example")
    [to_bob] = emulator.items("bob@contoso.example")
    assert to_alice.impersonated_as == "alice@contoso.example"
    assert to_bob.impersonated_as == "bob@contoso.example"


def test_busy_server_gives_transient_error_with_its_back_off(
    emulator: EwsEmulator, item_for: ItemFor
) -> None:
    target = ews.create(*make_tenant(emulator))
    item = item_for("alice@contoso.example")
    target.deliver(item_for("alice@contoso.example"))  # warm: folders and directory cached
    emulator.inject(Fault.SERVER_BUSY, operation="CreateItem", back_off_ms=2500)
    started = time.monotonic()
    with pytest.raises(TransientError) as caught:
        target.deliver(item)
    assert time.monotonic() - started < 5.0  # exchangelib did not sleep and retry by itself
    assert type(caught.value) is TransientError
    assert caught.value.reason_code == "server-busy"
    assert caught.value.retry_after == 2.5
    assert len(emulator.items("alice@contoso.example")) == 1
    target.deliver(item)
    assert len(emulator.items("alice@contoso.example")) == 2


def test_over_the_concurrency_budget_is_busy(item_for: ItemFor) -> None:
    with EwsEmulator(max_concurrent=1, service_time=2.0, busy_back_off_ms=700) as emulator:
        emulator.add_account("svc-mailferry", "correct horse")
        emulator.add_mailbox("postmaster@contoso.example")
        emulator.add_mailbox("alice@contoso.example")
        target = ews.create(*make_tenant(emulator))
        target.deliver(item_for("alice@contoso.example"))
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(target.deliver, item_for("alice@contoso.example")) for _ in range(2)]
            errors = [f.exception() for f in futures]
    busy = [e for e in errors if e is not None]
    assert len(busy) == 1
    assert isinstance(busy[0], TransientError)
    assert busy[0].retry_after == 0.7
    assert emulator.rejected_busy == 1


def test_bad_credentials_fail_fast_at_start_up(emulator: EwsEmulator) -> None:
    target = ews.create(*make_tenant(emulator, password=SecretRef.plaintext("wrong")))
    started = time.monotonic()
    with pytest.raises(TenantError) as caught:
        target.check_credentials()
    assert time.monotonic() - started < 5.0
    assert caught.value.reason_code == "bad-credentials"
    assert caught.value.tenant == "contoso"


def test_impersonation_denied_is_tenant_wide(emulator: EwsEmulator, item_for: ItemFor) -> None:
    emulator.add_account("helpdesk", "pw", impersonation=False)
    target = ews.create(*make_tenant(emulator, username="helpdesk", password=SecretRef.plaintext("pw")))
    with pytest.raises(TenantError) as caught:
        target.check_credentials()
    assert caught.value.reason_code == "impersonation-denied"
    with pytest.raises(TenantError):
        target.deliver(item_for("alice@contoso.example"))
    assert emulator.items("alice@contoso.example") == []


def test_unknown_mailbox_is_permanent(emulator: EwsEmulator, item_for: ItemFor) -> None:
    target = ews.create(*make_tenant(emulator))
    with pytest.raises(PermanentError) as caught:
        target.deliver(item_for("ghost@contoso.example"))
    assert type(caught.value) is PermanentError
    assert caught.value.reason_code == "no-such-mailbox"
    assert emulator.requests.get("CreateItem", 0) == 0


def test_timeout_after_send_is_ambiguous_and_found_afterwards(
    emulator: EwsEmulator, item_for: ItemFor
) -> None:
    target = ews.create(*make_tenant(emulator, timeout=timedelta(seconds=2)))
    item = item_for("alice@contoso.example")
    other = item_for("alice@contoso.example")
    assert target.already_delivered(item) is False
    emulator.inject(Fault.TIMEOUT_AFTER_STORE, operation="CreateItem", delay=4.0)
    with pytest.raises(AmbiguousOutcomeError):
        target.deliver(item)
    assert len(emulator.items("alice@contoso.example")) == 1
    assert target.already_delivered(item) is True
    assert target.already_delivered(other) is False


def test_already_delivered_finds_a_message_without_message_id_by_its_marker(
    emulator: EwsEmulator, item_for: ItemFor
) -> None:
    target = ews.create(*make_tenant(emulator))
    raw = b"\r\n".join(line for line in message().split(b"\r\n") if not line.startswith(b"Message-ID"))
    item = item_for("alice@contoso.example", raw)
    assert target.already_delivered(item) is False
    target.deliver(item)
    assert target.already_delivered(item) is True
    assert target.already_delivered(item_for("alice@contoso.example", raw)) is False  # another delivery


def test_already_delivered_is_not_fooled_by_the_same_message_id_from_elsewhere(
    emulator: EwsEmulator, item_for: ItemFor
) -> None:
    """The same Message-ID in the Inbox (another copy, an earlier bypass-dedup replay) is not
    this delivery: only the item carrying this delivery's marker counts."""
    target = ews.create(*make_tenant(emulator))
    raw = message("<same@sender.example>")
    first, second = item_for("alice@contoso.example", raw), item_for("alice@contoso.example", raw)
    target.deliver(first)
    assert target.already_delivered(second) is False
    [stored] = emulator.items("alice@contoso.example")
    assert stored.internet_message_id == "<same@sender.example>"
    assert first.marker in stored.extended.values()


def test_slow_read_is_transient_not_ambiguous(emulator: EwsEmulator, item_for: ItemFor) -> None:
    target = ews.create(*make_tenant(emulator, timeout=timedelta(seconds=2)))
    item = item_for("alice@contoso.example")
    target.deliver(item)
    emulator.inject(Fault.SLOW, operation="FindItem", delay=4.0)
    with pytest.raises(TransientError) as caught:
        target.already_delivered(item)
    assert type(caught.value) is TransientError
    assert caught.value.reason_code == "timeout"


@pytest.mark.parametrize(
    ("fault", "error", "reason"),
    [
        (Fault.STORE_UNAVAILABLE, TransientError, "store-unavailable"),
        (Fault.QUOTA_EXCEEDED, TransientError, "mailbox-full"),
        (Fault.HTTP_503, TransientError, "server-unavailable"),
        (Fault.HTTP_500, TransientError, "server-unavailable"),
        (Fault.SIZE_EXCEEDED, PermanentError, "size-exceeded"),
        (Fault.MIME_CONVERSION_FAILED, PermanentError, "mime-conversion-failed"),
        (Fault.NO_SUCH_MAILBOX, PermanentError, "no-such-mailbox"),
        (Fault.UNAUTHORIZED, CredentialsError, "bad-credentials"),
        (Fault.IMPERSONATION_DENIED, TenantError, "impersonation-denied"),
    ],
)
def test_each_fault_lands_where_the_table_says(
    emulator: EwsEmulator, item_for: ItemFor, fault: Fault, error: type[Exception], reason: str
) -> None:
    target = ews.create(*make_tenant(emulator))
    target.deliver(item_for("bob@contoso.example"))
    emulator.inject(fault, operation="CreateItem")
    with pytest.raises(error) as caught:
        target.deliver(item_for("bob@contoso.example"))
    assert type(caught.value) is error
    assert caught.value.reason_code == reason  # type: ignore[attr-defined]
    assert len(emulator.items("bob@contoso.example")) == 1


def test_oversized_message_is_refused_by_the_server_or_before_sending(item_for: ItemFor) -> None:
    big = message(body=b"x" * 300_000)
    with EwsEmulator(max_message_size=200_000) as emulator:
        emulator.add_account("svc-mailferry", "correct horse")
        emulator.add_mailbox("postmaster@contoso.example")
        emulator.add_mailbox("alice@contoso.example")
        server_side = ews.create(*make_tenant(emulator))
        with pytest.raises(PermanentError, match="size limit") as caught:
            server_side.deliver(item_for("alice@contoso.example", big))
        assert caught.value.reason_code == "size-exceeded"
        sent = emulator.requests["CreateItem"]
        client_side = ews.create(*make_tenant(emulator, max_message_size=100_000))
        with pytest.raises(PermanentError) as caught:
            client_side.deliver(item_for("alice@contoso.example", big))
        assert caught.value.reason_code == "size-exceeded"
        assert emulator.requests["CreateItem"] == sent  # refused without uploading


def test_version_is_detected_once_when_not_configured(emulator: EwsEmulator, item_for: ItemFor) -> None:
    target = ews.create(*make_tenant(emulator, version=None))
    target.check_credentials()
    for _ in range(3):
        target.deliver(item_for("bob@contoso.example"))
    assert emulator.requests["ConvertId"] == 1
    assert len(emulator.items("bob@contoso.example")) == 3


def test_target_is_safe_to_share_between_threads(emulator: EwsEmulator, item_for: ItemFor) -> None:
    target = ews.create(*make_tenant(emulator, concurrency=8))
    mailboxes = ["alice@contoso.example", "bob@contoso.example", "alice.jones@contoso.example"]
    items = [item_for(mailboxes[i % 3]) for i in range(30)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(target.deliver, items))
    for mailbox in mailboxes:
        stored = {s.internet_message_id for s in emulator.items(mailbox)}
        assert len(stored) == 10
    assert emulator.requests["ResolveNames"] == 3  # one directory look-up per mailbox, cached


def test_more_threads_than_the_budget_get_busy_errors_not_a_deadlock(item_for: ItemFor) -> None:
    """exchangelib shrinks its session pool on each busy answer and can deadlock doing it."""
    with EwsEmulator(max_concurrent=2, service_time=0.2) as emulator:
        emulator.add_account("svc-mailferry", "correct horse")
        emulator.add_mailbox("postmaster@contoso.example")
        emulator.add_mailbox("bob@contoso.example")
        target = ews.create(*make_tenant(emulator, concurrency=8))
        target.deliver(item_for("bob@contoso.example"))

        def attempt(_: int) -> str:
            try:
                target.deliver(item_for("bob@contoso.example"))
            except TransientError as exc:
                return exc.reason_code
            return "ok"

        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(attempt, range(40), timeout=60))
        target.close()
    assert set(outcomes) <= {"ok", "server-busy"}
    assert "server-busy" in outcomes
    assert len(emulator.items("bob@contoso.example")) == 1 + outcomes.count("ok")
