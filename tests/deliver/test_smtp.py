"""SMTP target against a real aiosmtpd server on loopback, over STARTTLS with a test CA."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from mailferry.config.targets import SmtpTarget
from mailferry.config.types import SecretRef
from mailferry.consumers.target import DeliveryItem
from mailferry.consumers.targets.smtp import SmtpDelivery, create
from mailferry.errors import AmbiguousOutcomeError, PermanentError, TenantError, TransientError

from .smtp_sink import LoopbackCA, SmtpSink

pytestmark = pytest.mark.integration

MESSAGE = (
    b"Return-Path: <bounce@origin.example>\r\nFrom: Alice <alice@origin.example>\r\n"
    b"To: bob@acme.example\r\nSubject: dots\r\nMessage-ID: <1@origin.example>\r\n\r\n"
    b"first line\r\n.a line starting with a dot\r\n..two dots\r\n.\r\nlast line\r\n"
)


def _target(sink: SmtpSink, ca: LoopbackCA | None, **extra: Any) -> SmtpDelivery:
    fields: dict[str, Any] = {
        "name": "exchange",
        "kind": "smtp",
        "host": "127.0.0.1",
        "port": sink.port,
        "username": "mailferry",
        "password": SecretRef.plaintext("s3cret"),
        "timeout": 5,
    }
    if ca is not None:
        fields["ca_file"] = ca.ca_file
    fields.update(extra)
    target = create(None, SmtpTarget.model_validate(fields))  # type: ignore[arg-type]
    assert isinstance(target, SmtpDelivery)
    return target


def _item(body: bytes = MESSAGE, mailbox: str = "bob@acme.example") -> DeliveryItem:
    return DeliveryItem(
        tenant="acme",
        mailbox=mailbox,
        dedup_key="k",
        message_id="<1@origin.example>",
        size=len(body),
        sha256="0" * 64,
        open_message=lambda: io.BytesIO(body),
        add_headers=(("X-Mailferry-Trace", "acme; d1"),),
    )


def test_message_arrives_unchanged_apart_from_the_trace_header(sink: SmtpSink, ca: LoopbackCA) -> None:
    target = _target(sink, ca)
    target.check_credentials()
    target.deliver(_item())
    target.deliver(_item(mailbox="carol@acme.example"))  # reuses the connection
    target.close()
    first, second = sink.handler.accepted
    assert first.data == b"X-Mailferry-Trace: acme; d1\r\n" + MESSAGE
    assert first.rcpt_tos == ["bob@acme.example"]
    assert first.mail_from == "bounce@origin.example"
    assert second.rcpt_tos == ["carol@acme.example"]


def test_configured_envelope_sender_wins(sink: SmtpSink, ca: LoopbackCA) -> None:
    target = _target(sink, ca, mail_from="mailferry@acme.example")
    target.deliver(_item())
    target.close()
    assert sink.handler.accepted[0].mail_from == "mailferry@acme.example"


def test_large_message_streams_through(sink: SmtpSink, ca: LoopbackCA) -> None:
    line = b"x" * 998 + b"\r\n"
    body = b"From: a@origin.example\r\nSubject: big\r\n\r\n" + line * 20_000 + b".tail\r\n"
    target = _target(sink, ca)
    target.deliver(_item(body))
    target.close()
    assert sink.handler.accepted[0].data == b"X-Mailferry-Trace: acme; d1\r\n" + body


def test_untrusted_certificate_is_a_tenant_error(sink: SmtpSink) -> None:
    with pytest.raises(TenantError) as caught:
        _target(sink, None).check_credentials()
    assert caught.value.reason_code == "tls-untrusted"
    assert sink.handler.accepted == []


def test_wrong_password_is_a_tenant_error(sink: SmtpSink, ca: LoopbackCA) -> None:
    target = _target(sink, ca, password=SecretRef.plaintext("wrong"))
    with pytest.raises(TenantError) as caught:
        target.deliver(_item())
    assert caught.value.reason_code == "bad-credentials"
    assert "s3cret" not in str(caught.value) and "wrong" not in str(caught.value)


def test_reply_codes_map_to_transient_and_permanent(sink: SmtpSink, ca: LoopbackCA) -> None:
    sink.handler.replies["busy@acme.example"] = "451 4.3.0 try again later"
    sink.handler.replies["gone@acme.example"] = "550 5.1.1 no such user"
    target = _target(sink, ca)
    with pytest.raises(TransientError) as transient:
        target.deliver(_item(mailbox="busy@acme.example"))
    assert transient.value.reason_code == "smtp-451"
    with pytest.raises(PermanentError) as permanent:
        target.deliver(_item(mailbox="gone@acme.example"))
    assert permanent.value.reason_code == "recipient-refused"
    assert "no such user" in str(permanent.value)
    sink.handler.data_reply = "552 5.3.4 message size exceeds fixed maximum"
    with pytest.raises(PermanentError) as too_big:
        target.deliver(_item())
    assert too_big.value.reason_code == "message-too-large"
    sink.handler.data_reply = None
    target.deliver(_item(mailbox="ok@acme.example"))
    target.close()
    assert [a.rcpt_tos for a in sink.handler.accepted] == [["ok@acme.example"]]


def test_no_answer_after_the_final_dot_is_ambiguous(sink: SmtpSink, ca: LoopbackCA) -> None:
    sink.handler.stall_after_dot_s = 3
    target = _target(sink, ca, timeout=1)
    with pytest.raises(AmbiguousOutcomeError):
        target.deliver(_item())
    assert target.already_delivered(_item()) is None  # SMTP cannot tell
    target.close()


def test_size_limit_is_checked_before_connecting(sink: SmtpSink, ca: LoopbackCA) -> None:
    target = _target(sink, ca, max_message_size=100)
    with pytest.raises(PermanentError) as caught:
        target.deliver(_item())
    assert caught.value.reason_code == "message-too-large"


def test_connection_refused_is_transient(ca: LoopbackCA, tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    target = create(
        None,  # type: ignore[arg-type]
        SmtpTarget.model_validate({"name": "x", "kind": "smtp", "host": "127.0.0.1", "port": port}),
    )
    with pytest.raises(TransientError):
        target.deliver(_item())
