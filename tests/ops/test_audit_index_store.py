"""The audit index's pure parts: which keys an event is filed under, and the SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailferry.audit_index.keys import event_keys, key_hash, matches, query_keys, related_keys
from mailferry.audit_index.store import IndexMismatchError, IndexStore, Position

ROUTED = {
    "message_id": "<Msg-1@Example.org>",
    "sha256": "AB12",
    "dedup_key": "acme|bob@acme.example|msg-1@example.org",
    "details": {"delivery_id": "d1"},
}


def test_an_event_is_filed_under_every_name_it_carries() -> None:
    assert event_keys(ROUTED) == [
        "mid:msg-1@example.org",
        "sha:ab12",
        "dk:acme|bob@acme.example|msg-1@example.org",
        "did:d1",
    ]
    assert event_keys({"details": {"dead_letter_id": "x"}}) == ["dl:x"]
    assert event_keys({}) == []


def test_what_a_person_types_finds_the_event() -> None:
    for typed in ("<msg-1@example.org>", " MSG-1@example.org ", "sha256:ab12", "d1", ROUTED["dedup_key"]):
        assert matches(ROUTED, set(query_keys(typed))), typed
    assert not matches(ROUTED, set(query_keys("other@example.org")))


def test_related_keys_are_the_message_id_and_content_hash_only() -> None:
    assert related_keys([ROUTED]) == {"mid:msg-1@example.org", "sha:ab12"}


def test_key_hash_is_a_stable_signed_64_bit_integer() -> None:
    value = key_hash("mid:a@b")
    assert value == key_hash("mid:a@b") != key_hash("dk:a@b")
    assert -(2**63) <= value < 2**63


def test_rows_progress_and_sightings_survive_reopening(tmp_path: Path) -> None:
    store = IndexStore(tmp_path, topic="p.audit")
    store.add([(1, 0, 5), (1, 0, 9), (2, 1, 3)], [(1, 1000, 0, 5), (1, 2000, 0, 9)], {0: 10, 1: 4})
    store.add([(1, 0, 5)], [], {0: 10})  # a replayed batch adds nothing twice
    store.close()
    again = IndexStore(tmp_path, topic="p.audit")
    assert again.lookup([1]) == {Position(0, 5), Position(0, 9)}
    assert again.lookup([1, 2, 3]) == {Position(0, 5), Position(0, 9), Position(1, 3)}
    assert again.progress() == {0: 10, 1: 4}
    first = again.first_sighting([1])
    assert first is not None and (first.first_at_ms, first.position) == (1000, Position(0, 5))
    assert again.row_count() == 3
    assert (tmp_path / "audit-index.sqlite").stat().st_mode & 0o777 == 0o600


def test_purge_drops_rows_below_the_log_start_only(tmp_path: Path) -> None:
    store = IndexStore(tmp_path, topic="p.audit")
    store.add([(1, 0, 5), (1, 0, 9), (1, 1, 2)], [], {0: 10, 1: 3})
    assert store.purge({0: 6, 1: 0}) == 1
    assert store.lookup([1]) == {Position(0, 9), Position(1, 2)}


def test_a_file_of_another_topic_is_refused(tmp_path: Path) -> None:
    IndexStore(tmp_path, topic="one.audit").close()
    with pytest.raises(IndexMismatchError):
        IndexStore(tmp_path, topic="two.audit")


def test_many_keys_are_looked_up_past_sqlites_parameter_limit(tmp_path: Path) -> None:
    store = IndexStore(tmp_path, topic="p.audit")
    store.add([(k, 0, k) for k in range(3000)], [], {0: 3000})
    assert len(store.lookup(list(range(3000)))) == 3000
