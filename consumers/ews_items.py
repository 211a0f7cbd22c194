"""What a delivered item looks like in Exchange, independent of how it is written.

Pure functions over the message head: the delivery time to show (the item's own, else the
newest Received header, else Date) and the Internet Message-ID to find it by later. Also
the exchangelib Message class that carries PR_MESSAGE_FLAGS (0x0E07 = 1, "not a draft") and
PR_MESSAGE_DELIVERY_TIME (0x0E06): without them a MIME import shows up as an unsent draft
dated now.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import Message as EmailMessage
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import parsedate_to_datetime

from exchangelib import Message
from exchangelib.extended_properties import ExtendedProperty
from mailferry.consumers.target import DeliveryItem

# PR_MESSAGE_FLAGS at creation: 1 (MSGFLAG_READ) without MSGFLAG_UNSENT (8) makes a received
# item, not a draft; IsRead=false in the same request then marks it unread.
MESSAGE_FLAGS_DELIVERED = 1
HEAD_LIMIT = 256 * 1024


class MessageFlags(ExtendedProperty):  # type: ignore[misc]
    property_tag = 0x0E07
    property_type = "Integer"


class DeliveryTime(ExtendedProperty):  # type: ignore[misc]
    property_tag = 0x0E06
    property_type = "SystemTime"


class InboxMessage(Message):  # type: ignore[misc]
    """A Message with the two properties a received (not draft) item needs at creation."""


InboxMessage.register("mf_message_flags", MessageFlags)
InboxMessage.register("mf_delivery_time", DeliveryTime)


def read_head(item: DeliveryItem) -> EmailMessage:
    """Parse only the header block (bounded), never the whole body."""
    buf = b""
    with item.open_message() as handle:
        while len(buf) < HEAD_LIMIT:
            chunk = handle.read(16384)
            if not chunk:
                break
            buf += chunk
            if b"\r\n\r\n" in buf or b"\n\n" in buf:
                break
    return BytesHeaderParser(policy=compat32).parsebytes(buf[:HEAD_LIMIT], headersonly=True)


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _parse_date(text: str) -> datetime | None:
    try:
        return _as_utc(parsedate_to_datetime(text.strip()))
    except (TypeError, ValueError, IndexError):
        return None


def delivery_time(item: DeliveryItem, head: EmailMessage, *, now: datetime | None = None) -> datetime:
    """When the message reached its first mailbox: what Outlook shows as "Received"."""
    if item.received_at is not None:
        return _as_utc(item.received_at)
    for received in head.get_all("Received") or []:
        _, sep, when = str(received).rpartition(";")
        parsed = _parse_date(when) if sep else None
        if parsed is not None:
            return parsed
    date = head.get("Date")
    parsed = _parse_date(str(date)) if date else None
    return parsed or _as_utc(now or datetime.now(UTC))


def internet_message_id(item: DeliveryItem, head: EmailMessage) -> str | None:
    """The Message-ID exactly as Exchange indexes it (InternetMessageId, with angle brackets)."""
    raw = head.get("Message-ID")
    value = " ".join(str(raw).split()) if raw else (item.message_id or "")
    value = value.strip()
    if not value:
        return None
    return value if value.startswith("<") else f"<{value}>"
