"""What a delivered item looks like in Exchange, independent of how it is written.

Pure functions over the message head (parsed by ``mailferry.mail``), shared by the EWS and
Graph targets: the delivery time to show (the item's own, else the newest Received header,
else Date) and the Internet Message-ID to find it by later. No exchangelib here, so a
Graph-only deployment never imports it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from mailferry.consumers.target import DeliveryItem
from mailferry.mail.block import chunks_from, locate
from mailferry.mail.dates import as_utc, parse_date, received_time
from mailferry.mail.headers import MessageHeaders, parse_headers


def read_head(item: DeliveryItem) -> MessageHeaders:
    """The header block only (up to the one limit), never the body."""
    with item.open_message() as handle:
        return parse_headers(locate(chunks_from(handle, 16384)).data)


def delivery_time(item: DeliveryItem, head: MessageHeaders, *, now: datetime | None = None) -> datetime:
    """When the message reached its first mailbox: what Outlook shows as "Received"."""
    if item.received_at is not None:
        return as_utc(item.received_at)
    for received in head.get_all("Received"):
        parsed = received_time(received)
        if parsed is not None:
            return parsed
    return parse_date(head.first("Date")) or as_utc(now or datetime.now(UTC))


def internet_message_id(item: DeliveryItem, head: MessageHeaders) -> str | None:
    """The Message-ID exactly as Exchange indexes it (InternetMessageId, with angle brackets).

    Not ``mailferry.mail.message_id``'s canonical form: Exchange keeps the case of the
    domain too, and the look-up must match what it stored.
    """
    raw = head.first("Message-ID")
    value = " ".join(raw.split()) if raw else (item.message_id or "")
    value = value.strip()
    if not value:
        return None
    return value if value.startswith("<") else f"<{value}>"
