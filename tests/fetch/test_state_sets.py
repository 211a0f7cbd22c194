"""Fetch state in one set record per pass: what a reload reads is what the writer knows.

The topic is modelled as Kafka keeps it: records in offset order, and compaction keeping
only the last record of each key (tombstones included, or already removed). Whatever is
compacted away, reading the topic again must give the writer's view, and unneeded sets
must go away.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from mailferry.producers.state import MailboxState, pop3_key, set_records, state_record
from mailferry.schemas.codec import FETCH_STATE, Record, codec

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
Topic = list[tuple[str, bytes | None]]


def _word(uidl: str, status: str) -> Record:
    return state_record("acme", "box", status, first_seen_at=NOW, uidl=uidl, size=len(uidl))


def _pass(state: MailboxState, topic: Topic, updates: list[tuple[str, Record | None]]) -> None:
    """What ``publish.Batch.confirm`` writes for a pass, applied once 'acknowledged'."""
    written = []
    for key, record, items in set_records("acme", "box", updates):
        topic.append((key, codec(FETCH_STATE).encode(record)))
        written.append((key, items))
    for key in state.unneeded():
        topic.append((key, None))
        written.append((key, []))
    for key, items in written:
        if items:
            state.apply_set(key, items)
        else:
            state.apply(key, None)


def _reload(topic: Topic, *, compacted: bool, tombstones_kept: bool) -> MailboxState:
    records = topic
    if compacted:
        last = {key: index for index, (key, _) in enumerate(topic)}
        records = [r for i, r in enumerate(topic) if last[r[0]] == i]
        if not tombstones_kept:
            records = [r for r in records if r[1] is not None]
    state = MailboxState("acme", "box")
    for key, value in records:
        state.apply(key, codec(FETCH_STATE).decode(value) if value is not None else None)
    return state


def _live_keys(topic: Topic) -> set[str]:
    last: dict[str, bytes | None] = dict(topic)
    return {key for key, value in last.items() if value is not None}


UIDLS = [f"u{i}" for i in range(6)]
updates = st.lists(
    st.tuples(st.sampled_from(UIDLS), st.sampled_from(["fetched", "deleted", "skipped", None])),
    min_size=1,
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(updates, min_size=1, max_size=12))
def test_a_reload_reads_what_the_writer_knows_whatever_compaction_removed(
    passes: list[list[tuple[str, str | None]]],
) -> None:
    state, topic, truth = MailboxState("acme", "box"), [], {}
    for changes in passes:
        words = [(pop3_key("acme", "box", u), _word(u, s) if s else None) for u, s in changes]
        _pass(state, topic, words)
        for key, record in words:
            if record is None:
                truth.pop(key, None)
            else:
                truth[key] = record
    assert {k: r["status"] for k, r in state.entries.items()} == {k: r["status"] for k, r in truth.items()}
    for compacted, kept in ((False, True), (True, True), (True, False)):
        again = _reload(topic, compacted=compacted, tombstones_kept=kept)
        assert {k: r["status"] for k, r in again.entries.items()} == {
            k: r["status"] for k, r in truth.items()
        }, (compacted, kept)


def test_one_record_per_pass_and_sets_go_once_nothing_needs_them() -> None:
    state, topic = MailboxState("acme", "box"), []
    keys = [pop3_key("acme", "box", f"m{i}") for i in range(50)]
    _pass(state, topic, [(k, _word(k, "fetched")) for k in keys])
    assert len(topic) == 1  # 50 messages, one record
    _pass(state, topic, [(k, _word(k, "deleted")) for k in keys])
    _pass(state, topic, [(k, None) for k in keys])  # gone from the server: forgotten
    first_three = {key for key, _ in topic}
    assert len(first_three) == 3
    other = pop3_key("acme", "box", "other")
    _pass(state, topic, [(other, _word("other", "fetched"))])
    _pass(state, topic, [(other, _word("other", "seen"))])
    assert len(topic) <= 10
    assert not first_three & _live_keys(topic)  # all three 50-entry sets are tombstoned
    # the last pass's set, and the one it made unneeded (its tombstone goes with the next pass)
    assert len(_live_keys(topic)) == state.sets() == 2
    assert _reload(topic, compacted=True, tombstones_kept=False).entries.keys() == {other}


def test_records_written_per_message_before_still_load_and_are_replaced() -> None:
    legacy = pop3_key("acme", "box", "old")
    topic: Topic = [(legacy, codec(FETCH_STATE).encode(_word("old", "fetched")))]
    state = _reload(topic, compacted=False, tombstones_kept=True)
    assert state.pop3()["old"]["status"] == "fetched"
    _pass(state, topic, [(legacy, _word("old", "deleted"))])
    _pass(state, topic, [(pop3_key("acme", "box", "x"), _word("x", "fetched"))])
    assert (legacy, None) in topic  # the per-message record is removed once superseded
    assert _reload(topic, compacted=True, tombstones_kept=False).pop3()["old"]["status"] == "deleted"
