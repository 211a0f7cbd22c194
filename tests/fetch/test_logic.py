"""Pure logic of the fetchers: wire parsing, plans, SASL strings, back-off."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from mailferry.config.sources import ImapSource, Pop3Source
from mailferry.producers.access import oauthbearer, xoauth2
from mailferry.producers.delivery_watch import Deliveries
from mailferry.producers.imap_fetch import plan_folder
from mailferry.producers.imap_session import parse_fetch, uid_set
from mailferry.producers.ingest import message_id
from mailferry.producers.pop3_fetch import plan_pop3
from mailferry.producers.pop3_wire import DotUnstuffer, Pop3ErrorReply, check_status, parse_uidl
from mailferry.producers.scheduler import Backoff
from mailferry.producers.state import state_record

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _stuff(body: bytes) -> bytes:
    if not body:
        return b".\r\n"
    lines = body[:-2].split(b"\r\n")
    return b"\r\n".join(b"." + line if line.startswith(b".") else line for line in lines) + b"\r\n.\r\n"


@pytest.mark.parametrize("seed", range(5))
def test_unstuffer_restores_the_message_whatever_the_read_boundaries(seed: int) -> None:
    rnd = random.Random(seed)
    for _ in range(400):
        pieces = [b".", b"..", b"a", b"\r\n", b"\r", b"\n", b".\r\n", b"x" * 50]
        body = b"".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 40)))
        body = body + b"\r\n" if body else b""
        wire = _stuff(body) + b"+OK next reply"
        unstuffer, out, pos = DotUnstuffer(), b"", 0
        while not unstuffer.done:
            step = rnd.randint(1, 9)
            out += unstuffer.feed(wire[pos : pos + step])
            pos += step
        assert out == body
        assert unstuffer.rest + wire[pos:] == b"+OK next reply"


def test_unstuffer_keeps_memory_bounded_on_a_long_line_without_line_ends() -> None:
    unstuffer = DotUnstuffer()
    emitted = sum(len(unstuffer.feed(b"y" * 100_000)) for _ in range(20))
    assert emitted > 1_900_000  # nothing piles up in the carry
    assert unstuffer.feed(b"\r\n.\r\n") == b"y\r\n"


def test_uidl_parsing_reports_broken_and_shared_ids() -> None:
    listing, problems = parse_uidl(
        [b"1 aaa", b"2", b"3 has space", b"4 ccc", b"5 ccc", b"x yyy", b"6 " + b"z" * 71, b"7 ok"]
    )
    assert listing == {1: "aaa", 7: "ok"}
    assert [p.line for p in problems] == ["2", "3 has space", "5 ccc", "x yyy", "6 " + "z" * 71]


def test_error_reply_code() -> None:
    with pytest.raises(Pop3ErrorReply) as info:
        check_status(b"-ERR [AUTH] Authentication failed.\r\n")
    assert info.value.code == "AUTH"
    assert check_status(b"+OK 2 320\r\n") == b"2 320"


def _pop3(**extra: object) -> Pop3Source:
    return Pop3Source.model_validate(
        {
            "id": "box",
            "kind": "pop3",
            "mode": "personal",
            "host": "h",
            "username": "u",
            "auth": {"kind": "password", "password": "env:X"},
            "deliver_to": "a@b.example",
            **extra,
        }
    )


def _fetched(uidl: str, age: timedelta, status: str = "fetched") -> dict[str, object]:
    return state_record("t", "box", status, first_seen_at=NOW - age, uidl=uidl)


def test_pop3_plan_fetches_new_deletes_known_and_forgets_vanished() -> None:
    known = {"old": _fetched("old", timedelta(0)), "gone": _fetched("gone", timedelta(0), "deleted")}
    plan = plan_pop3({1: "old", 2: "new"}, {1: 10, 2: 20}, known, _pop3(), NOW)
    assert [i.uidl for i in plan.fetch] == ["new"]
    assert [i.uidl for i in plan.delete] == ["old"]
    assert plan.forget == ["gone"]


def test_pop3_plan_leave_on_server_deletes_only_after_the_age() -> None:
    source = _pop3(leave_on_server=True, delete_after="7d")
    known = {"young": _fetched("young", timedelta(days=6)), "aged": _fetched("aged", timedelta(days=8))}
    plan = plan_pop3({1: "young", 2: "aged"}, {}, known, source, NOW)
    assert [i.uidl for i in plan.delete] == ["aged"] and not plan.fetch
    forever = plan_pop3({1: "young", 2: "aged"}, {}, known, _pop3(leave_on_server=True), NOW)
    assert not forever.delete


def test_pop3_plan_cap_size_limit_and_incomplete_listing() -> None:
    source = _pop3(max_messages_per_pass=2, max_message_size="1KiB", oversize_action="headers-notice")
    plan = plan_pop3({1: "a", 2: "b", 3: "c"}, {1: 5000, 2: 10, 3: 10}, {}, source, NOW)
    assert [i.uidl for i in plan.headers_only] == ["a"] and [i.uidl for i in plan.fetch] == ["b"]
    skip = plan_pop3({1: "a"}, {1: 5000}, {}, _pop3(max_message_size="1KiB"), NOW)
    assert [i.uidl for i in skip.oversize_skip] == ["a"]
    kept = plan_pop3({}, {}, {"x": _fetched("x", timedelta(0))}, _pop3(), NOW, listing_complete=False)
    assert kept.forget == []


def test_imap_plan_orders_caps_and_chooses_how() -> None:
    source = ImapSource.model_validate(
        {
            "id": "i",
            "kind": "imap",
            "mode": "global",
            "host": "h",
            "username": "u",
            "auth": {"kind": "password", "password": "env:X"},
            "max_messages_per_pass": 3,
            "max_message_size": 10_000,
        }
    )
    steps = plan_folder([9, 3, 5, 7], {3: 100, 5: 5000, 7: 20_000, 9: 1}, source, inline_threshold=1000)
    assert [(s.uid, s.action) for s in steps] == [(3, "fetch"), (5, "stream"), (7, "skip")]


def test_uid_set_and_fetch_parsing() -> None:
    assert uid_set([5, 1, 2, 3, 9, 10]) == "1:3,5,9:10"
    assert uid_set([]) == ""
    data: list[object] = [
        (b"1 (UID 4 RFC822.SIZE 7 BODY[] {7}", b"abc\r\n\r\n"),
        b")",
        (b"2 (BODY[] {3}", b"xyz"),
        b" UID 8)",
        b"3 (UID 9 RFC822.SIZE 120)",
    ]
    items = parse_fetch(data)
    assert [(i.uid, i.data, i.size) for i in items] == [
        (4, b"abc\r\n\r\n", 7),
        (8, b"xyz", None),
        (9, None, 120),
    ]


def test_sasl_initial_responses() -> None:
    assert xoauth2("me@x.example", "tok") == b"user=me@x.example\x01auth=Bearer tok\x01\x01"
    assert (
        oauthbearer("a,b=c@x", "tok", "imap.x", 993)
        == b"n,a=a=2Cb=3Dc@x,\x01host=imap.x\x01port=993\x01auth=Bearer tok\x01\x01"
    )


def test_message_id_from_headers_only() -> None:
    """The fetcher writes the same canonical id the stream puts in dedup keys."""
    assert message_id(b"Subject: x\r\nMessage-ID:\r\n <a@b>\r\n\r\nMessage-ID: <body@x>\r\n") == ("<a@b>", [])
    assert message_id(b"Subject: x\r\n\r\nMessage-ID: <body@x>\r\n") == (None, [])
    assert message_id(b"X-Message-ID: <no@x>\r\nmessage-id:   <Case@X>  \r\n\r\n") == ("<Case@x>", [])
    assert message_id(b"Message-ID:\r\n\r\n") == (None, [])
    assert message_id(b"Message-ID: no id here\r\n\r\n") == (None, ["message-id:unparseable"])


def test_backoff_grows_is_capped_and_honours_the_server_hint() -> None:
    backoff = Backoff(base=1, factor=2, maximum=30, jitter=0)
    assert [backoff.delay(n) for n in (1, 2, 3, 10)] == [1, 2, 4, 30]
    assert backoff.delay(1, hint=12) == 12


@pytest.mark.parametrize("seed", range(8))
def test_pop3_reader_restores_pipelined_replies_whatever_their_packing(seed: int) -> None:
    """RETR replies several to a read, one spanning many reads, dot-leading first lines and
    empty bodies: the client must return every body exactly, in order."""
    import socket
    import threading

    from mailferry.producers.pop3_client import Pop3Client

    rnd = random.Random(seed)
    bodies = [b"", b".\r\n", b"..x\r\n", b".hidden first\r\nand more\r\n", b"\r\n"]
    for _ in range(60):
        lines = [
            rnd.choice([b".", b"..", b"a line", b"x" * rnd.randint(0, 200), b""])
            for _ in range(rnd.randint(1, 30))
        ]
        bodies.append(b"\r\n".join(lines) + b"\r\n")
    for size in (40_000, 150_000, 300_000, 500_000):  # spanning several reads
        bodies.append(b"".join(rnd.choice([b".dot\r\n", b"..\r\n", b"line\r\n"]) for _ in range(size // 6)))
    bodies.append(b"big line\r\n" * 60_000)  # spans many 256 KiB reads
    rnd.shuffle(bodies)
    wire = b"".join(b"+OK\r\n" + _stuff(body) for body in bodies)
    ours, theirs = socket.socketpair()

    def serve() -> None:
        pos = 0
        while pos < len(wire):
            step = rnd.choice([1, 2, 3, 7, 1000, 70_000, 300_000])
            theirs.sendall(wire[pos : pos + step])
            pos += step

    server = threading.Thread(target=serve)
    server.start()
    client = Pop3Client(ours, "test")
    client.capabilities = {}  # no PIPELINING: the client sends one RETR at a time, unread here
    got = [b"".join(chunks) for _, chunks in client.retrieve(range(1, len(bodies) + 1))]
    server.join()
    ours.close()
    theirs.close()
    assert got == bodies


class _ScriptedSocket:
    """Hands the client exactly the given pieces, one per ``recv``: read boundaries on demand."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = list(pieces)

    def recv(self, _size: int) -> bytes:
        return self.pieces.pop(0) if self.pieces else b""

    def sendall(self, _data: bytes) -> None:
        pass


def test_pop3_reader_finds_a_reply_end_split_at_any_byte() -> None:
    """Every way of splitting a reply (and the next one) over reads, around its CRLF.CRLF end."""
    from mailferry.producers.pop3_client import Pop3Client

    bodies = [b"", b"..lead\r\nab\r\n..\r\n.x\r\n", b".\r\n", b"next\r\n"]
    wire = b"".join(b"+OK\r\n" + _stuff(body) for body in bodies)
    for cut_a in range(1, len(wire)):
        for cut_b in range(cut_a + 1, len(wire)):
            pieces = [wire[:cut_a], wire[cut_a:cut_b], wire[cut_b:]]
            client = Pop3Client(_ScriptedSocket(pieces), "test")  # type: ignore[arg-type]
            got = [b"".join(chunks) for _, chunks in client.retrieve(range(1, len(bodies) + 1))]
            assert got == bodies, (cut_a, cut_b)


def _event(kind: str, *, sha: str | None = None, key: str | None = None, keys: str = "") -> dict[str, object]:
    return {
        "event": kind,
        "stage": "stream" if kind == "resolved" else "deliver",
        "tenant": "acme",
        "mailbox_id": "box",
        "sha256": sha,
        "dedup_key": key,
        "details": {"dedup_keys": keys} if kind == "resolved" else {},
    }


def test_a_message_counts_as_delivered_only_when_every_resolved_key_was_delivered() -> None:
    seen = Deliveries()
    assert not seen.settled("acme", "box", "s1")  # nothing resolved yet: never delete
    seen.add(_event("resolved", sha="s1", keys="k-bob\nk-carol"))
    seen.add(_event("delivered", key="k-bob"))
    assert not seen.settled("acme", "box", "s1")
    seen.add(_event("resolved", sha="s1", keys="k-bob\nk-dave"))  # routed again: both routings count
    seen.add(_event("delivered", key="k-carol"))
    assert not seen.settled("acme", "box", "s1")
    seen.add(_event("delivered", key="k-dave"))
    assert seen.settled("acme", "box", "s1")
    assert not seen.settled("acme", "other-box", "s1") and not seen.settled("globex", "box", "s1")
    seen.add(_event("resolved", sha="s2"))  # a rule dropped it: nothing to deliver
    assert seen.settled("acme", "box", "s2")
