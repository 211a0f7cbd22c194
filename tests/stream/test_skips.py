"""A raw record Faust never hands the agent stops the worker, so it is read again
(``mailferry.streams.skips``)."""

from __future__ import annotations

from pathlib import Path

from mailferry.streams.skips import SkipWatch
from tests.stream.test_dedup_agent import MEETING, Clock, channels_app, raw_value


def watch() -> tuple[SkipWatch, list[str]]:
    stops: list[str] = []
    skips = SkipWatch()
    skips.arm(lambda: stops.append("stop"))
    return skips, stops


def test_the_offsets_faust_handed_under_load_stop_the_worker_once() -> None:
    skips, stops = watch()
    for offset in (1, 2, 3, 5, 5, 7):
        skips.saw(0, offset)
    assert stops == ["stop"]


def test_each_partition_keeps_its_own_order() -> None:
    skips, stops = watch()
    for partition, offset in ((0, 10), (1, 4), (0, 11), (1, 5), (1, 6), (0, 12)):
        skips.saw(partition, offset)
    assert stops == []


def test_records_read_again_or_late_around_a_rebalance_are_no_skip() -> None:
    skips, stops = watch()
    for offset in (20, 21, 22):
        skips.saw(0, offset)
    skips.rebalanced()
    # a record prefetched before the rebalance first, then the partition from its commit
    for offset in (23, 20, 21, 22, 23, 24):
        skips.saw(0, offset)
    assert stops == []
    skips.rebalanced()
    skips.saw(0, 100)  # a new owner starts where the commit is
    assert stops == []


def test_an_unarmed_watch_only_counts() -> None:
    skips = SkipWatch()
    skips.saw(0, 1)
    skips.saw(0, 5)  # tests and tools route records of made-up offsets


async def test_the_route_agent_reports_a_skipped_raw_offset(tmp_path: Path) -> None:
    stream = channels_app(tmp_path, Clock())
    stops: list[str] = []
    stream.skips.arm(lambda: stops.append("stop"))
    value = raw_value(stream, MEETING)
    async with stream.app.agents["route"].test_context() as ctx:
        await ctx.put(value, key=b"acme/shard", partition=0)  # offset 0
        await ctx.put(value, key=b"acme/shard", partition=0)  # offset 1
        assert stops == []
        ctx.sent_offset = 3  # offset 2 never reaches the agent
        await ctx.put(value, key=b"acme/shard", partition=0)
    assert stops == ["stop"]
