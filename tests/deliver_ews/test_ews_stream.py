"""Large messages: the streamed CreateItem against the project's EWS EMULATOR (not Exchange).

A 64 KB threshold and messages of a few MB keep these fast; the 150 MB figure is measured
by ``benchmarks/ews_large.py``.
"""

from __future__ import annotations

import base64
import io
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

import pytest
from exchangelib import EWSDateTime
from exchangelib.items import SAVE_ONLY, SEND_TO_NONE
from exchangelib.services import CreateItem

from mailferry.consumers.target import DeliveryItem
from mailferry.consumers.targets.ews import target as ews
from mailferry.consumers.targets.ews.items import InboxMessage
from mailferry.consumers.targets.ews.stream import RAW_BLOCK, EnvelopeBody
from mailferry.errors import (
    AmbiguousOutcomeError,
    CredentialsError,
    PermanentError,
    TenantError,
    TransientError,
)
from mailferry.exchange.ews.exchangelib_patches import StreamedCreateItem
from mailferry_testkit.ews_emulator.faults import Fault
from mailferry_testkit.ews_emulator.server import EwsEmulator

from .conftest import make_item, make_tenant, message
from .test_ews_oauth import oauth_fields

THRESHOLD = 64 * 1024
TRACE = (("X-Mailferry-Trace", "contoso; stream-test"),)


_PRINTABLE_OR_8BIT = bytes(b if b >= 32 else 0x78 for b in range(256))


def big_message(size: int = 3 * 1024 * 1024) -> bytes:
    """A message of about ``size`` bytes with 8-bit content, so any byte mix-up shows."""
    noise = random.Random(size).randbytes(size).translate(_PRINTABLE_OR_8BIT)
    return message(body=b"".join(noise[i : i + 76] + b"\r\n" for i in range(0, size, 76)))


class Source(io.BytesIO):
    """The message as the blob store hands it out, noting the largest read asked of it."""

    def __init__(self, data: bytes, reads: list[int]) -> None:
        super().__init__(data)
        self._reads = reads

    def read(self, size: int | None = -1) -> bytes:
        self._reads.append(-1 if size is None or size < 0 else size)
        return super().read(size)


def streamed_item(mailbox: str, data: bytes, reads: list[int], **kwargs: Any) -> DeliveryItem:
    """An item whose source records the size of every read it is asked for."""
    return make_item(mailbox, data, open_message=lambda: Source(data, reads), add_headers=TRACE, **kwargs)


def test_large_message_is_streamed_and_lands_byte_identical(emulator: EwsEmulator) -> None:
    target = ews.create(*make_tenant(emulator, stream_threshold=THRESHOLD))
    data = big_message()
    reads: list[int] = []
    item = streamed_item("sales@contoso.example", data, reads)
    target.deliver(item)

    # never the whole message at once: the source is only ever asked for bounded blocks
    assert reads and -1 not in reads and max(reads) <= RAW_BLOCK
    [stored] = emulator.items("alice@contoso.example")
    assert stored.mime == item.message_bytes()
    assert stored.mime.startswith(b"X-Mailferry-Trace: contoso; stream-test\r\nReceived: ")
    assert stored.message_flags == 1  # not a draft
    assert stored.is_read is False
    assert stored.delivery_time == datetime(2026, 3, 3, 9, 20, 30, tzinfo=UTC)
    assert stored.folder == "inbox"
    assert stored.impersonated_as == "alice@contoso.example"
    headers = emulator.last_headers["CreateItem"]
    assert headers["X-AnchorMailbox"] == "alice@contoso.example"
    assert headers["Authorization"].startswith("Basic ")
    assert "Transfer-Encoding" not in headers
    assert int(headers["Content-Length"]) > len(data) * 4 // 3


def test_below_the_threshold_stays_on_plain_exchangelib(emulator: EwsEmulator) -> None:
    target = ews.create(*make_tenant(emulator, stream_threshold=10 * 1024 * 1024))
    data = big_message()
    reads: list[int] = []
    target.deliver(streamed_item("bob@contoso.example", data, reads))
    [stored] = emulator.items("bob@contoso.example")
    assert stored.mime.endswith(data)
    assert -1 in reads  # read whole, as exchangelib needs it


def test_streamed_envelope_is_exactly_what_exchangelib_would_send(emulator: EwsEmulator) -> None:
    """Same SOAP as the normal path: only where the MimeContent bytes come from differs."""
    target = ews.create(*make_tenant(emulator))
    account = target.connection.account("alice@contoso.example")
    inbox = account.inbox
    mime = big_message(200_000)
    when = EWSDateTime.from_datetime(datetime(2026, 3, 3, 9, 20, 30, tzinfo=UTC))

    def payload(service: CreateItem, content: bytes) -> Any:
        item = InboxMessage(
            account=account,
            folder=inbox,
            mime_content=content,
            is_read=False,
            mf_message_flags=1,
            mf_delivery_time=when,
        )
        return service.get_payload(
            items=[item], folder=inbox, message_disposition=SAVE_ONLY, send_meeting_invitations=SEND_TO_NONE
        )

    plain = CreateItem(account=account)
    expected = plain.wrap(content=payload(plain, mime), api_version="Exchange2016")
    streamed = StreamedCreateItem(
        account=account, body=lambda head, tail: EnvelopeBody(head, tail, lambda: io.BytesIO(mime), len(mime))
    )
    body = streamed.wrap(content=payload(streamed, streamed.placeholder), api_version="Exchange2016")
    assert len(body) == len(expected)
    assert b"".join(iter(lambda: body.read(16384), b"")) == expected


def test_envelope_body_rewinds_for_an_auth_handshake() -> None:
    """requests-ntlm seeks back by Content-Length and sends the body again."""
    data = bytes(range(256)) * 5000
    opened: list[io.BytesIO] = []

    def open_source() -> BinaryIO:
        opened.append(io.BytesIO(data))
        return opened[-1]

    body = EnvelopeBody(b"<head>", b"</tail>", open_source, len(data), prefix=b"X: 1\r\n")
    expected = b"<head>" + base64.b64encode(b"X: 1\r\n" + data) + b"</tail>"
    assert body.read(len(expected) + 10) == expected
    body.seek(-len(expected), 1)
    assert body.tell() == 0
    assert b"".join(iter(lambda: body.read(7000), b"")) == expected
    assert len(opened) == 2 and all(source.closed for source in opened)  # read twice, nothing leaked
    body.seek(1000)
    assert body.read(50) == expected[1000:1050]


def test_source_of_another_size_fails_instead_of_sending_a_broken_body() -> None:
    data = b"x" * 10_000
    body = EnvelopeBody(b"<h>", b"</t>", lambda: io.BytesIO(data[:-1]), len(data))
    with pytest.raises(RuntimeError, match="ended after"):
        body.read(len(body))


STREAM_FAULTS = [
    (Fault.SERVER_BUSY, TransientError, "server-busy"),
    (Fault.STORE_UNAVAILABLE, TransientError, "store-unavailable"),
    (Fault.HTTP_503, TransientError, "server-unavailable"),
    (Fault.SIZE_EXCEEDED, PermanentError, "size-exceeded"),
    (Fault.NO_SUCH_MAILBOX, PermanentError, "no-such-mailbox"),
    (Fault.UNAUTHORIZED, CredentialsError, "bad-credentials"),
    (Fault.IMPERSONATION_DENIED, TenantError, "impersonation-denied"),
]


@pytest.mark.parametrize(("fault", "error", "reason"), STREAM_FAULTS)
def test_faults_on_a_streamed_request_are_classified_like_the_normal_path(
    emulator: EwsEmulator, fault: Fault, error: type[Exception], reason: str
) -> None:
    target = ews.create(*make_tenant(emulator, stream_threshold=THRESHOLD))
    small = streamed_item("bob@contoso.example", message(), [])
    large = streamed_item("bob@contoso.example", big_message(1024 * 1024), [])
    target.deliver(small)  # warm: folders and directory cached
    outcomes = []
    for item in (small, large):
        emulator.inject(fault, operation="CreateItem", back_off_ms=1500)
        with pytest.raises(error) as caught:
            target.deliver(item)
        outcomes.append((type(caught.value), caught.value.reason_code))  # type: ignore[attr-defined]
        if isinstance(caught.value, TransientError):
            outcomes.append(caught.value.retry_after)  # type: ignore[arg-type]
    assert outcomes[0] == (error, reason)
    assert outcomes[: len(outcomes) // 2] == outcomes[len(outcomes) // 2 :]
    assert len(emulator.items("bob@contoso.example")) == 1
    target.deliver(large)
    assert emulator.items("bob@contoso.example")[-1].mime == large.message_bytes()


def test_timeout_after_a_streamed_send_is_ambiguous_then_found(emulator: EwsEmulator) -> None:
    target = ews.create(*make_tenant(emulator, stream_threshold=THRESHOLD, timeout=timedelta(seconds=2)))
    item = streamed_item("alice@contoso.example", big_message(1024 * 1024), [])
    assert target.already_delivered(item) is False
    emulator.inject(Fault.TIMEOUT_AFTER_STORE, operation="CreateItem", delay=4.0)
    with pytest.raises(AmbiguousOutcomeError):
        target.deliver(item)
    assert target.already_delivered(item) is True
    assert len(emulator.items("alice@contoso.example")) == 1


def test_over_the_server_limit_is_refused_permanently(item_for: Callable[..., DeliveryItem]) -> None:
    with EwsEmulator(max_message_size=500_000) as emulator:
        emulator.add_account("svc-mailferry", "correct horse")
        emulator.add_mailbox("postmaster@contoso.example")
        emulator.add_mailbox("alice@contoso.example")
        target = ews.create(*make_tenant(emulator, stream_threshold=THRESHOLD))
        with pytest.raises(PermanentError) as caught:
            target.deliver(streamed_item("alice@contoso.example", big_message(1024 * 1024), []))
        assert caught.value.reason_code == "size-exceeded"
        target.deliver(item_for("alice@contoso.example"))  # the connection is still usable
        assert len(emulator.items("alice@contoso.example")) == 1


def test_streamed_with_app_only_oauth2_sends_the_bearer_token(
    emulator: EwsEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    emulator.add_account("exo-app", "unused-password")
    emulator.add_app("mailferry-app", "app secret", "contoso-tenant", "exo-app")
    fields = oauth_fields(emulator, "app secret")
    target = ews.create(*make_tenant(emulator, stream_threshold=THRESHOLD, **fields))
    item = streamed_item("bob@contoso.example", big_message(1024 * 1024), [])
    target.deliver(item)
    [stored] = emulator.items("bob@contoso.example")
    assert (stored.written_by, stored.impersonated_as) == ("exo-app", "bob@contoso.example")
    assert stored.mime == item.message_bytes()
    assert emulator.last_headers["CreateItem"]["Authorization"].startswith("Bearer ")
