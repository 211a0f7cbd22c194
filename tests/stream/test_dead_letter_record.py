"""A mail the stream cannot route is dead-lettered with its own address: inside a pack of raw
mails that is topic/partition/offset plus its index (``origin_index``), so a requeue or a trace
finds that one mail and not its neighbours."""

from __future__ import annotations

from datetime import UTC, datetime

from mailferry.schemas.records import DEAD_LETTERS
from mailferry.streams.records import Origin, dead_letter
from mailferry.streams.router import Rejected

from ..factories import records

T0 = datetime(2026, 12, 3, 17, 0, tzinfo=UTC)
RAW = records.raw_message(source_uid="7/3", inline=b"not mail\n")
WHY = Rejected("malformed-message", "no-headers", "no header could be parsed from the message")


def test_a_mail_inside_a_pack_is_dead_lettered_with_its_index() -> None:
    origin = Origin.parse("t.raw/1/42/3")
    value, tenant = dead_letter(
        b"k", RAW, origin.topic, origin.partition, origin.offset, WHY, index=origin.index, now=T0
    )
    letter = DEAD_LETTERS.decode(value)
    assert tenant == "acme"
    assert (letter["origin_topic"], letter["origin_partition"], letter["origin_offset"]) == ("t.raw", 1, 42)
    assert letter["origin_index"] == 3
    assert letter["raw"] == RAW


def test_a_plain_record_has_no_index() -> None:
    value, _ = dead_letter(b"k", RAW, "t.raw", 1, 42, WHY, now=T0)
    assert DEAD_LETTERS.decode(value)["origin_index"] is None
