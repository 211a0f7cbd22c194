"""A record Faust skips around a rebalance is never committed past (see
``mailferry.streams.offset_gaps``). Runs Faust's own consumer offset bookkeeping (no broker
needed): the records before and after are processed, the one between them was not.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import faust
import pytest
from faust.types import TP
from kafka import TopicPartition

from mailferry.config import load_config
from mailferry.config.kafka import KafkaConfig
from mailferry.kafka.admin import ensure_topics
from mailferry.kafka.clients import new_admin, new_consumer
from mailferry.kafka.topics import DELIVER, RAW, full_name, topic_specs
from mailferry.schemas.codec import DELIVERY
from mailferry.streams import offset_gaps
from mailferry.streams.faust_settings import app_id
from tests.stream.test_stream_app import DOMAIN, Publisher, StreamRole, Topics, _write_config

RAW_TOPIC, OTHER = "t.raw", "t.compacted"


@pytest.fixture
def consumer() -> faust.transport.consumer.Consumer:
    app = faust.App("offset-gaps-test", broker="kafka://127.0.0.1:9", loop=asyncio.new_event_loop())
    everything = {TP(topic, partition) for topic in (RAW_TOPIC, OTHER) for partition in range(8)}
    app.consumer.assignment = lambda: everything  # type: ignore[method-assign]  # no broker: all ours
    return app.consumer


@pytest.fixture
def stops() -> list[str]:
    """The raw topic guarded; each time the worker would be stopped, one entry."""
    stopped: list[str] = []
    offset_gaps.refuse_gaps({RAW_TOPIC}, on_gap=lambda: stopped.append("stop"))
    return stopped


def _processed(consumer: faust.transport.consumer.Consumer, tp: TP, offsets: list[int]) -> None:
    consumer._acked[tp].extend(offsets)
    consumer._acked[tp].sort()


def test_a_skipped_record_is_not_committed_past_and_the_worker_is_stopped(
    consumer: faust.transport.consumer.Consumer, stops: list[str]
) -> None:
    tp = TP(RAW_TOPIC, 1)
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
    tp = TP(RAW_TOPIC, 0)
    consumer._committed_offset[tp] = 86
    _processed(consumer, tp, [87, 88])
    assert consumer._new_offset(tp) is None
    assert stops == ["stop"]


def test_a_record_skipped_mid_batch_is_not_committed_past_at_the_next_commit(
    consumer: faust.transport.consumer.Consumer, stops: list[str]
) -> None:
    tp = TP(RAW_TOPIC, 2)
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


def _assigned(
    consumer: faust.transport.consumer.Consumer, committed: dict[TP, int | None], log_start: dict[TP, int]
) -> None:
    """Faust's own seek after an assignment, given what the broker answers (the partitions'
    committed offsets, None where there is none, and where each partition's log starts)."""

    async def seek_to_committed() -> dict[TP, int | None]:
        return committed

    async def earliest_offsets(*tps: TP) -> dict[TP, int]:
        return {tp: log_start[tp] for tp in tps}

    consumer.seek_to_committed = seek_to_committed  # type: ignore[method-assign]
    consumer.earliest_offsets = earliest_offsets  # type: ignore[method-assign]
    consumer.assignment = lambda: set(committed)  # type: ignore[method-assign]
    asyncio.run(consumer.perform_seek())


def test_the_first_record_of_a_never_committed_partition_is_not_committed_past(
    consumer: faust.transport.consumer.Consumer, stops: list[str]
) -> None:
    """A new deployment: no committed offset, the log starts at 0, the agent was never
    handed offset 0. Faust alone commits 3 (nothing to compare the first acked offset with)."""
    tp = TP(RAW_TOPIC, 0)
    _assigned(consumer, {tp: None}, {tp: 0})
    _processed(consumer, tp, [1, 2])
    assert consumer._new_offset(tp) is None
    assert stops == ["stop"]


def test_a_record_acknowledged_after_its_partition_was_revoked_is_not_committed(
    consumer: faust.transport.consumer.Consumer, stops: list[str]
) -> None:
    """The partition moved to another worker while this one was still routing offset 36;
    Faust forgot the partition's committed offset at the revocation and takes the late
    acknowledgement as a first one. It is not ours to commit (Faust's commit discards it as
    well), and stopping the worker for it would be a needless restart."""
    tp, kept = TP(RAW_TOPIC, 4), TP(RAW_TOPIC, 5)
    _assigned(consumer, {tp: 30, kept: 10}, {tp: 0, kept: 0})
    _processed(consumer, kept, [10, 11])
    for state in (consumer._acked, consumer._acked_index, consumer._read_offset, consumer._committed_offset):
        state.pop(tp, None)  # what Faust's on_partitions_revoked does (it also commits: no broker here)
    consumer.assignment = lambda: {kept}  # type: ignore[method-assign]
    _processed(consumer, tp, [36])
    assert consumer._new_offset(tp) is None
    assert consumer._new_offset(kept) == 12
    assert stops == []


def test_a_never_committed_partition_commits_from_where_its_log_starts(
    consumer: faust.transport.consumer.Consumer, stops: list[str]
) -> None:
    """Offsets 0-39 were deleted by retention before the group ever committed."""
    tp, other = TP(RAW_TOPIC, 1), TP(RAW_TOPIC, 2)
    _assigned(consumer, {tp: None, other: None}, {tp: 40, other: 0})
    _processed(consumer, tp, [40, 41])
    _processed(consumer, other, [0])
    assert (consumer._new_offset(tp), consumer._new_offset(other)) == (42, 1)
    assert stops == []


def test_records_deleted_by_retention_after_the_assignment_cost_one_restart(
    consumer: faust.transport.consumer.Consumer, stops: list[str]
) -> None:
    """The log started at 40 when asked; retention deleted 40-44 before the consumer's
    first fetch, which starts at 45. The guard cannot tell that from a skip: it stops the
    worker once, and the restarted one asks again and commits."""
    tp = TP(RAW_TOPIC, 1)
    _assigned(consumer, {tp: None}, {tp: 40})
    _processed(consumer, tp, [45, 46])
    assert consumer._new_offset(tp) is None
    assert stops == ["stop"]

    consumer._acked.clear()  # the restarted worker
    _assigned(consumer, {tp: None}, {tp: 45})
    _processed(consumer, tp, [45, 46])
    assert consumer._new_offset(tp) == 47
    assert stops == ["stop"]


def test_a_commit_older_than_the_log_start_is_read_on_from_the_log_start(
    consumer: faust.transport.consumer.Consumer, stops: list[str]
) -> None:
    """Committed 10, retention deleted up to 39 meanwhile: the consumer reads on from 40,
    and Faust's fetch loop reports 11-39 as a gap. Those are gone, not skipped: the worker
    is not stopped (it would be, at every restart, for ever) and the commit moves on."""
    tp = TP(RAW_TOPIC, 3)
    _assigned(consumer, {tp: 10}, {tp: 40})
    asyncio.run(consumer._add_gap(tp, 11, 40))  # what Faust's fetch loop does at offset 40
    _processed(consumer, tp, [40, 41])
    assert consumer._new_offset(tp) == 41
    consumer._committed_offset[tp] = 41  # what the commit of 41 records
    assert consumer._new_offset(tp) == 42
    assert stops == []


@pytest.mark.integration
def test_a_never_committed_partition_whose_log_start_moved_is_committed_on_the_real_broker(
    tmp_path: Path, kafka_config: KafkaConfig
) -> None:
    """The real ``mailferry stream`` on a new deployment whose raw records before the
    first commit were deleted (as retention would): the guard asks the broker where each
    log starts, processes from there and commits, without stopping the worker."""
    config_path = _write_config(tmp_path, kafka_config)
    config = load_config(config_path)
    admin = new_admin(kafka_config, list(kafka_config.bootstrap_servers))
    ensure_topics(admin, topic_specs(config.kafka, 4))
    publisher = Publisher(config_path)
    raw = full_name(kafka_config, RAW)

    def mail(name: str) -> bytes:
        return f"Delivered-To: bob@{DOMAIN}\r\nMessage-ID: <{name}@x.example>\r\n\r\nbody\r\n".encode()

    for i in range(6):
        publisher.raw("catchall", mail(f"deleted{i}"))
    reader = new_consumer(kafka_config, list(kafka_config.bootstrap_servers))
    tps = [TopicPartition(raw, p) for p in sorted(reader.partitions_for_topic(raw))]
    deleted = reader.end_offsets(tps)
    admin.delete_records({tp: offset for tp, offset in deleted.items() if offset})
    assert reader.beginning_offsets(tps) == deleted
    shas = {publisher.raw("catchall", mail(f"kept{i}")) for i in range(6)}
    ends = reader.end_offsets(tps)

    role = StreamRole(config_path, tmp_path / "stream.log")
    role.start()
    try:
        delivered = Topics(kafka_config, DELIVER, DELIVERY).wait(
            lambda rs: shas <= {r["sha256"] for r in rs}, role
        )
        group = app_id(config)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            committed = {
                tp.partition: meta.offset
                for tp, meta in admin.list_group_offsets(group).get(group, {}).items()
                if tp.topic == raw
            }
            if committed == {tp.partition: offset for tp, offset in ends.items() if offset}:
                break
            assert role.alive(), role.log.read_text()[-3000:]
            time.sleep(1)
        assert committed == {tp.partition: end for tp, end in ends.items() if end}, committed
    finally:
        assert role.stop() == 0
        reader.close()
        admin.close()
    assert {r["sha256"] for r in delivered} == shas
    assert "stopping to read" not in role.log.read_text()
