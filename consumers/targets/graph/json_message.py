"""MIME to a Graph ``message`` resource, for the JSON create mode (Graph v1.0).

Creating a message from JSON always makes a draft unless PR_MESSAGE_FLAGS (0x0E07) is set
at creation; PR_MESSAGE_DELIVERY_TIME (0x0E06) and PR_CLIENT_SUBMIT_TIME (0x0039) give it the
received and sent times of the original. The conversion is lossy by nature; what is lost is
listed in docs/targets.md, and ``LOSSES`` names it for code that wants to warn.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from mailferry.errors import PermanentError
from mailferry.mail.addresses import parse_address_list
from mailferry.mail.block import locate_in
from mailferry.mail.dates import parse_date
from mailferry.mail.encoded_words import decode_value
from mailferry.mail.headers import MessageHeaders, parse_headers

LOSSES = (
    "header block other than x- headers (Received, DKIM, Authentication-Results, List-*, threading)",
    "exact MIME structure and transfer encodings (S/MIME signatures no longer verify)",
    "alternative bodies: only the HTML body is kept when there is one",
    "nested message/rfc822 parts become .eml file attachments",
)
MAX_REQUEST = 4 * 1024 * 1024  # Graph's request size limit for JSON bodies


def _recipients(headers: MessageHeaders, header: str) -> list[dict[str, Any]]:
    found = []
    for value in headers.get_all(header):
        parsed = parse_address_list(value)
        for address, name in zip(parsed.written, parsed.names, strict=True):
            found.append({"emailAddress": {"address": address, **({"name": name} if name else {})}})
    return found


def _utc(value: datetime) -> str:
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _body(message: EmailMessage) -> dict[str, str]:
    part = message.get_body(preferencelist=("html", "plain"))
    if part is None:
        return {"contentType": "text", "content": ""}
    kind = "html" if part.get_content_subtype() == "html" else "text"
    return {"contentType": kind, "content": str(part.get_content())}


def _attachments(message: EmailMessage) -> list[dict[str, Any]]:
    body = message.get_body(preferencelist=("html", "plain"))
    found = []
    for index, part in enumerate(message.walk()):
        if part.is_multipart() or part is body or part is message:
            continue
        if part.get_content_maintype() == "text" and part.get_content_disposition() is None:
            continue  # an alternative body, not an attachment
        nested = part.get_content_type() == "message/rfc822"
        decoded = part.get_payload(decode=True)
        payload = part.as_bytes() if nested else (decoded if isinstance(decoded, bytes) else b"")
        name = part.get_filename() or f"part-{index}" + (".eml" if nested else "")
        content_id = (part.get("Content-ID") or "").strip("<> ")
        found.append(
            {
                "@odata.type": "#microsoft.graph.fileAttachment",
                "name": name,
                "contentType": part.get_content_type(),
                "contentBytes": base64.b64encode(payload).decode(),
                "isInline": part.get_content_disposition() == "inline" and bool(content_id),
                **({"contentId": content_id} if content_id else {}),
            }
        )
    return found


def to_graph_message(
    raw: bytes, *, delivered: datetime, add_headers: tuple[tuple[str, str], ...] = ()
) -> dict[str, Any]:
    """The JSON body of ``POST /users/{id}/mailFolders/inbox/messages`` for ``raw``.

    The top-level header fields are read by ``mailferry.mail`` (never raises, linear); the
    email package's modern parser is used for the MIME body only.
    """
    headers = parse_headers(locate_in(raw).data)
    message = BytesParser(policy=policy.default).parsebytes(raw)
    if not headers.fields:
        raise PermanentError("the message has no headers to convert", reason_code="mime-conversion-failed")
    result: dict[str, Any] = {
        "subject": headers.first("Subject") or "",
        "body": _body(message),
        "toRecipients": _recipients(headers, "To"),
        "ccRecipients": _recipients(headers, "Cc"),
        "isRead": False,
    }
    for header, member in (("From", "from"), ("Sender", "sender")):
        first = _recipients(headers, header)
        if first:
            result[member] = first[0]
    reply_to = _recipients(headers, "Reply-To")
    if reply_to:
        result["replyTo"] = reply_to
    message_id = headers.first("Message-ID")
    if message_id:
        result["internetMessageId"] = " ".join(message_id.split())
    written = ((str(n), decode_value(str(v))[0]) for n, v in message.raw_items())
    x_headers = [(n, v) for n, v in (*add_headers, *written) if n.lower().startswith("x-")]
    if x_headers:
        result["internetMessageHeaders"] = [{"name": n, "value": str(v)[:900]} for n, v in x_headers[:5]]
    attachments = _attachments(message)
    if attachments:
        result["attachments"] = attachments
    properties = [
        {"id": "Integer 0x0E07", "value": "1"},
        {"id": "SystemTime 0x0E06", "value": _utc(delivered)},
    ]
    sent = parse_date(headers.first("Date"))
    if sent is not None:
        properties.append({"id": "SystemTime 0x0039", "value": _utc(sent)})
    result["singleValueExtendedProperties"] = properties
    return result
