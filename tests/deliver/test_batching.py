"""How the worker cuts the records of one poll into batches (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mailferry.consumers.batching import batch_size, cut, rounds


def test_batches_keep_order_and_size_and_a_large_message_goes_alone() -> None:
    items = ["a", "b", "BIG", "c", "d", "e"]
    assert cut(items, 2, alone=str.isupper) == [["a", "b"], ["BIG"], ["c", "d"], ["e"]]
    assert cut(items, 1, alone=lambda _: False) == [[i] for i in items]
    assert cut([], 5, alone=lambda _: False) == []


def test_only_targets_that_write_batches_get_them() -> None:
    assert batch_size("maildir") > 1
    assert batch_size("smtp") == 1  # cannot be asked: a batch would widen its duplicate window


@given(st.lists(st.integers(0, 5), max_size=40))
def test_rounds_never_hold_a_key_twice_and_keep_every_copy_in_order(keys: list[int]) -> None:
    out = rounds(keys)
    assert sorted(i for r in out for i in r) == list(range(len(keys)))
    for r in out:
        assert len({keys[i] for i in r}) == len(r)
    for key in set(keys):  # the copies of one key: one per round, first copy first
        levels = [n for n, r in enumerate(out) for i in r if keys[i] == key]
        assert levels == list(range(len(levels)))
