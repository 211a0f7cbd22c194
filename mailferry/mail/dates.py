"""A timestamp from a Date or Received header, or None; never an exception.

``email.utils.parsedate_to_datetime`` does the parsing (it is a split and a few look-ups,
linear); what it raises on hostile text varies by field (``ValueError`` for a day 99 or an
offset past 24 h, ``OverflowError`` for a huge year, ``IndexError``/``TypeError`` for too
few parts), so all of it is caught here, and an over-long value is not even tried: no real
date is longer than a hundred characters.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

MAX_DATE_TEXT = 200


def as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_date(text: str | None) -> datetime | None:
    """The instant ``text`` names, in UTC (a date without a zone is taken as UTC)."""
    if not text or len(text) > MAX_DATE_TEXT:
        return None
    try:
        return as_utc(parsedate_to_datetime(text.strip()))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def received_time(received: str) -> datetime | None:
    """The time stamp after the last ``;`` of a Received header."""
    _, sep, when = received.rpartition(";")
    return parse_date(when) if sep else None
