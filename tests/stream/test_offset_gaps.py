"""A record Faust skips around a rebalance is never committed past (see
``mailferry.streams.offset_gaps``). Runs Faust's own consumer offset bookkeeping (no broker
needed): the records before and after are processed, the one between them was not.
"""

from __future__ import annotations

import asyncio

import faust
import pytest
from faust.types import TP

from mailferry.streams import offset_gaps

RAW, OTHER = "t.raw", "t.compacted"


@pytest.fixture
def consumer() -> faust.transport.consumer.Consumer:
    app = faust.App("offset-gaps-test", broker="kafka://127.0.0.1:9", loop=asyncio.new_event_loop())
    return app.consumer


@pytest.fixture
def stops() -> list[str]:
    """The raw topic guarded; each time the worker would be stopped, one entry."""
    stopped: list[str] = []
    offset_gaps.refuse_gaps({RAW}, on_gap=lambda: stopped.append("stop"))
    return stopped


def _processed(consumer: faust.transport.consumer.Consumer, tp: TP, offsets: list[int]) -> None:
    consumer._acked[tp].extend(offsets)
    consumer._acked[tp].sort()


def test_a_skipped_record_is_not_committed_past_and_the_worker_is_stopped(
    consumer: faust.transport.consumer.Consumer, stops: list[str]
) -> None:
    tp = TP(RAW, 1)
    consumer._committed_offset[tp] = 20
    _processed(consumer, tp, [20])
    # what Faust's fetch loop does when it reads offset 22 right after 20
    asyncio.run(consumer._add_gap(tp, 21, 22))
    _processed(consumer, tp, [22, 23])
    assert consumer._new_offset(tp) == 21  # offset 21 is read again after the restart
    assert stops == ["stop"]


def test_other_topics_keep_faust_s_gap_handling(
    consumer: faust.transport.consumer.Consumer, stops: list[str]
) -> None:
    tp = TP(OTHER, 0)
    consumer._committed_offset[tp] = 20
    _processed(consumer, tp, [20])
    asyncio.run(consumer._add_gap(tp, 21, 22))  # compacted away: nothing to read there
    _processed(consumer, tp, [22, 23])
    assert consumer._new_offset(tp) > 21  # Faust commits past it
    assert stops == []


def test_the_patched_names_are_faust_s() -> None:
    for name in offset_gaps.PATCHED:
        assert callable(getattr(faust.transport.consumer.Consumer, name))


def test_a_record_never_handed_to_the_agent_is_not_committed_past(
    consumer: faust.transport.consumer.Consumer, stops: list[str]
) -> None:
    """No gap logged: offset 86 simply never reached the agent, 87 and 88 did (chaos run 16).
    Faust alone returns 89 here: one missing offset at the head passes its check."""
    tp = TP(RAW, 0)
    consumer._committed_offset[tp] = 86
    _processed(consumer, tp, [87, 88])
    assert consumer._new_offset(tp) is None
    assert stops == ["stop"]


def test_a_record_skipped_mid_batch_is_not_committed_past_at_the_next_commit(
    consumer: faust.transport.consumer.Consumer, stops: list[str]
) -> None:
    tp = TP(RAW, 2)
    consumer._committed_offset[tp] = 80
    _processed(consumer, tp, [80, 81, 82, 83, 85, 86])  # 84 never handed to the agent
    assert consumer._new_offset(tp) == 84
    assert stops == []
    consumer._committed_offset[tp] = 84  # what the commit of 84 records
    assert consumer._new_offset(tp) is None
    assert stops == ["stop"]


def test_other_topics_keep_faust_s_commit(
    consumer: faust.transport.consumer.Consumer, stops: list[str]
) -> None:
    tp = TP(OTHER, 0)
    consumer._committed_offset[tp] = 86
    _processed(consumer, tp, [87, 88])
    assert consumer._new_offset(tp) == 89
    assert stops == []
