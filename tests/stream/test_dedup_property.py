"""Dedup verdicts with ``raw`` sharded at the producer, against the design with a re-key hop.

Pure logic, no Kafka: the producer's key (``build_raw_record``) and partition
(``partition_for``), the stream's router (``route_raw``) and decision (``decide``). The
reference is the earlier design: every candidate re-keyed by its dedup key, so one table
saw every copy of a key whatever raw partition it came from. The sharded design keeps one
table per raw partition and processes the partitions in any interleaving; both must deliver
each (message, recipient) exactly once, and drop the same number of copies.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from mailferry.blobs import LocalBlobStore
from mailferry.mail.message_id import normalise_message_id
from mailferry.packing import origin_of
from mailferry.rawrecord import RawSource, build_raw_record
from mailferry.schemas.codec import Record
from mailferry.shard import head_message_id, partition_for, shard_key
from mailferry.streams.dedup import Sighting, decide
from mailferry.streams.router import Routed, read_headers, route_raw
from tests.stream.factories import DOMAIN, TRACE_KEY, config, message

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
WINDOW_MS = 30 * 24 * 3600 * 1000
CONFIG = config()
BLOBS = LocalBlobStore(Path("/nonexistent-never-written"))  # every message here stays inline
PEOPLE = ("alice", "bob", "carol")


@dataclass(frozen=True)
class Copy:
    """One fetched copy: which mailbox it came from and its bytes."""

    mailbox: str
    data: bytes


def _id_form(local: str, domain: str, form: int) -> str:
    """One Message-ID written the ways mail clients and relays write it."""
    text = f"{local}@{domain}"
    return [
        f"<{text}>",
        f"<{local}@{domain.upper()}>",
        text,
        f"  <{text}> ",
        f"<{text}> (comment)",
        f"\r\n <{text}>",
    ][form]


@st.composite
def mailboxes_full_of_copies(draw: st.DrawFn) -> list[Copy]:
    """Messages to some of the people, each with a Message-ID (in varying forms per copy) or
    without one, fetched from the catch-all (once per recipient, as an ISP's catch-all holds
    them) and, for Alice, from her personal mailbox too; some copies fetched twice."""
    copies = []
    for number in range(draw(st.integers(1, 5))):
        recipients = draw(st.lists(st.sampled_from(PEOPLE), min_size=1, max_size=3, unique=True))
        has_id = draw(st.booleans())
        local = draw(st.sampled_from(["m", "M", "Mixed.Case"])) + str(number)
        domain = draw(st.sampled_from(["x.example", "Partner.Example"]))
        fetched = [("catchall", f"{person}@{DOMAIN}") for person in recipients]
        if "alice" in recipients and draw(st.booleans()):
            fetched.append(("alice-private", None))
        for mailbox, delivered_to in fetched:
            headers = [("Delivered-To", delivered_to)] if delivered_to else []
            headers.append(("Subject", "s"))
            if has_id:
                headers.append(("Message-ID", _id_form(local, domain, draw(st.integers(0, 5)))))
            copies.append(Copy(mailbox, message(*headers, body=f"message {number}\r\n")))
    refetched = draw(st.lists(st.sampled_from(copies), max_size=3))
    return draw(st.permutations(copies + refetched))


def routed(copy: Copy, origin: str) -> tuple[bytes, Routed]:
    key, raw = build_raw_record(
        RawSource("acme", copy.mailbox, "pop3"), copy.data, blobs=BLOBS, inline_threshold=1 << 20
    )
    outcome = route_raw(raw, config=CONFIG, blobs=BLOBS, origin=origin, now=NOW, trace_key=TRACE_KEY)
    assert isinstance(outcome, Routed)
    return key, outcome


def deliver(table: dict[str, Sighting], candidates: list[Record], origin: str) -> tuple[list[str], int]:
    """The stream's decision for the candidates of one raw record: (delivered keys, dropped)."""
    delivered, dropped = [], 0
    for delivery in candidates:
        key = delivery["dedup_key"]
        verdict = decide(table.get(key), now_ms=NOW_MS, window_ms=WINDOW_MS, origin=origin)
        if verdict == "duplicate":
            dropped += 1
            continue
        if verdict != "reprocessed":
            table[key] = Sighting(NOW_MS, origin, delivery["mailbox_id"], delivery["delivery_id"])
        delivered.append(key)
    return delivered, dropped


def rekeyed_design(copies: list[Copy]) -> tuple[Counter[str], int]:
    """Before: one logical table over all dedup keys (the re-keyed topic's partitions)."""
    table: dict[str, Sighting] = {}
    delivered: Counter[str] = Counter()
    dropped = 0
    for offset, copy in enumerate(copies):
        origin = f"raw/mailbox/{offset}"
        _key, outcome = routed(copy, origin)
        keys, n = deliver(table, [c.delivery for c in outcome.candidates], origin)
        delivered.update(keys)
        dropped += n
    return delivered, dropped


def sharded_design(
    copies: list[Copy], partitions: int, schedule: list[int], pack_sizes: list[int]
) -> tuple[Counter[str], int]:
    """After: raw partitioned by shard, one table per partition, partitions interleaved as
    ``schedule`` says (each partition in its own order, as Kafka keeps it), and the mails of
    a partition packed into records of ``pack_sizes`` (cycled) as the fetcher packs them."""
    fetched: dict[int, list[Copy]] = {p: [] for p in range(partitions)}
    for copy in copies:
        key, outcome = routed(copy, "")
        fetched[partition_for(key, partitions)].append(copy)
        for candidate in outcome.candidates:  # the shard is the dedup key without its recipient
            tenant, _recipient, rest = candidate.dedup_key.split("/", 2)
            assert key == f"{tenant}/{rest}".encode()
    sizes = itertools.cycle(pack_sizes or [1])
    records: dict[int, list[list[tuple[str, Routed]]]] = {p: [] for p in range(partitions)}
    for partition, mails in fetched.items():
        while mails:
            wanted = next(sizes)
            pack, mails = mails[:wanted], mails[wanted:]
            size = len(pack)
            base = f"raw/{partition}/{len(records[partition])}"
            origins = [origin_of(base, index, size) for index in range(size)]
            records[partition].append([(o, routed(c, o)[1]) for o, c in zip(origins, pack, strict=True)])
    tables: dict[int, dict[str, Sighting]] = {p: {} for p in range(partitions)}
    delivered: Counter[str] = Counter()
    dropped = 0
    turns = iter(schedule)
    while any(records.values()):
        waiting = [p for p in range(partitions) if records[p]]
        partition = waiting[next(turns, 0) % len(waiting)]
        for origin, outcome in records[partition].pop(0):
            keys, n = deliver(tables[partition], [c.delivery for c in outcome.candidates], origin)
            delivered.update(keys)
            dropped += n
    return delivered, dropped


@settings(max_examples=150, deadline=None)
@given(
    copies=mailboxes_full_of_copies(),
    partitions=st.integers(1, 6),
    schedule=st.lists(st.integers(0, 5), max_size=40),
    pack_sizes=st.lists(st.integers(1, 4), max_size=5),
)
def test_sharded_raw_gives_the_verdicts_of_the_rekeyed_design(
    copies: list[Copy], partitions: int, schedule: list[int], pack_sizes: list[int]
) -> None:
    """Packed or not (``pack_sizes`` empty: one mail per record), interleaved in any way."""
    before, dropped_before = rekeyed_design(copies)
    after, dropped_after = sharded_design(copies, partitions, schedule, pack_sizes)
    assert after == before
    assert set(after.values()) == {1}  # one delivery per (message, recipient)
    assert dropped_after == dropped_before


@settings(max_examples=300, deadline=None)
@given(
    local=st.text(
        st.characters(exclude_characters="\r\n", exclude_categories=["Cs"]), min_size=1, max_size=12
    ),
    domain=st.sampled_from(["x.example", "X.Example", "bücher.example", ""]),
    form=st.integers(0, 5),
    noise=st.sampled_from(["", "junk ", "<a@b> ", "=?utf-8?q?x?= "]),
)
def test_the_fetcher_reads_the_message_id_the_router_reads(
    local: str, domain: str, form: int, noise: str
) -> None:
    """The producer's quick scan (``message_id_field``) and the router's email parser must
    agree on the Message-ID, or copies of one message could land on two partitions."""
    value = noise + _id_form(local, domain, form)
    data = message(("Subject", "s"), ("Message-ID", value))
    _key, raw = build_raw_record(
        RawSource("acme", "catchall", "pop3"), data, blobs=BLOBS, inline_threshold=1 << 20
    )
    router_id = normalise_message_id(read_headers(raw, BLOBS).first("Message-ID"))
    assert head_message_id(data) == router_id
    assert shard_key("acme", router_id, raw["sha256"]) == _key
