"""Pure bookkeeping of the worker: commit points with out-of-order outcomes, paused tenants."""

from __future__ import annotations

from datetime import timedelta

from kafka import TopicPartition

from mailferry.consumers.offsets import OffsetTracker
from mailferry.consumers.outcomes import Job
from mailferry.consumers.retry_policy import History
from mailferry.consumers.tenants import TenantPauses
from mailferry.errors import TenantError


def test_commit_point_waits_for_the_oldest_unfinished_record() -> None:
    tracker = OffsetTracker()
    for offset in (10, 11, 12):
        tracker.dispatched("d", 0, offset)
    tracker.finished("d", 0, 12)
    tracker.finished("d", 0, 11)
    assert tracker.to_commit() == {("d", 0): 10}
    tracker.committed({("d", 0): 10})
    assert tracker.to_commit() == {}  # nothing moved
    tracker.finished("d", 0, 10)
    assert tracker.to_commit() == {("d", 0): 13}


def test_a_packed_record_is_committed_after_its_last_delivery() -> None:
    tracker = OffsetTracker()
    tracker.dispatched("d", 0, 4, items=3)  # a pack of three deliveries
    tracker.dispatched("d", 0, 5)
    tracker.finished("d", 0, 5)
    tracker.finished("d", 0, 4)
    tracker.finished("d", 0, 4)
    assert tracker.to_commit() == {("d", 0): 4}
    assert tracker.in_flight("d", 0) == 1
    tracker.finished("d", 0, 4)
    assert tracker.to_commit() == {("d", 0): 6}
    tracker.finished("d", 0, 4)  # a late duplicate report changes nothing
    assert tracker.to_commit() == {("d", 0): 6}


def test_a_rewound_tier_partition_commits_up_to_the_waiting_record() -> None:
    tracker = OffsetTracker()
    tracker.dispatched("r0", 1, 5)
    tracker.finished("r0", 1, 5)
    tracker.rewound("r0", 1, 6)  # offset 6 is not due yet: the consumer seeks back to it
    assert tracker.to_commit() == {("r0", 1): 6}


def test_forgotten_partitions_ignore_late_outcomes() -> None:
    tracker = OffsetTracker()
    tracker.dispatched("d", 2, 0)
    tracker.forget([("d", 2)])
    tracker.finished("d", 2, 0)
    assert not tracker.is_tracked("d", 2)
    assert tracker.to_commit() == {}


def _job(offset: int, partition: int = 0) -> Job:
    return Job("d", partition, offset, b"acme/x", b"", [], {"tenant": "acme"}, History())


def test_paused_tenant_parks_records_and_resume_returns_them() -> None:
    pauses = TenantPauses(timedelta(seconds=0), max_parked=3)
    assert pauses.pause("acme", "exchange", TenantError("bad password", reason_code="bad-credentials"))
    assert not pauses.pause("acme", "smtp", TenantError("again"))  # already paused
    for offset in range(2):
        pauses.park("acme", _job(offset), "exchange")
    assert pauses.held_partitions() == set()
    pauses.park("acme", _job(2, partition=4), "exchange")
    assert pauses.held_partitions() == {TopicPartition("d", 0), TopicPartition("d", 4)}
    assert pauses.parked_in("d", 0) == 2
    snapshot = pauses.snapshot()["acme"]
    assert snapshot["reason"] == "bad-credentials" and snapshot["targets"] == ["exchange", "smtp"]
    assert pauses.due_checks() == [("acme", ["exchange", "smtp"])]
    pauses.drop_partitions([("d", 4)])
    parked = pauses.resume("acme")
    assert [job.offset for job, _ in parked] == [0, 1]
    assert not pauses.is_paused("acme") and pauses.held_partitions() == set()
