"""``EventPacks``: many audit events in few records, each read back in order by ``read_events``."""

from __future__ import annotations

from dataclasses import dataclass

from mailferry.audit import EventPacks, audit_event, read_events


@dataclass
class _Record:
    partition: int
    offset: int
    value: bytes | None


def _events(count: int) -> list[tuple[bytes, bytes]]:
    return [
        audit_event("fetched", stage="fetch", tenant="acme", message_id=f"<{i}@packs.test>")
        for i in range(count)
    ]


def _read(packs: list[tuple[bytes, bytes]]) -> list[str | None]:
    return [e["message_id"] for i, (_k, v) in enumerate(packs) for e in read_events(_Record(0, i, v))]


def test_packs_close_before_the_limit_and_keep_every_event_in_order() -> None:
    events = _events(10)
    limit = sum(len(v) for _k, v in events[:3]) + 30
    packs = EventPacks(limit)
    sent = [pack for key, value in events for pack in packs.add(key, value)] + packs.drain()
    assert 3 <= len(sent) <= 5
    assert all(len(value) <= limit for _key, value in sent)
    assert sent[0][0] == events[0][0]  # a pack is keyed by its first event
    assert _read(sent) == [f"<{i}@packs.test>" for i in range(10)]
    assert len(packs) == 0 and packs.drain() == []


def test_a_limit_of_zero_sends_every_event_alone_as_a_plain_record() -> None:
    events = _events(3)
    packs = EventPacks(0)
    sent = [pack for key, value in events for pack in packs.add(key, value)] + packs.drain()
    assert sent == events
