"""The Graph target (httpx, app-only OAuth2) against the project's GRAPH EMULATOR (not Graph)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from mailferry.config.types import SecretRef
from mailferry.consumers.target import DeliveryItem
from mailferry.consumers.targets.graph import target as graph
from mailferry.errors import AmbiguousOutcomeError, PermanentError, TenantError, TransientError
from mailferry_testkit.graph_emulator import GraphEmulator, GraphFault

from .conftest import graph_token, make_graph_tenant, message

ItemFor = Callable[..., DeliveryItem]


@pytest.fixture
def emulator() -> Iterator[GraphEmulator]:
    with GraphEmulator() as emu:
        emu.add_app("mailferry-app", "app secret", "contoso-tenant")
        emu.add_mailbox("postmaster@contoso.example")
        emu.add_mailbox("alice@contoso.example", aliases=("sales@contoso.example",))
        emu.add_mailbox("bob@contoso.example")
        yield emu


def make_target(emulator: GraphEmulator, **fields: Any) -> graph.GraphDeliveryTarget:
    target = graph.create(*make_graph_tenant(emulator, **fields))
    assert isinstance(target, graph.GraphDeliveryTarget)
    return target


def test_import_mime_stores_the_message_unchanged(emulator: GraphEmulator, item_for: ItemFor) -> None:
    """Byte for byte, after mailferry's own headers: the delivery marker, then the trace."""
    target = make_target(emulator)
    target.check_credentials()
    item = item_for("sales@contoso.example", add_headers=(("X-Mailferry-Trace", "contoso; 1"),))
    target.deliver(item)
    [stored] = emulator.items("alice@contoso.example")
    assert stored.mode == "import-mime"
    assert stored.mime == f"X-Mailferry-Delivery: {item.marker}\r\n".encode() + item.message_bytes()
    assert stored.is_draft is False
    assert emulator.oauth.issued == 1


def _multipart() -> bytes:
    msg = EmailMessage()
    msg["From"] = "Carol <carol@sender.example>"
    msg["To"] = "bob@contoso.example"
    msg["Cc"] = "Dave <dave@contoso.example>"
    msg["Subject"] = "Figures"
    msg["Date"] = "Tue, 03 Mar 2026 10:19:00 +0100"
    msg["Message-ID"] = "<fig@sender.example>"
    msg["X-Spam-Score"] = "0.1"
    msg.set_content("plain body")
    msg.add_alternative("<p>html body</p>", subtype="html")
    msg.add_attachment(b"\x00\x01binary", maintype="application", subtype="octet-stream", filename="q1.bin")
    return msg.as_bytes()


def test_json_mode_sets_the_received_item_properties(emulator: GraphEmulator, item_for: ItemFor) -> None:
    target = make_target(emulator, mode="json")
    when = datetime(2026, 3, 3, 9, 20, 30, tzinfo=UTC)
    item = item_for(
        "bob@contoso.example",
        _multipart(),
        received_at=when,
        add_headers=(("X-Mailferry-Trace", "contoso; 2"),),
    )
    target.deliver(item)
    [stored] = emulator.items("bob@contoso.example")
    assert stored.mode == "json"
    assert stored.is_draft is False
    assert stored.is_read is False
    assert stored.extended == {
        "Integer 0x0E07": "1",
        "SystemTime 0x0E06": "2026-03-03T09:20:30Z",
        "SystemTime 0x0039": "2026-03-03T09:19:00Z",
        graph.MARKER_PROPERTY: item.marker,
    }
    body = stored.message
    assert body["subject"] == "Figures"
    assert body["body"] == {"contentType": "html", "content": "<p>html body</p>\n"}
    assert body["from"] == {"emailAddress": {"address": "carol@sender.example", "name": "Carol"}}
    assert body["ccRecipients"] == [{"emailAddress": {"address": "dave@contoso.example", "name": "Dave"}}]
    assert stored.internet_message_id == "<fig@sender.example>"
    assert [h["name"] for h in body["internetMessageHeaders"]] == ["X-Mailferry-Trace", "X-Spam-Score"]
    [attachment] = body["attachments"]
    assert attachment["name"] == "q1.bin"
    assert base64.b64decode(attachment["contentBytes"]) == b"\x00\x01binary"


def test_throttling_is_transient_with_retry_after(emulator: GraphEmulator, item_for: ItemFor) -> None:
    target = make_target(emulator)
    emulator.inject(GraphFault.THROTTLED, operation="importMime", retry_after=7)
    with pytest.raises(TransientError) as caught:
        target.deliver(item_for("bob@contoso.example"))
    assert caught.value.reason_code == "throttled"
    assert caught.value.retry_after == 7
    target.deliver(item_for("bob@contoso.example"))
    assert len(emulator.items("bob@contoso.example")) == 1


def test_emulator_throttles_a_fifth_concurrent_request(emulator: GraphEmulator) -> None:
    token = graph_token(emulator)
    emulator.inject(GraphFault.SLOW, count=6, operation="listMessages", delay=2.0)
    url = f"{emulator.base_url}/v1.0/users/bob@contoso.example/mailFolders/inbox/messages"
    with ThreadPoolExecutor(6) as pool:
        codes = list(
            pool.map(
                lambda _: httpx.get(url, headers={"Authorization": f"Bearer {token}"}).status_code, range(6)
            )
        )
    assert sorted(codes) == [200, 200, 200, 200, 429, 429]


def test_target_stays_under_four_per_mailbox(emulator: GraphEmulator, item_for: ItemFor) -> None:
    target = make_target(emulator)
    target.deliver(item_for("bob@contoso.example"))
    emulator.inject(GraphFault.SLOW, count=8, operation="importMime", delay=0.3)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(target.deliver, [item_for("bob@contoso.example") for _ in range(8)]))
    assert emulator.throttled == 0
    assert len(emulator.items("bob@contoso.example")) == 9


def test_wrong_secret_fails_fast_at_start_up(emulator: GraphEmulator) -> None:
    target = make_target(emulator, client_secret=SecretRef.plaintext("stale"))
    with pytest.raises(TenantError) as caught:
        target.check_credentials()
    assert caught.value.reason_code == "bad-credentials"


def test_missing_permission_is_tenant_wide(emulator: GraphEmulator, item_for: ItemFor) -> None:
    emulator.add_app("reader-app", "s", "contoso-tenant", roles=("Mail.ReadWrite", "User.Read.All"))
    target = make_target(emulator, client_id="reader-app", client_secret=SecretRef.plaintext("s"))
    target.check_credentials()
    with pytest.raises(TenantError) as caught:
        target.deliver(item_for("bob@contoso.example"))
    assert caught.value.reason_code == "permission-denied"


def test_expired_token_is_renewed_once(emulator: GraphEmulator, item_for: ItemFor) -> None:
    target = make_target(emulator)
    target.deliver(item_for("bob@contoso.example"))
    emulator.oauth.revoke_all()
    target.deliver(item_for("bob@contoso.example"))
    assert emulator.oauth.issued == 2
    emulator.inject(GraphFault.UNAUTHORIZED, count=2, operation="importMime")
    with pytest.raises(TenantError):
        target.deliver(item_for("bob@contoso.example"))
    assert len(emulator.items("bob@contoso.example")) == 2


def test_unknown_mailbox_is_permanent(emulator: GraphEmulator, item_for: ItemFor) -> None:
    target = make_target(emulator)
    with pytest.raises(PermanentError) as caught:
        target.deliver(item_for("ghost@contoso.example"))
    assert caught.value.reason_code == "no-such-mailbox"
    assert emulator.requests.get("importMime", 0) == 0


def test_timeout_after_store_is_ambiguous_then_found(emulator: GraphEmulator, item_for: ItemFor) -> None:
    target = make_target(emulator, timeout=timedelta(seconds=2))
    item = item_for("alice@contoso.example")
    assert target.already_delivered(item) is False
    emulator.inject(GraphFault.TIMEOUT_AFTER_STORE, operation="importMime", delay=4.0)
    with pytest.raises(AmbiguousOutcomeError):
        target.deliver(item)
    assert target.already_delivered(item) is True
    assert target.already_delivered(item_for("alice@contoso.example")) is False


@pytest.mark.parametrize(
    ("fault", "error", "reason"),
    [
        (GraphFault.UNAVAILABLE, TransientError, "server-unavailable"),
        (GraphFault.QUOTA_EXCEEDED, TransientError, "mailbox-full"),
        (GraphFault.SIZE_EXCEEDED, PermanentError, "size-exceeded"),
        (GraphFault.MIME_INVALID, PermanentError, "mime-conversion-failed"),
        (GraphFault.NO_SUCH_MAILBOX, PermanentError, "no-such-mailbox"),
        (GraphFault.FORBIDDEN, TenantError, "permission-denied"),
    ],
)
def test_each_fault_lands_where_the_table_says(
    emulator: GraphEmulator, item_for: ItemFor, fault: GraphFault, error: type[Exception], reason: str
) -> None:
    target = make_target(emulator)
    emulator.inject(fault, operation="importMime")
    with pytest.raises(error) as caught:
        target.deliver(item_for("bob@contoso.example"))
    assert type(caught.value) is error
    assert caught.value.reason_code == reason  # type: ignore[attr-defined]


def test_json_mode_refuses_bodies_over_four_megabytes(emulator: GraphEmulator, item_for: ItemFor) -> None:
    target = make_target(emulator, mode="json")
    with pytest.raises(PermanentError, match="import-mime") as caught:
        target.deliver(item_for("bob@contoso.example", message(body=b"y" * (5 * 1024 * 1024))))
    assert caught.value.reason_code == "size-exceeded"
    assert emulator.requests.get("createMessage", 0) == 0


def test_emulator_refuses_non_custom_internet_headers(emulator: GraphEmulator) -> None:
    token = graph_token(emulator)
    reply = httpx.post(
        f"{emulator.base_url}/v1.0/users/bob@contoso.example/mailFolders/inbox/messages",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        content=json.dumps({"subject": "x", "internetMessageHeaders": [{"name": "Received", "value": "y"}]}),
    )
    assert reply.status_code == 400
    assert "GRAPH-EMULATOR" in reply.headers["Server"]
    assert emulator.items("bob@contoso.example") == []


@pytest.mark.parametrize("mode", ["import-mime", "json"])
def test_already_delivered_is_not_fooled_by_the_same_message_id_from_elsewhere(
    emulator: GraphEmulator, item_for: ItemFor, mode: str
) -> None:
    """Only the copy carrying this delivery's marker counts, not any item with its Message-ID."""
    target = make_target(emulator, mode=mode)
    raw = message("<same@sender.example>")
    first, second = item_for("alice@contoso.example", raw), item_for("alice@contoso.example", raw)
    assert target.already_delivered(first) is False
    target.deliver(first)
    assert target.already_delivered(first) is True
    assert target.already_delivered(second) is False


def test_json_mode_finds_a_message_without_message_id_by_its_marker(
    emulator: GraphEmulator, item_for: ItemFor
) -> None:
    target = make_target(emulator, mode="json")
    raw = b"\r\n".join(line for line in message().split(b"\r\n") if not line.startswith(b"Message-ID"))
    item = item_for("alice@contoso.example", raw)
    assert target.already_delivered(item) is False
    target.deliver(item)
    assert target.already_delivered(item) is True
    assert target.already_delivered(item_for("alice@contoso.example", raw)) is False


def test_import_mode_cannot_tell_without_message_id(emulator: GraphEmulator, item_for: ItemFor) -> None:
    target = make_target(emulator)
    raw = b"\r\n".join(line for line in message().split(b"\r\n") if not line.startswith(b"Message-ID"))
    assert target.already_delivered(item_for("alice@contoso.example", raw)) is None


@pytest.mark.parametrize(
    "query",
    [
        "subject eq 'x'",
        "internetMessageId ne '<a@b>'",
        "internetMessageId eq '<a@b>' or internetMessageId eq '<c@d>'",
        "singleValueExtendedProperties/any(ep: ep/id eq 'String 0x1' and ep/value eq 'v')",
    ],
)
def test_emulator_refuses_filters_it_does_not_evaluate(emulator: GraphEmulator, query: str) -> None:
    reply = httpx.get(
        f"{emulator.base_url}/v1.0/users/bob@contoso.example/mailFolders/inbox/messages",
        headers={"Authorization": f"Bearer {graph_token(emulator)}"},
        params={"$filter": query},
    )
    assert reply.status_code == 400, reply.text
