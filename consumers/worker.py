"""The ``mailferry deliver`` role: from the deliver topic and its retry tiers into mailboxes.

One consumer thread polls the deliver topic and every retry tier and hands each record to
the thread pool of its (tenant, target), sized by the target's ``concurrency``: one slow
or failing mailbox server never holds up the others. A packed record (``mailferry.packing``)
is unpacked into its deliveries, each worked, retried and dead-lettered on its own. Offsets
are committed only up to the first record with a delivery whose outcome is not durable yet
(at-least-once; the ledger makes the replay harmless, delivery by delivery). A retry-tier
partition whose head record is not due is paused and sought back to it, and resumed when
it is due, so nothing sleeps per record. A tenant-wide error (bad credentials) parks that
tenant's records in memory, uncommitted, and checks the credentials again every
``credential_retry`` until they work.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.coordinator.assignors.range import RangePartitionAssignor

from mailferry.blobs import open_blob_store
from mailferry.config import MailferryConfig
from mailferry.consumers import crashpoints
from mailferry.consumers.assignment import check_partition_counts, partition_counts
from mailferry.consumers.attempt import (
    Abandoned,
    OutcomeNotRecordedError,
    Paused,
    Policy,
    Result,
    attempt,
)
from mailferry.consumers.batching import batch_size, cut
from mailferry.consumers.commits import Committer
from mailferry.consumers.handover import Handover
from mailferry.consumers.holds import PartitionHolds
from mailferry.consumers.ledger import Ledger
from mailferry.consumers.offsets import OffsetTracker
from mailferry.consumers.outcomes import Job, OutcomeWriter, Pending
from mailferry.consumers.pools import TargetPools
from mailferry.consumers.registry import TargetRegistry
from mailferry.consumers.retry_policy import DeadLetter, History, Origin, due_at
from mailferry.consumers.tenant_guard import TenantGuard
from mailferry.consumers.tenants import TenantPauses
from mailferry.errors import MailferryError, PermanentError
from mailferry.fence import TenantFence
from mailferry.kafka.clients import new_consumer, new_producer
from mailferry.kafka.membership import GroupWatch, await_topics
from mailferry.kafka.topics import DELIVER, full_name, retry_topic
from mailferry.observe import health, metrics
from mailferry.schemas.records import unpack_deliveries
from mailferry.status import write_snapshot

log = logging.getLogger(__name__)
REVOKE_DRAIN_S = 30.0  # how long a revoked partition's running attempts may take to finish
# the outcome producer's batching: outcomes are waited for only before an offset commit, so
# fewer, larger produce requests cost the worker (and the broker) less CPU per delivery
OUTCOME_PRODUCER: dict[str, Any] = {"linger_ms": 20, "batch_size": 256 * 1024}


class DeliveryWorker:
    def __init__(
        self,
        config: MailferryConfig,
        servers: list[str],
        *,
        group_id: str | None = None,
        credential_retry: timedelta = timedelta(seconds=30),
        max_in_flight: int = 2000,
        status_every_s: float = 5.0,
        registry: TargetRegistry | None = None,
    ) -> None:
        self.config = config
        self.servers = servers
        self.group_id = group_id or f"{config.kafka.topic_prefix}.deliver"
        self.deliver_topic = full_name(config.kafka, DELIVER)
        self.tier_topics = [full_name(config.kafka, retry_topic(i)) for i in range(len(config.retry.tiers))]
        self.max_in_flight = max_in_flight
        self.status_every_s = status_every_s
        self.policy = Policy(list(config.retry.tiers), config.retry.horizon)
        self.registry = registry or TargetRegistry(config)
        self.fence = TenantFence(config)
        self.blobs = open_blob_store(config, servers)
        self.tracker = OffsetTracker()
        self.committer = Committer(self.tracker)
        self.pauses = TenantPauses(credential_retry)
        self.pools: TargetPools[tuple[list[Job], str], list[Result]] = TargetPools()
        self._awaiting: deque[tuple[Job, Pending]] = deque()
        self.holds = PartitionHolds()
        self._last_status = 0.0
        self.watch = GroupWatch(want_partitions=True)
        self._revoked: set[tuple[str, int]] = set()
        self._unsynced: set[int] = set()
        self._abandoning = False
        self._stopping = False
        self.handover = Handover()
        # client-side metrics cost ~5% of the worker's CPU (py-spy, docs/benchmarks/deliver.md)
        self.producer = new_producer(config.kafka, servers, metrics_enabled=False, **OUTCOME_PRODUCER)
        # the write-ahead entry is waited for before each target write: no linger
        self.ledger_producer = new_producer(config.kafka, servers, linger_ms=0, metrics_enabled=False)
        self.ledger = Ledger(config.kafka, servers, self.producer, urgent=self.ledger_producer)
        self.writer = OutcomeWriter(config, self.producer, self.ledger)
        self.guard = TenantGuard(self.registry, self.pauses, self.writer)
        self.consumer: KafkaConsumer | None = None

    # -- life cycle -------------------------------------------------------------------------

    def run(self, stop: threading.Event, *, until: Any = None) -> None:
        """Deliver until ``stop`` is set (or ``until(worker)`` is true), then finish cleanly."""
        self.ledger.load()
        if self.guard.check_at_start(self.config):
            self._status(force=True)
        self.consumer = new_consumer(
            self.config.kafka,
            self.servers,
            self.group_id,
            max_poll_records=500,
            # range gives partition p of the deliver topic and of every tier to one worker
            partition_assignment_strategy=(RangePartitionAssignor,),
        )
        await_topics(self.consumer, [self.deliver_topic, *self.tier_topics])
        self._check_partitions()
        self.watch.join(self.consumer, [self.deliver_topic, *self.tier_topics], self.revoked, self.assigned)
        try:
            while not stop.is_set() and not (until is not None and until(self)):
                self._step()
            self._finish()
        finally:
            self.close()

    def abandon(self) -> None:
        """Stop without committing anything more: what a crash looks like to Kafka."""
        self._abandoning = True
        if self.consumer is not None:
            self.consumer.close(autocommit=False)
            self.consumer = None
        self.close()

    def close(self) -> None:
        self.pools.stop(wait=True)
        self.registry.close()
        self.ledger.close()
        self.ledger_producer.close(timeout=10)
        self.blobs.close()
        self.producer.close(timeout=10)
        if self.consumer is not None:
            self.consumer.close(autocommit=False)
            self.consumer = None

    def _check_partitions(self) -> None:
        assert self.consumer is not None
        counts = partition_counts(self.consumer, [self.deliver_topic, *self.tier_topics])
        counts[self.ledger.topic] = self.ledger.partitions()
        check_partition_counts(counts)

    # -- the loop ---------------------------------------------------------------------------

    def _step(self) -> None:
        assert self.consumer is not None
        self._sync_pauses()
        if self.pools.running >= self.max_in_flight:
            self._collect(block_s=0.2)
        else:
            batch = self.consumer.poll(timeout_ms=500)
            if self._unsynced:  # partitions new to this worker: read what their last owner left
                self.ledger.sync(self._unsynced)
                self._unsynced.clear()
            jobs: list[Job] = []
            for tp, records in batch.items():
                for record in records:
                    if not self._take(tp, record, jobs):
                        break
            self._dispatch(jobs)
            self._collect(block_s=0.0)
        self.watch.check(self.consumer)
        self._check_paused_tenants()
        self._commit()
        self._status()
        health.beat()

    def _take(self, tp: TopicPartition, record: Any, jobs: list[Job]) -> bool:
        """Add one record to ``jobs``; False when the rest of this partition's records must wait."""
        if record.offset < self.tracker.position(tp.topic, tp.partition):
            return True  # read again after a rebalance gave the partition back: already ours
        headers = list(record.headers or [])
        if tp.topic != self.deliver_topic:
            due = due_at(headers)
            if due is not None and due > datetime.now(UTC):
                assert self.consumer is not None
                self.consumer.seek(tp, record.offset)
                self.tracker.rewound(tp.topic, tp.partition, record.offset)
                self.holds.wait_until(tp, due)
                self._sync_pauses()
                return False
        history = History.from_headers(headers)
        try:
            deliveries = unpack_deliveries(record.value)
        except PermanentError as exc:
            self._dead_letter_undecodable(tp, record, history, exc)
            return True
        if not deliveries:  # an empty pack: nothing to deliver
            self.tracker.skipped(tp.topic, tp.partition, record.offset)
            return True
        packed = len(deliveries) > 1
        for index, delivery in enumerate(deliveries):
            jobs.append(
                Job(
                    tp.topic,
                    tp.partition,
                    record.offset,
                    record.key,
                    record.value,
                    headers,
                    delivery,
                    history,
                    index if packed else None,
                )
            )
        self.tracker.dispatched(tp.topic, tp.partition, record.offset, len(deliveries))
        return True

    def _dispatch(self, jobs: list[Job]) -> None:
        """Hand ``jobs`` to the pools of their targets, in batches per partition, target and
        mailbox: batches of different mailboxes run in parallel, as single messages did."""
        groups: dict[tuple[str, int, str, str, str], list[Job]] = {}
        for job in jobs:
            tenant = str(job.delivery["tenant"])
            try:
                _tenant, target_name = self.registry.resolve(tenant, job.delivery.get("target") or None)
                self.fence.check(job.delivery)
            except PermanentError as exc:
                self._dead_letter_now(job, exc)
                continue
            if self.pauses.is_paused(tenant):
                self.pauses.park(tenant, job, target_name)
                continue
            mailbox = str(job.delivery["recipient"]).lower()
            groups.setdefault((job.topic, job.partition, tenant, target_name, mailbox), []).append(job)
        for (_topic, _partition, tenant, target_name, _mailbox), group in groups.items():
            workers = self.registry.concurrency(tenant, target_name)
            limit = batch_size(self.registry.kind(tenant, target_name))
            for chunk in cut(group, limit, alone=lambda j: j.delivery.get("blob_ref") is not None):
                work = partial(self._attempt, chunk, target_name)
                self.pools.submit((tenant, target_name), workers, work, (chunk, target_name), len(chunk))

    def _attempt(self, jobs: list[Job], target_name: str) -> list[Result]:
        part = (jobs[0].topic, jobs[0].partition)
        if not self.handover.enter(part):
            return [Abandoned()] * len(jobs)
        try:
            target = self.registry.get(str(jobs[0].delivery["tenant"]), target_name)
            return attempt(
                jobs, target, target_name, writer=self.writer, blobs=self.blobs, policy=self.policy
            )
        finally:
            self.handover.leave(part)

    def _collect(self, block_s: float) -> None:
        """Apply finished attempts (main thread only: the consumer is not thread-safe)."""
        again: list[Job] = []
        for (jobs, target_name), future in self.pools.finished(block_s):
            if future.cancelled():  # stopping: never attempted, its offsets stay uncommitted
                continue
            results = future.result()  # OutcomeNotRecordedError stops the worker, offsets uncommitted
            for job, result in zip(jobs, results, strict=True):
                tracked = self.tracker.is_tracked(job.topic, job.partition)
                if isinstance(result, Abandoned):
                    if tracked:  # the partition came back
                        again.append(job)
                elif isinstance(result, Paused):
                    if tracked:
                        self._pause(str(job.delivery["tenant"]), target_name, result.error)
                        self.pauses.park(str(job.delivery["tenant"]), job, target_name)
                else:
                    self._awaiting.append((job, result.pending))
        if again and not self._stopping:  # stopping: read again by the next owner
            self._dispatch(again)
        self._settle()

    def _settle(self) -> None:
        """Finish the records whose outcome Kafka acknowledged, oldest first."""
        while self._awaiting:
            job, pending = self._awaiting[0]
            if not all(f.is_done for f in pending):
                return
            self._awaiting.popleft()
            failed = [f.exception for f in pending if f.failed()]
            if failed:
                raise OutcomeNotRecordedError(f"Kafka did not acknowledge an outcome: {failed[0]}")
            self.tracker.finished(job.topic, job.partition, job.offset)
            crashpoints.reach(crashpoints.AFTER_SETTLED)

    # -- tenants ----------------------------------------------------------------------------

    def _pause(self, tenant: str, target_name: str, error: MailferryError) -> None:
        if self.guard.pause(tenant, target_name, error):
            self._status(force=True)

    def _check_paused_tenants(self) -> None:
        for parked in self.guard.resumed():
            self._dispatch([job for job, _ in parked if self.tracker.is_tracked(job.topic, job.partition)])
            self._status(force=True)

    # -- dead letters outside the pools -----------------------------------------------------

    def _dead_letter_now(self, job: Job, error: PermanentError) -> None:
        decision = DeadLetter("permanent", error.reason_code, _failed_once(job.history, job.origin))
        self._awaiting.append((job, self.writer.dead_letter(job, decision, error)))
        metrics.outcome(str(job.delivery["tenant"]), str(job.delivery.get("target") or "?"), "dead-lettered")

    def _dead_letter_undecodable(
        self, tp: TopicPartition, record: Any, history: History, error: PermanentError
    ) -> None:
        log.error("%s/%d@%d: undecodable delivery record (%s)", tp.topic, tp.partition, record.offset, error)
        self.writer.undecodable(tp.topic, tp.partition, record.offset, record.key, error)  # waits
        self.tracker.skipped(tp.topic, tp.partition, record.offset)

    # -- offsets, pauses, status ------------------------------------------------------------

    def _commit(self, *, force: bool = False) -> None:
        if self.consumer is not None:
            self.committer.commit(self.consumer, force=force)

    def _sync_pauses(self) -> None:
        assert self.consumer is not None
        self.holds.sync(self.consumer, self.pauses.held_partitions())

    def revoked(self, partitions: list[TopicPartition]) -> None:
        """A rebalance starts: stop taking work of ``partitions`` and finish what is running.

        kafka-python 3 calls this on its IO thread, while the main loop waits inside
        ``poll``: attempts not started yet are abandoned (``Handover``), running ones may take
        up to ``REVOKE_DRAIN_S`` to finish, and their outcomes are flushed to Kafka before the
        rebalance goes on, so the next owner's ledger view has them. Nothing is committed
        here (``commit`` blocks, which the IO thread refuses): the next owner reads those
        records again and the ledger skips them. Partitions that come back keep their state
        (see ``assigned``).
        """
        parts = {(tp.topic, tp.partition) for tp in partitions}
        self._revoked |= parts
        health.ready(False, "rebalancing")
        if self._abandoning:
            return
        left = self.handover.close(parts, REVOKE_DRAIN_S)
        if left:
            log.error(
                "%d attempts still running after %ss; giving their partitions up anyway", left, REVOKE_DRAIN_S
            )
        try:
            self.ledger.flush(REVOKE_DRAIN_S)
            self.producer.flush(timeout=REVOKE_DRAIN_S)
        except Exception as exc:
            log.error("outcomes of revoked partitions not flushed: %s", exc)

    def assigned(self, partitions: list[TopicPartition]) -> None:
        now = {(tp.topic, tp.partition) for tp in partitions}
        owned_before = set(self._revoked)
        lost = [key for key in self._revoked if key not in now]
        self._revoked.clear()
        self.handover.reopen(now)
        self._unsynced |= {partition for _, partition in now - owned_before}
        health.ready()
        self.tracker.forget(lost)
        self._awaiting = deque((j, p) for j, p in self._awaiting if (j.topic, j.partition) not in lost)
        self.pauses.drop_partitions(lost)
        for topic, partition in lost:
            self.holds.drop(TopicPartition(topic, partition))

    def _finish(self) -> None:
        """Clean stop: drop queued attempts, wait for running ones (bounded), commit."""
        self._stopping = True
        self.pools.stop(wait=False)  # queued work is read again next time
        deadline = time.monotonic() + 150
        while self.pools.running > 0 and time.monotonic() < deadline:
            self._collect(block_s=0.5)
        self.producer.flush(timeout=60)
        self._settle()
        self._commit(force=True)
        self._status(force=True)

    def _status(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_status < self.status_every_s:
            return
        self._last_status = now
        payload = {
            "group": self.group_id,
            "in_flight": self.pools.running,
            "ledger_entries": len(self.ledger),
            "paused_tenants": self.pauses.snapshot(),
            "retry_waits": self.holds.snapshot(),
        }
        try:
            write_snapshot(self.config.state_dir, "deliver", payload)
        except OSError as exc:
            log.warning("status snapshot not written: %s", exc)


def _failed_once(history: History, origin: Origin) -> History:
    return History(
        attempts=history.attempts + 1,
        first_failed_at=history.first_failed_at or datetime.now(UTC),
        origin=history.origin or origin,
        ambiguous=history.ambiguous,
    )
