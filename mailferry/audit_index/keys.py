"""The names under which an audit event can be found.

A message is asked for by its Message-ID, a dedup key, its content hash, a delivery id or a
dead-letter id. Each event is filed under every one of those it carries, prefixed by kind
so that a dedup key can never collide with a Message-ID of the same text. Keys are stored
as 64-bit hashes: a trace re-checks every event it reads, so a collision costs one extra
read, never a wrong answer, and the index stays about 20 bytes per key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from mailferry.mail.message_id import lookup_key

MESSAGE_ID = "mid:"
CONTENT = "sha:"
DEDUP = "dk:"
DELIVERY = "did:"
DEAD_LETTER = "dl:"
SIGHTED = (MESSAGE_ID, CONTENT)  # keys whose first sighting is remembered past retention


def key_hash(key: str) -> int:
    """A signed 64-bit hash, the form SQLite stores natively."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)


def _content(value: str) -> str:
    return value.removeprefix("sha256:").lower()


def event_keys(event: Mapping[str, Any]) -> list[str]:
    """Every key the event is filed under."""
    keys: list[str] = []
    if event.get("message_id"):
        keys.append(MESSAGE_ID + lookup_key(event["message_id"]))
    if event.get("sha256"):
        keys.append(CONTENT + _content(event["sha256"]))
    if event.get("dedup_key"):
        keys.append(DEDUP + event["dedup_key"])
    details = event.get("details") or {}
    if details.get("delivery_id"):
        keys.append(DELIVERY + details["delivery_id"])
    if details.get("dead_letter_id"):
        keys.append(DEAD_LETTER + details["dead_letter_id"])
    return keys


def query_keys(wanted: str) -> list[str]:
    """What a person may have typed: any of the kinds, tried together."""
    text = wanted.strip()
    keys = [MESSAGE_ID + lookup_key(text), DEDUP + text, DELIVERY + text, DEAD_LETTER + text]
    if text.lower().removeprefix("sha256:").isalnum():
        keys.append(CONTENT + _content(text))
    return keys


def related_keys(events: Iterable[Mapping[str, Any]]) -> set[str]:
    """The keys that tie events together into one story: every copy's content hash and the
    Message-ID, so that fetch events (which know only the hash) and deliveries (which know the
    dedup key) meet."""
    related: set[str] = set()
    for event in events:
        related.update(key for key in event_keys(event) if key.startswith(SIGHTED))
    return related


def matches(event: Mapping[str, Any], keys: set[str]) -> bool:
    """Whether the event really carries one of ``keys`` (hashes may collide)."""
    return any(key in keys for key in event_keys(event))
